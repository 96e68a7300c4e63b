// The snapshot apps read, shaped for React's useSyncExternalStore: a frozen object replaced (and
// listeners called) only when the ETag or the status changes. A listener hears each new ETag
// once: an ETag the client held before (a late answer, a duplicate event, a 200 that an iOS URL
// cache made of a 304) is never adopted again, so counts never go back to older ones.
import type { Counts, CountsError, CountsSnapshot, Status, TransportName } from "./types.js";

const REMEMBERED_ETAGS = 64;

/** An ETag without its weak prefix: `W/"x"` and `"x"` name the same counts. */
function strong(etag: string): string {
  return etag.replace(/^W\//, "");
}

export class CountsStore {
  private snapshot: CountsSnapshot = Object.freeze({
    counts: null, etag: null, status: "idle", transport: null, updatedAt: null, error: null,
  });
  private readonly listeners = new Set<() => void>();
  /** The last ETags adopted, strong forms. */
  private readonly held: string[] = [];

  readonly getSnapshot = (): CountsSnapshot => this.snapshot;

  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  /** Adopt new counts; false (nothing changes) for an ETag held now or before (then its counts
   * are old or already known). */
  adopt(etag: string, counts: Counts, at: number): boolean {
    const held = strong(etag);
    if (this.held.includes(held)) return false;
    this.held.push(held);
    if (this.held.length > REMEMBERED_ETAGS) this.held.shift();
    this.replace({ counts, etag, updatedAt: at });
    return true;
  }

  /** Status, and the transport and error that go with it. Listeners hear only a new status; a
   * new error or transport under the same status is shown to the next getSnapshot() quietly. */
  setStatus(status: Status, transport: TransportName | null, error: CountsError | null = null): void {
    const now = this.snapshot;
    if (status === now.status && transport === now.transport && error?.message === now.error?.message) return;
    this.replace({ status, transport, error }, status !== now.status);
  }

  private replace(change: Partial<CountsSnapshot>, notify = true): void {
    this.snapshot = Object.freeze({ ...this.snapshot, ...change });
    if (notify) for (const listener of [...this.listeners]) listener();
  }
}
