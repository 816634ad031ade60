// Process-wide counters. Cheap enough for hot paths (one Map lookup per increment); exported as a plain
// snapshot for status replies and tests. The Prometheus endpoint will render the same registry.

export type CounterLabels = Readonly<Record<string, string>>;

function keyOf(name: string, labels?: CounterLabels): string {
  if (!labels) return name;
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`);
  return `${name}{${parts.join(",")}}`;
}

export class Counters {
  private values = new Map<string, number>();

  inc(name: string, labels?: CounterLabels, by = 1): void {
    const key = keyOf(name, labels);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }

  get(name: string, labels?: CounterLabels): number {
    return this.values.get(keyOf(name, labels)) ?? 0;
  }

  /** Sum over every label set of a counter. */
  total(name: string): number {
    let sum = 0;
    for (const [key, value] of this.values) {
      if (key === name || key.startsWith(`${name}{`)) sum += value;
    }
    return sum;
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries(this.values);
  }
}

export const counters = new Counters();
