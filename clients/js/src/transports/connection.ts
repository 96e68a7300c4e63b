// What every transport is given for one connection, and how a connection can end.
import type { AbortSignalLike, FetchLike, ResponseLike, Timers, WebSocketConstructorLike } from "../platform.js";
import type { Counts, TransportName } from "../types.js";

export interface Connection {
  readonly baseUrl: string;
  readonly userId: string;
  /** Fetched for this connection (never reused from an earlier one). */
  readonly token: string;
  /** The ETag held now: the resume point of every transport. */
  etag(): string | null;
  readonly fetch: FetchLike;
  readonly WebSocket: WebSocketConstructorLike | undefined;
  readonly signal: AbortSignalLike;
  readonly timers: Timers;
  readonly settings: TransportSettings;
  /** The connection is established (a 200 stream, an open socket, an answered request). */
  opened(): void;
  /** New counts; false when they were not adopted (an ETag held now or before). */
  counts(etag: string, counts: Counts): boolean;
  /** The server's advice on the interval between polls. */
  pollInterval(ms: number): void;
  /** Called by the client to ask an open WebSocket for a pong; transports set it. */
  probe?: () => void;
}

export interface TransportSettings {
  /** SSE: with no byte for this long (heartbeats come every 15 s by default), reconnect. */
  heartbeatTimeoutMs: number;
  /** WebSocket: quiet for this long, send a `ping`; no `pong` within pongTimeoutMs, reconnect. */
  pingAfterMs: number;
  pongTimeoutMs: number;
  /** WebSocket authentication: the Authorization header (React Native) or a stream ticket. */
  wsAuth: "header" | "ticket";
  /** Long-poll: seconds asked for in `Prefer: wait=N`. */
  longPollWaitSeconds: number;
  /** SSE and WebSocket: the push device this app is (`?device_id=`), whose alerts the service
   * then skips while the stream is open. */
  deviceId?: string;
}

/** `?device_id=` for a stream, when the app named its push device. */
export function deviceQuery(connection: Pick<Connection, "settings">): string[] {
  const id = connection.settings.deviceId;
  return id ? [`device_id=${encodeURIComponent(id)}`] : [];
}

export type Outcome =
  /** A request was answered (long-poll, poll): `changed` if it brought new counts. */
  | { kind: "answered"; changed: boolean; elapsedMs: number }
  /** An open connection ended; `retryMs` is the server's hint (SSE `retry:`, close 1012). */
  | { kind: "ended"; retryMs?: number; reason: string }
  /** The connection could not be opened (network, 5xx): counts towards demotion. */
  | { kind: "failed"; status?: number; retryAfterMs?: number; reason: string }
  /** 503 on a stream: the server holds all it can; poll instead and come back later. */
  | { kind: "at-capacity"; retryAfterMs?: number }
  | { kind: "rate-limited"; retryAfterMs?: number }
  | { kind: "unauthorized" }
  | { kind: "forbidden" }
  /** The server ended the connection because its token expired (close 1008). */
  | { kind: "token-expired" }
  /** A long-poll answered at once without `Preference-Applied`: the server asks us to poll. */
  | { kind: "poll-instead"; changed: boolean }
  /** This runtime cannot run the transport (no streaming body, no WebSocket). */
  | { kind: "unsupported"; reason: string }
  /** The client closed a stream to renew its token before `exp` (not the transport's doing). */
  | { kind: "renew" }
  /** getToken failed: nothing was sent. */
  | { kind: "no-token"; reason: string };

export type Transport = (connection: Connection) => Promise<Outcome>;

export type TransportTable = Record<TransportName, Transport>;

/** Retry-After in ms (seconds form; the date form is not sent by counts), if present. */
export function retryAfterMs(response: ResponseLike): number | undefined {
  const seconds = Number(response.headers.get("Retry-After"));
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : undefined;
}

/** The outcome of a response that is not the transport's success, by its status. */
export function refusal(response: ResponseLike, stream: boolean): Outcome {
  const status = response.status;
  if (status === 401) return { kind: "unauthorized" };
  if (status === 403) return { kind: "forbidden" };
  if (status === 429) return { kind: "rate-limited", retryAfterMs: retryAfterMs(response) };
  if (status === 503 && stream) return { kind: "at-capacity", retryAfterMs: retryAfterMs(response) };
  return { kind: "failed", status, retryAfterMs: retryAfterMs(response), reason: `HTTP ${status}` };
}

export function userPath(connection: Pick<Connection, "baseUrl" | "userId">, rest: string): string {
  return `${connection.baseUrl.replace(/\/+$/, "")}/v1/users/${encodeURIComponent(connection.userId)}${rest}`;
}

export function isAbort(signal: AbortSignalLike): boolean {
  return signal.aborted;
}

/** The reason a thrown value gives, for an outcome. */
export function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A request that threw (the network, an abort, a body that is not JSON). */
export function failed(error: unknown): Outcome {
  return { kind: "failed", reason: describe(error) };
}
