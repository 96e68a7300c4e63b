// One conditional GET of the counts: polling, the long-poll (`Prefer: wait=N`), and the single
// revalidation sent when an app comes back to the foreground.
import type { Counts } from "../types.js";
import { type Connection, type Outcome, type Transport, failed, refusal, userPath } from "./connection.js";

/** `waitSeconds`: how long the server may hold the request (a long-poll), or 0 (a poll). */
export async function conditionalGet(connection: Connection, waitSeconds = 0): Promise<Outcome> {
  const started = connection.timers.now();
  const headers: Record<string, string> = { Authorization: `Bearer ${connection.token}` };
  const held = connection.etag();
  if (held !== null) headers["If-None-Match"] = held;
  if (waitSeconds) headers.Prefer = `wait=${waitSeconds}`;
  let response;
  try {
    response = await connection.fetch(userPath(connection, "/unread-counts"), { headers, signal: connection.signal });
  } catch (error) {
    return failed(error);
  }
  if (response.status !== 200 && response.status !== 304) return refusal(response, false);
  const interval = Number(response.headers.get("X-Poll-Interval"));
  if (interval > 0) connection.pollInterval(interval * 1000);
  connection.opened();
  let changed = false;
  if (response.status === 200) {
    const etag = response.headers.get("ETag");
    let body: Counts;
    try {
      body = (await response.json()) as Counts;
    } catch (error) {
      return failed(error);
    }
    // A 200 with the ETag already held is a 304 that a cache (iOS's URL cache) rewrote: the
    // store adopts no ETag it held before.
    changed = etag !== null && connection.counts(etag, body);
  }
  const elapsedMs = connection.timers.now() - started;
  if (waitSeconds && response.status === 304 && response.headers.get("Preference-Applied") === null) {
    return { kind: "poll-instead", changed };
  }
  return { kind: "answered", changed, elapsedMs };
}

export const poll: Transport = conditionalGet;

export const longPoll = (connection: Connection): Promise<Outcome> =>
  conditionalGet(connection, connection.settings.longPollWaitSeconds);
