// WebSocket: frames {"etag", "counts"}. React Native sends the Authorization header on the
// upgrade; browsers cannot, and first trade the token for a single-use stream ticket.
// Protocol pings are invisible to JavaScript, so liveness is a text `ping` answered by `pong`.
import type { WebSocketLike } from "../platform.js";
import type { Counts } from "../types.js";
import { type Connection, type Outcome, describe, deviceQuery, failed, refusal, userPath } from "./connection.js";

const POLICY_VIOLATION = 1008; // the token behind the socket expired
const SERVICE_RESTART = 1012; // the server is shutting down; its reason says when to come back

async function streamTicket(connection: Connection): Promise<string | Outcome> {
  try {
    const response = await connection.fetch(userPath(connection, "/stream-tickets"), {
      method: "POST", headers: { Authorization: `Bearer ${connection.token}` }, signal: connection.signal,
    });
    if (response.status !== 201) return refusal(response, true);
    return ((await response.json()) as { ticket: string }).ticket;
  } catch (error) {
    return failed(error);
  }
}

export async function ws(connection: Connection): Promise<Outcome> {
  const Socket = connection.WebSocket;
  if (Socket === undefined) return { kind: "unsupported", reason: "no WebSocket" };
  const query = deviceQuery(connection);
  const held = connection.etag();
  if (held !== null) query.push(`etag=${encodeURIComponent(held)}`);
  let options: { headers: Record<string, string> } | undefined;
  if (connection.settings.wsAuth === "ticket") {
    const ticket = await streamTicket(connection);
    if (typeof ticket !== "string") return ticket;
    query.push(`ticket=${encodeURIComponent(ticket)}`);
  } else {
    options = { headers: { Authorization: `Bearer ${connection.token}` } };
  }
  if (connection.signal.aborted) return { kind: "ended", reason: "stopped" };
  const url = userPath(connection, "/unread-counts/ws").replace(/^http/, "ws") + (query.length ? `?${query.join("&")}` : "");
  let socket: WebSocketLike;
  try {
    socket = (options ? new Socket(url, undefined, options) : new Socket(url)) as WebSocketLike;
  } catch (error) {
    return failed(error);
  }
  return session(connection, socket);
}

function session(connection: Connection, socket: WebSocketLike): Promise<Outcome> {
  const { timers, settings } = connection;
  return new Promise<Outcome>((resolve) => {
    let opened = false;
    let idle: unknown;
    let pongDue: unknown;
    let ended: Outcome | undefined;
    const finish = (outcome: Outcome): void => {
      if (ended) return;
      ended = outcome;
      timers.clearTimeout(idle);
      timers.clearTimeout(pongDue);
      connection.probe = undefined;
      resolve(outcome);
    };
    const close = (reason: string): void => {
      try {
        socket.close(1000, reason);
      } catch {
        // already closing
      }
      finish({ kind: "ended", reason });
    };
    // Reachable once open only: through connection.probe and the idle timer, both set by onopen.
    const probe = (): void => {
      if (pongDue !== undefined) return;
      try {
        socket.send("ping");
      } catch {
        close("ping failed");
        return;
      }
      pongDue = timers.setTimeout(() => close("no pong"), settings.pongTimeoutMs);
    };
    const quiet = (): void => {
      timers.clearTimeout(idle);
      idle = timers.setTimeout(probe, settings.pingAfterMs);
    };
    // The client aborts the connection (stop, background, renewal): close the socket with it.
    connection.signal.addEventListener("abort", () => close("stopped"));
    socket.onopen = () => {
      opened = true;
      connection.probe = probe;
      connection.opened();
      quiet();
    };
    socket.onmessage = (event) => {
      quiet();
      if (event.data === "pong") {
        timers.clearTimeout(pongDue);
        pongDue = undefined;
        return;
      }
      try {
        const frame = JSON.parse(String(event.data)) as { etag: string; counts: Counts };
        connection.counts(frame.etag, frame.counts);
      } catch (error) {
        close(`bad frame: ${describe(error)}`);
      }
    };
    socket.onerror = () => undefined; // a close event follows, with the code
    socket.onclose = (event) => {
      if (event.code === POLICY_VIOLATION) finish({ kind: "token-expired" });
      else if (event.code === SERVICE_RESTART) {
        const hinted = /retry in (\d+) ms/.exec(event.reason ?? "");
        finish({ kind: "ended", retryMs: hinted ? Number(hinted[1]) : undefined, reason: "server restart" });
      } else if (!opened) finish({ kind: "failed", reason: `closed before opening (${event.code})` });
      else finish({ kind: "ended", reason: `closed (${event.code})` });
    };
  });
}
