// A counts service in memory, for unit tests under fake timers: the counts endpoint (conditional
// GET, long-poll), SSE streams the test writes into, WebSockets it drives, tickets, devices.
// Every request is recorded with its time, so tests assert on what left the client and when.
import type { Counts } from "../../src/index.js";

export interface Recorded {
  url: string;
  path: string;
  method: string;
  headers: Record<string, string>;
  body?: string;
  at: number;
}

type Override = { status: number; headers?: Record<string, string>; body?: unknown };

const encoder = new TextEncoder();

export class FakeServer {
  readonly userId = "00000000-0000-4000-8000-000000000001";
  etag = '"m1.e1"';
  total = 0;
  /** The body's badge when it differs from the total (a muted conversation, a mention). */
  badge: number | null = null;
  pollInterval = 7;
  /** Long-polls answered 304 without Preference-Applied (a server at capacity). */
  longPollRefused = false;
  readonly requests: Recorded[] = [];
  readonly streams: SseStream[] = [];
  readonly sockets: FakeSocket[] = [];
  private readonly overrides = new Map<string, Override[]>();
  private readonly held: (() => void)[] = [];
  private marker = 1;

  get counts(): Counts {
    const conversations = this.total
      ? [{ conversation_id: "00000000-0000-4000-8000-0000000000c1", unread: this.total, mentions: 0, notify: "all" as const, marked_unread: false, parent_id: null }]
      : [];
    const threads = { unread: 0, unread_threads: 0, mentions: 0 };
    return { user_id: this.userId, total: this.total, unread_conversations: conversations.length, mentions: 0, badge: this.badge ?? this.total, threads, conversations };
  }

  /** A write: a new marker, and every open stream and held long-poll hears it. */
  bump(): void {
    this.marker++;
    this.total++;
    this.etag = `"m${this.marker}.e1"`;
    for (const stream of this.streams) if (stream.open) stream.counts(this.etag, this.counts);
    for (const socket of this.sockets) if (socket.isOpen) socket.frame(this.etag, this.counts);
    for (const wake of this.held.splice(0)) wake();
  }

  /** The next requests whose path ends with `suffix` get these answers, in order. */
  answer(suffix: string, ...answers: Override[]): void {
    this.overrides.set(suffix, [...(this.overrides.get(suffix) ?? []), ...answers]);
  }

  requestsTo(suffix: string): Recorded[] {
    return this.requests.filter((r) => r.path.endsWith(suffix));
  }

  get lastStream(): SseStream {
    const stream = this.streams[this.streams.length - 1];
    if (!stream) throw new Error("no SSE stream was opened");
    return stream;
  }

  get lastSocket(): FakeSocket {
    const socket = this.sockets[this.sockets.length - 1];
    if (!socket) throw new Error("no WebSocket was opened");
    return socket;
  }

  readonly fetch = async (url: string, init: { method?: string; headers?: Record<string, string>; body?: string; signal?: AbortSignal } = {}): Promise<Response> => {
    const path = new URL(url).pathname;
    const method = init.method ?? "GET";
    this.requests.push({ url, path, method, headers: { ...init.headers }, body: init.body, at: Date.now() });
    if (init.signal?.aborted) throw new DOMException("aborted", "AbortError");
    for (const [suffix, queue] of this.overrides) {
      if (path.endsWith(suffix) && queue.length) {
        const next = queue.shift()!;
        return json(next.status, next.body ?? { type: "about:blank", title: "x", status: next.status, detail: "refused" }, next.headers);
      }
    }
    if (path.endsWith("/unread-counts")) return this.countsAnswer(init.headers ?? {}, init.signal);
    if (path.endsWith("/unread-counts/stream")) return this.openStream(init.headers ?? {}, init.signal);
    if (path.endsWith("/stream-tickets")) return json(201, { ticket: `ticket-${this.requests.length}`, expires_in: 30 });
    if (path.endsWith("/push/webpush-key")) return json(200, { public_key: "BAEC" });
    if (method === "POST" && path.endsWith("/devices")) return json(201, { device_id: "00000000-0000-4000-8000-00000000d001" });
    if (method === "DELETE" && path.includes("/devices/")) return new Response(null, { status: 204 });
    return json(404, { detail: "no route" });
  };

  private async countsAnswer(headers: Record<string, string>, signal?: AbortSignal): Promise<Response> {
    const wait = /wait=(\d+)/.exec(headers.Prefer ?? "");
    if (headers["If-None-Match"] === this.etag && wait && !this.longPollRefused) {
      const before = this.etag;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, Number(wait[1]) * 1000);
        this.held.push(() => {
          clearTimeout(timer);
          resolve();
        });
        signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
      });
      const applied = { "Preference-Applied": `wait=${wait[1]}` };
      if (this.etag === before) return this.notModified(applied);
      return json(200, this.counts, { ETag: this.etag, "X-Poll-Interval": String(this.pollInterval), ...applied });
    }
    if (headers["If-None-Match"] === this.etag) return this.notModified({});
    return json(200, this.counts, { ETag: this.etag, "X-Poll-Interval": String(this.pollInterval) });
  }

  private notModified(extra: Record<string, string>): Response {
    return new Response(null, { status: 304, headers: { ETag: this.etag, "X-Poll-Interval": String(this.pollInterval), ...extra } });
  }

  private openStream(headers: Record<string, string>, signal?: AbortSignal): Response {
    const stream = new SseStream(signal);
    this.streams.push(stream);
    stream.write(`retry: ${this.pollInterval * 1000}\n\n`);
    if (headers["Last-Event-ID"] === this.etag) stream.write(": connected\n\n");
    else stream.counts(this.etag, this.counts);
    return new Response(stream.body, { status: 200, headers: { "Content-Type": "text/event-stream" } });
  }

  /** The WebSocket class to give the client: every socket lands in `sockets`. */
  get WebSocket(): new (url: string, protocols?: string | string[], options?: { headers: Record<string, string> }) => FakeSocket {
    const server = this;
    return class extends FakeSocket {
      constructor(url: string, protocols?: string | string[], options?: { headers: Record<string, string> }) {
        super(server, url, options?.headers ?? {});
        server.sockets.push(this);
      }
    };
  }
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });
}

/** One SSE response body the test writes into. */
export class SseStream {
  open = true;
  readonly body: ReadableStream<Uint8Array>;
  private controller!: ReadableStreamDefaultController<Uint8Array>;

  constructor(signal?: AbortSignal) {
    this.body = new ReadableStream({ start: (c) => { this.controller = c; } });
    signal?.addEventListener("abort", () => {
      if (!this.open) return;
      this.open = false;
      this.controller.error(new DOMException("aborted", "AbortError"));
    });
  }

  write(text: string): void {
    if (this.open) this.controller.enqueue(encoder.encode(text));
  }

  counts(etag: string, counts: Counts): void {
    this.write(`event: counts\nid: ${etag}\ndata: ${JSON.stringify(counts)}\n\n`);
  }

  /** The server ends the stream (a shutdown sends `retry:` first). */
  end(retryMs?: number): void {
    if (retryMs !== undefined) this.write(`retry: ${retryMs}\n\n`);
    if (!this.open) return;
    this.open = false;
    this.controller.close();
  }
}

/** A WebSocket the test drives: `accept()` opens it, `serverClose()` ends it. */
export class FakeSocket {
  isOpen = false;
  closed = false;
  readonly sent: string[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: (() => void) | null = null;
  /** Answer `ping` with `pong` (a live server); false plays a half-open socket. */
  answersPings = true;

  constructor(readonly server: FakeServer, readonly url: string, readonly headers: Record<string, string>) {}

  accept(): void {
    this.isOpen = true;
    this.onopen?.();
    const etag = new URL(this.url).searchParams.get("etag");
    if (etag !== this.server.etag) this.frame(this.server.etag, this.server.counts);
  }

  frame(etag: string, counts: Counts): void {
    this.onmessage?.({ data: JSON.stringify({ etag, counts }) });
  }

  send(data: string): void {
    this.sent.push(data);
    if (data === "ping" && this.answersPings) queueMicrotask(() => this.isOpen && this.onmessage?.({ data: "pong" }));
  }

  close(code = 1000, reason = ""): void {
    this.serverClose(code, reason);
  }

  serverClose(code: number, reason = ""): void {
    if (this.closed) return;
    this.closed = true;
    this.isOpen = false;
    this.onclose?.({ code, reason });
  }
}

/** A HS256-shaped token (unsigned: the fake never checks) with `iat` and `exp` in seconds. */
export function fakeToken(expiresInSeconds: number, tag = "t"): string {
  const now = Math.floor(Date.now() / 1000);
  const claims = Buffer.from(JSON.stringify({ sub: tag, iat: now, exp: now + expiresInSeconds })).toString("base64url");
  return `eyJhbGciOiJIUzI1NiJ9.${claims}.${tag}`;
}

/** Run timers until `condition` holds (each step advances 10 ms of fake time), or fail. */
export async function until(condition: () => boolean, what: string, maxMs = 120_000): Promise<void> {
  const { vi } = await import("vitest");
  for (let spent = 0; spent <= maxMs; spent += 10) {
    if (condition()) return;
    await vi.advanceTimersByTimeAsync(10);
  }
  throw new Error(`fake time ran ${maxMs} ms without: ${what}`);
}
