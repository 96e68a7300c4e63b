// Reconnect delays: full jitter ("random between 0 and the capped exponential"), so that clients
// cut off together do not come back together; reset only once a connection proved itself.

export const BACKOFF_BASE_MS = 1_000;
export const BACKOFF_CAP_MS = 30_000;

export function fullJitter(attempt: number, random: () => number): number {
  return Math.floor(random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 30)));
}

export class Backoff {
  private attempt = 0;

  constructor(private readonly random: () => number) {}

  /** The delay before the next attempt; each call widens the window up to the cap. */
  next(): number {
    return fullJitter(this.attempt++, this.random);
  }

  reset(): void {
    this.attempt = 0;
  }
}
