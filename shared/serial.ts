// SerialTask: runs one async task at a time, level-triggered. A request that arrives while a run is in
// flight is remembered (however many arrive) and served by exactly one more run right after, so the last
// request is always followed by a run that sees its state. The task keeps its own "what changed" state;
// this only orders the runs. A rejected run is the task's to avoid: the tasks here catch their own errors.
export class SerialTask {
  private current: Promise<void> | null = null;
  private again = false;
  private stopped = false;

  constructor(private readonly task: () => Promise<void>) {}

  /** Runs the task now, or once more after the run in flight. Ignored after stop(). */
  request(): void {
    if (this.stopped) return;
    if (this.current) {
      this.again = true;
      return;
    }
    this.current = this.task().finally(() => {
      this.current = null;
      if (this.again) {
        this.again = false;
        this.request();
      }
    });
  }

  /** No further runs; resolves once the run in flight, if any, is over. */
  async stop(): Promise<void> {
    this.stopped = true;
    while (this.current) await this.current.catch(() => undefined);
  }
}
