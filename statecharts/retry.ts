// Shared pieces of the machines' failure handling: exponential backoff capped at 10x, and the message of
// whatever an invoked actor rejected with.

/** retryMs after the first failure, doubling with each further one, never more than 10 x retryMs. */
export function backoffMs(retryMs: number, attempt: number): number {
  return Math.min(retryMs * 2 ** Math.max(0, attempt - 1), retryMs * 10);
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
