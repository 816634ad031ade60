// SlicedQueue: runs queued tasks in order, in slices of at most sliceMs, yielding to the event loop between
// slices (setImmediate) so that I/O — lease renewals, heartbeats — is served between them. The coordinator
// routes every DomainActor event and every DomainActor creation through it: a burst (1,000 actors created
// at takeover, a resync of every domain) never blocks the process for longer than one slice.
export class SlicedQueue {
  private tasks: (() => void)[] = [];
  private head = 0;
  private scheduled = false;

  constructor(
    private readonly sliceMs: number,
    private readonly onError: (err: unknown) => void,
  ) {}

  get length(): number {
    return this.tasks.length - this.head;
  }

  push(task: () => void): void {
    this.tasks.push(task);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.run());
    }
  }

  private run(): void {
    const end = performance.now() + this.sliceMs;
    while (this.head < this.tasks.length && performance.now() < end) {
      const task = this.tasks[this.head]!;
      this.tasks[this.head++] = noop;
      try {
        task();
      } catch (err) {
        this.onError(err);
      }
    }
    if (this.head >= this.tasks.length) {
      this.tasks = [];
      this.head = 0;
      this.scheduled = false;
    } else {
      setImmediate(() => this.run());
    }
  }
}

const noop = () => {};
