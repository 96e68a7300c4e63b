// Server-Sent Events over fetch: the Authorization header and Last-Event-ID, which EventSource
// cannot send, and a watchdog on the server's heartbeats, which EventSource does not keep.
import { newTextDecoder } from "../platform.js";
import type { Counts } from "../types.js";
import { type Connection, type Outcome, describe, deviceQuery, failed, refusal, userPath } from "./connection.js";
import { createSseParser } from "./sse-parser.js";

export async function sse(connection: Connection): Promise<Outcome> {
  const decoder = newTextDecoder();
  if (decoder === null) return { kind: "unsupported", reason: "no TextDecoder" };
  const headers: Record<string, string> = { Authorization: `Bearer ${connection.token}`, Accept: "text/event-stream" };
  const held = connection.etag();
  if (held !== null) headers["Last-Event-ID"] = held;
  let response;
  try {
    const query = deviceQuery(connection);
    response = await connection.fetch(userPath(connection, "/unread-counts/stream") + (query.length ? `?${query[0]}` : ""), { headers, signal: connection.signal });
  } catch (error) {
    return failed(error);
  }
  if (response.status !== 200) return refusal(response, true);
  const reader = response.body?.getReader?.();
  if (!reader) return { kind: "unsupported", reason: "no streaming body" };
  connection.opened();

  // The first `retry:` is the poll interval; one after it comes only right before the server
  // closes the stream at shutdown, and says when to come back.
  let retries = 0;
  let retryMs: number | undefined;
  let failure: string | undefined;
  const feed = createSseParser({
    event(type, data, id) {
      if (type !== "counts" || !id) return;
      try {
        connection.counts(id, JSON.parse(data) as Counts);
      } catch (error) {
        failure = `bad event: ${describe(error)}`;
        void reader.cancel().catch(() => undefined);
      }
    },
    retry(ms) {
      if (retries++ === 0) connection.pollInterval(ms);
      else retryMs = ms;
    },
  });

  const { timers, settings } = connection;
  let watchdog: unknown;
  const rearm = (): void => {
    timers.clearTimeout(watchdog);
    watchdog = timers.setTimeout(() => {
      failure = "no heartbeat";
      void reader.cancel().catch(() => undefined);
    }, settings.heartbeatTimeoutMs);
  };
  rearm();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rearm();
      feed(decoder.decode(value, { stream: true }));
    }
  } catch (error) {
    failure ??= describe(error);
  } finally {
    timers.clearTimeout(watchdog);
  }
  return { kind: "ended", retryMs: failure === undefined ? retryMs : undefined, reason: failure ?? "closed by the server" };
}
