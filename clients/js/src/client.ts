// CountsClient: one user's unread counts, kept fresh by the best transport the runtime and the
// server allow, and silent while the app is in the background (push carries the news then).
//
// One loop per foreground period: revalidate once (a conditional GET), then open transports
// one after another, each with a token fetched for it, and wait between them as the outcome says
// (the server's hint, Retry-After, full-jitter backoff, the poll interval). Anything that ends
// the period (background, offline, stop) bumps `generation`; a loop of an older generation
// notices at its next step and ends without sending anything.
import { Backoff } from "./backoff.js";
import { type Lifecycle, type LifecycleEvent, defaultLifecycle } from "./lifecycle.js";
import {
  type AbortSignalLike, type FetchLike, type Timers, type WebSocketConstructorLike,
  globalObject, newAbortController, realTimers,
} from "./platform.js";
import { type StorageLike, loadPersisted, savePersisted } from "./storage.js";
import { CountsStore } from "./store.js";
import { type GetToken, type TokenTimes, renewMargin, tokenTimes } from "./token.js";
import { conditionalGet, longPoll, poll } from "./transports/conditional.js";
import type { Connection, Outcome, TransportSettings, TransportTable } from "./transports/connection.js";
import { describe, userPath } from "./transports/connection.js";
import { sse } from "./transports/sse.js";
import { ws } from "./transports/ws.js";
import type {
  Counts, CountsError, CountsSnapshot, DeviceCreated, DeviceRegistration, Status, TransportName,
} from "./types.js";

export type TraceEvent =
  | { type: "connect"; transport: TransportName | "revalidate" }
  | { type: "outcome"; transport: TransportName | "revalidate"; outcome: Outcome }
  | { type: "wait"; ms: number }
  | { type: "demote"; transport: TransportName; ms: number };

export interface CountsClientOptions {
  baseUrl: string;
  userId: string;
  /** A token for this user; `forceRefresh` after a 401 or near `exp` (Supabase's getSession fits). */
  getToken: GetToken;
  /** In order of preference; polling is the last resort whatever this says. Default: web's
   * ["sse", "long-poll", "poll"] (the react-native entry puts "ws" first). */
  transports?: TransportName[];
  lifecycle?: Lifecycle;
  fetch?: FetchLike;
  WebSocket?: WebSocketConstructorLike;
  /** Keeps the last {etag, counts} across launches: localStorage, AsyncStorage. */
  storage?: StorageLike;
  /** How a WebSocket authenticates: "ticket" (browsers, the default) or "header" (React Native). */
  wsAuth?: "header" | "ticket";
  /** The push device id this app install registered (`registerDevice`): its streams then
   * silence only its own alerts, not the user's other devices'. */
  deviceId?: string;
  /** The shortest interval between polls; the server's X-Poll-Interval wins when longer. */
  pollIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  pingAfterMs?: number;
  pongTimeoutMs?: number;
  longPollWaitSeconds?: number;
  random?: () => number;
  timers?: Timers;
  /** Sees every connection, outcome and wait: for logs and tests. */
  trace?: (event: TraceEvent) => void;
}

export class CountsRequestError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = "CountsRequestError";
  }
}

const WEB_TRANSPORTS: TransportName[] = ["sse", "long-poll", "poll"];
const TRANSPORTS: TransportTable = { sse, ws, "long-poll": longPoll, poll };
/** A connection open this long has proved itself: the backoff starts over after it. */
export const PROVEN_MS = 10_000;
/** Two failures to open within this window demote a transport that never opened. */
export const QUICK_FAILURES_MS = 10_000;
export const DEMOTION_MS = 5 * 60_000;
/** Long-polls answered quicker than this are spaced to it: no tight loop against a busy server. */
export const LONG_POLL_SPACING_MS = 1_000;
/** Back online, every client waits a random part of this: a network's return is no stampede. */
export const ONLINE_JITTER_MS = 3_000;
/** After three unchanged polls the interval doubles, after six it quadruples, and stays there. */
const POLL_STRETCH_EVERY = 3;
const POLL_STRETCH_MAX = 2;
const REQUEST_DEADLINE_MS = 30_000;
const REVALIDATE_AFTER_AWAY_MS = 5_000;

export class CountsClient {
  readonly baseUrl: string;
  readonly userId: string;
  readonly fetch: FetchLike;
  private readonly options: CountsClientOptions;
  private readonly store = new CountsStore();
  private readonly lifecycle: Lifecycle;
  private readonly transports: TransportName[];
  private readonly settings: TransportSettings;
  private readonly timers: Timers;
  private readonly random: () => number;
  private readonly backoff: Backoff;

  private generation = 0;
  private looping = false;
  /** Set while started: ends the lifecycle subscription. */
  private unlisten?: () => void;
  private abortCurrent?: () => void;
  private wake?: () => void;
  private graceTimer: unknown;
  private current?: Connection;
  private openedAt?: number;
  private token: TokenTimes | null = null;
  private forceRefresh = false;
  private backgroundAt?: number;
  /** A request of this foreground period was answered (the server is there). */
  private answered = false;
  private refreshedFor401 = false;
  private serverPollMs = 0;
  private unchangedPolls = 0;
  private readonly demotedUntil = new Map<TransportName, number>();
  /** When each transport last failed to open: a second failure soon after demotes it. */
  private readonly lastFailure = new Map<TransportName, number>();
  private readonly everOpened = new Set<TransportName>();

  readonly getSnapshot: () => CountsSnapshot = this.store.getSnapshot;
  readonly subscribe: (listener: () => void) => () => void = this.store.subscribe;

  constructor(options: CountsClientOptions) {
    const globals = globalObject();
    this.options = options;
    this.baseUrl = options.baseUrl;
    this.userId = options.userId;
    const fetch = options.fetch ?? (globals.fetch as FetchLike | undefined);
    if (!fetch) throw new Error("CountsClient: no fetch; pass options.fetch");
    this.fetch = options.fetch ?? ((url, init) => fetch(url, init)); // unbound window.fetch throws
    this.lifecycle = options.lifecycle ?? defaultLifecycle();
    const order = options.transports ?? WEB_TRANSPORTS;
    this.transports = order.includes("poll") ? order : [...order, "poll"];
    this.timers = options.timers ?? realTimers;
    this.random = options.random ?? Math.random;
    this.backoff = new Backoff(this.random);
    this.settings = {
      heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? 45_000,
      pingAfterMs: options.pingAfterMs ?? 60_000,
      pongTimeoutMs: options.pongTimeoutMs ?? 10_000,
      wsAuth: options.wsAuth ?? "ticket",
      longPollWaitSeconds: options.longPollWaitSeconds ?? 25,
      deviceId: options.deviceId,
    };
  }

  /** Show the saved counts, revalidate them, then stay live while in the foreground. */
  start(): void {
    if (this.unlisten) return;
    this.unlisten = this.lifecycle.subscribe((event) => this.onLifecycle(event));
    // Unless something stopped or restarted the loop while the saved counts were read.
    const generation = this.generation;
    void this.restore().then(() => {
      if (generation === this.generation) this.resume(false);
    });
  }

  stop(): void {
    if (!this.unlisten) return;
    this.unlisten();
    this.unlisten = undefined;
    this.halt("idle");
  }

  /** A user action: revalidate now, and poll at the shortest interval again. Also restarts a
   * client stopped by a 401 or 403 (after the user signed in again). */
  async refresh(): Promise<void> {
    this.unchangedPolls = 0;
    if (!this.unlisten || !this.lifecycle.isForeground() || !this.lifecycle.isOnline()) return;
    const status = this.store.getSnapshot().status;
    if (!this.looping || status === "unauthorized" || status === "forbidden") {
      this.refreshedFor401 = false;
      this.resume(false);
    } else if (this.wake) {
      this.wake();
    } else {
      await this.revalidateBeside();
    }
  }

  async registerDevice(device: DeviceRegistration): Promise<DeviceCreated> {
    const response = await this.authorized("POST", "/devices", JSON.stringify(device));
    if (response.status !== 200 && response.status !== 201) throw await requestError(response);
    return (await response.json()) as DeviceCreated;
  }

  /** Forget a device; one already forgotten (404) is not an error. */
  async unregisterDevice(deviceId: string): Promise<void> {
    const response = await this.authorized("DELETE", `/devices/${encodeURIComponent(deviceId)}`);
    if (response.status !== 204 && response.status !== 404) throw await requestError(response);
  }

  // --- the loop -------------------------------------------------------------------------------

  private resume(online: boolean): void {
    if (!this.unlisten) return;
    if (!this.lifecycle.isOnline()) return this.halt("offline");
    if (!this.lifecycle.isForeground()) return this.halt("paused");
    this.halt("connecting");
    this.answered = false;
    this.backoff.reset();
    for (const [transport, until] of this.demotedUntil) {
      if (until !== Infinity) this.demotedUntil.delete(transport); // re-tried on every return
    }
    this.lastFailure.clear();
    const generation = this.generation;
    void this.run(generation, online ? Math.floor(this.random() * ONLINE_JITTER_MS) : 0);
  }

  /** Ends whatever runs now (connection, wait, loop) and shows `status`. */
  private halt(status: Status, error?: CountsError): void {
    this.generation++;
    this.timers.clearTimeout(this.graceTimer);
    this.abortCurrent?.();
    this.wake?.();
    this.store.setStatus(status, null, error);
  }

  private async run(generation: number, delayMs: number): Promise<void> {
    this.looping = true;
    try {
      if (delayMs > 0 && !(await this.sleep(generation, delayMs))) return;
      // Coming back: one conditional request before anything else.
      let transport: TransportName | "revalidate" = "revalidate";
      for (;;) {
        const outcome = await this.attempt(generation, transport);
        if (outcome === null) return;
        const delay = this.settle(transport, outcome);
        if (delay === null || (delay > 0 && !(await this.sleep(generation, delay)))) return;
        if (!this.lifecycle.isForeground()) return this.halt("paused");
        transport = this.pick();
      }
    } finally {
      if (generation === this.generation) this.looping = false;
    }
  }

  private pick(): TransportName {
    const now = this.timers.now();
    return this.transports.find((t) => t === "poll" || (this.demotedUntil.get(t) ?? 0) <= now) ?? "poll";
  }

  /** One connection with a token fetched for it; null if the generation ended meanwhile. */
  private async attempt(generation: number, transport: TransportName | "revalidate"): Promise<Outcome | null> {
    const token = await this.connectionToken();
    if (generation !== this.generation) return null;
    if (typeof token !== "string") return token;
    const controller = newAbortController();
    let renewing = false;
    let timer: unknown;
    const abort = (): void => controller.abort();
    this.abortCurrent = abort;
    this.openedAt = undefined;
    const connection = this.connection(generation, transport, token, controller.signal);
    this.current = connection;
    if (transport !== "sse" && transport !== "ws") {
      const wait = transport === "long-poll" ? this.settings.longPollWaitSeconds * 1000 : 0;
      timer = this.timers.setTimeout(abort, wait + REQUEST_DEADLINE_MS);
    } else if (this.token) {
      // Renew the stream shortly before its token expires, with a token fetched anew.
      const renewIn = this.token.expiresAt - renewMargin(this.token) - this.timers.now();
      timer = this.timers.setTimeout(() => {
        renewing = true;
        abort();
      }, Math.max(renewIn, 0));
    }
    // A long-poll is live while it is held, once the server has answered this period's requests.
    if (transport === "long-poll" && this.answered) this.store.setStatus("live", transport);
    this.options.trace?.({ type: "connect", transport });
    let outcome = await TRANSPORTS[transport === "revalidate" ? "poll" : transport](connection);
    this.timers.clearTimeout(timer);
    if (this.abortCurrent === abort) this.abortCurrent = undefined;
    this.current = undefined;
    if (generation !== this.generation) return null;
    if (renewing) outcome = { kind: "renew" };
    this.options.trace?.({ type: "outcome", transport, outcome });
    return outcome;
  }

  private connection(generation: number, transport: TransportName | "revalidate", token: string,
    signal: AbortSignalLike): Connection {
    const current = (): boolean => generation === this.generation;
    return {
      baseUrl: this.baseUrl, userId: this.userId, token, fetch: this.fetch, signal,
      WebSocket: this.options.WebSocket ?? (globalObject().WebSocket as WebSocketConstructorLike | undefined),
      timers: this.timers, settings: this.settings,
      etag: () => this.store.getSnapshot().etag,
      opened: () => {
        if (!current() || transport === "revalidate") return;
        this.openedAt = this.timers.now();
        this.everOpened.add(transport);
        this.refreshedFor401 = false;
        this.store.setStatus(transport === "poll" ? "polling" : "live", transport);
      },
      counts: (etag: string, counts: Counts) => current() && this.adopt(etag, counts),
      pollInterval: (ms: number) => {
        this.serverPollMs = ms;
      },
    };
  }

  /** What to do after an outcome: ms to wait before the next connection, or null to stop. */
  private settle(transport: TransportName | "revalidate", outcome: Outcome): number | null {
    const now = this.timers.now();
    switch (outcome.kind) {
      case "answered":
        this.answered = true;
        this.backoff.reset();
        if (transport === "long-poll") return Math.max(0, LONG_POLL_SPACING_MS - outcome.elapsedMs);
        // A revalidation with no live transport to try was this period's first poll.
        return transport === "revalidate" && this.pick() !== "poll" ? 0 : this.pollDelay(outcome.changed);
      case "poll-instead":
        this.backoff.reset();
        this.demote(transport, DEMOTION_MS);
        return this.pollDelay(outcome.changed);
      case "ended": {
        if (this.openedAt !== undefined && now - this.openedAt >= PROVEN_MS) this.backoff.reset();
        this.trouble(outcome.reason);
        if (outcome.retryMs !== undefined) return outcome.retryMs; // the server's hint
        if (this.token && this.token.expiresAt <= now + 1_000) {
          this.forceRefresh = true; // the server ended the stream at its token's expiry
          return 0;
        }
        return this.backoff.next();
      }
      case "renew":
        return 0; // still live as far as anyone can tell: no status change
      case "token-expired":
        this.forceRefresh = true;
        this.trouble("token expired");
        return 0;
      case "unauthorized":
        if (!this.refreshedFor401) {
          this.refreshedFor401 = true;
          this.forceRefresh = true;
          return 0;
        }
        this.halt("unauthorized", { kind: "http", status: 401, message: "token refused twice" });
        return null;
      case "forbidden":
        this.halt("forbidden", { kind: "http", status: 403, message: "forbidden" });
        return null;
      case "rate-limited":
        this.trouble("rate limited", 429);
        return Math.max(outcome.retryAfterMs ?? 0, this.backoff.next());
      case "at-capacity":
        this.demote(transport, Math.max(DEMOTION_MS, outcome.retryAfterMs ?? 0));
        this.trouble("at capacity", 503);
        return 0;
      case "unsupported":
        this.demote(transport, Infinity);
        return 0;
      case "no-token":
        this.trouble(outcome.reason, undefined, "token");
        return this.backoff.next();
      case "failed": {
        this.trouble(outcome.reason, outcome.status);
        if (transport === "long-poll" || transport === "poll" || transport === "revalidate") this.answered = false;
        if (transport !== "poll" && transport !== "revalidate" && !this.everOpened.has(transport)) {
          const previous = this.lastFailure.get(transport);
          this.lastFailure.set(transport, now);
          if (previous !== undefined && now - previous < QUICK_FAILURES_MS) {
            this.demote(transport, DEMOTION_MS);
            return 0;
          }
        }
        return Math.max(outcome.retryAfterMs ?? 0, this.backoff.next());
      }
    }
  }

  private trouble(message: string, status?: number, kind?: CountsError["kind"]): void {
    const error: CountsError = { kind: kind ?? (status ? "http" : "network"), message, ...(status ? { status } : {}) };
    this.store.setStatus("connecting", null, error);
  }

  private demote(transport: TransportName | "revalidate", ms: number): void {
    if (transport === "poll" || transport === "revalidate") return;
    this.demotedUntil.set(transport, this.timers.now() + ms);
    this.options.trace?.({ type: "demote", transport, ms });
  }

  /** Polling from now: the delay before the next poll, at least the server's X-Poll-Interval,
   * longer while nothing changes, never all in step. */
  private pollDelay(changed: boolean): number {
    this.store.setStatus("polling", "poll");
    this.unchangedPolls = changed ? 0 : this.unchangedPolls + 1;
    const stretch = 2 ** Math.min(POLL_STRETCH_MAX, Math.floor(this.unchangedPolls / POLL_STRETCH_EVERY));
    const interval = Math.max(this.serverPollMs, (this.options.pollIntervalMs ?? 30_000) * stretch);
    return Math.round(interval * (1 + 0.2 * this.random()));
  }

  /** Resolves true after `ms`, or false at once if the generation ends; refresh() cuts it short. */
  private sleep(generation: number, ms: number): Promise<boolean> {
    this.options.trace?.({ type: "wait", ms });
    return new Promise((resolve) => {
      const done = (): void => {
        this.timers.clearTimeout(timer);
        if (this.wake === done) this.wake = undefined;
        resolve(generation === this.generation);
      };
      const timer = this.timers.setTimeout(done, ms);
      this.wake = done;
    });
  }

  // --- tokens, counts, lifecycle --------------------------------------------------------------

  /** A token fetched for this connection: refreshed when asked to (a 401, an expiry) or when
   * the one at hand expires before the stream would be renewed. */
  private async connectionToken(): Promise<string | Outcome> {
    try {
      let token = await this.options.getToken({ forceRefresh: this.forceRefresh });
      let times = tokenTimes(token);
      if (!this.forceRefresh && times && times.expiresAt - this.timers.now() < renewMargin(times)) {
        token = await this.options.getToken({ forceRefresh: true });
        times = tokenTimes(token);
      }
      this.forceRefresh = false;
      this.token = times;
      return token;
    } catch (error) {
      return { kind: "no-token", reason: `getToken failed: ${describe(error)}` };
    }
  }

  private adopt(etag: string, counts: Counts): boolean {
    const at = this.timers.now();
    if (!this.store.adopt(etag, counts, at)) return false;
    if (this.options.storage) void savePersisted(this.options.storage, this.userId, { etag, counts, savedAt: at });
    return true;
  }

  private async restore(): Promise<void> {
    if (!this.options.storage) return;
    const saved = await loadPersisted(this.options.storage, this.userId);
    if (saved && this.store.getSnapshot().etag === null) this.store.adopt(saved.etag, saved.counts, saved.savedAt);
  }

  private onLifecycle(event: LifecycleEvent): void {
    if (!this.unlisten) return;
    const status = this.store.getSnapshot().status;
    if (status === "unauthorized" || status === "forbidden") return; // until refresh() or start()
    switch (event) {
      case "background":
        this.backgroundAt = this.timers.now();
        this.timers.clearTimeout(this.graceTimer);
        if (this.lifecycle.backgroundGraceMs > 0 && this.openedAt !== undefined) {
          this.graceTimer = this.timers.setTimeout(() => this.halt("paused"), this.lifecycle.backgroundGraceMs);
        } else {
          this.halt("paused");
        }
        break;
      case "foreground": {
        this.timers.clearTimeout(this.graceTimer);
        const away = this.backgroundAt === undefined ? 0 : this.timers.now() - this.backgroundAt;
        this.backgroundAt = undefined;
        if (!this.looping || status === "paused") this.resume(false);
        else if (this.current?.probe) this.current.probe(); // is the socket still there?
        // A stream kept through a longer absence (a frozen page) may have died unseen: one
        // conditional GET beside it says at once, instead of at the heartbeat watchdog.
        else if (away >= REVALIDATE_AFTER_AWAY_MS) void this.revalidateBeside();
        break;
      }
      case "offline":
        this.halt("offline");
        break;
      case "online":
        if (this.lifecycle.isForeground()) this.resume(true);
        break;
    }
  }

  /** A conditional GET beside an open stream (refresh() while live). */
  private async revalidateBeside(): Promise<void> {
    const generation = this.generation;
    const token = await this.connectionToken();
    if (typeof token !== "string" || generation !== this.generation) return;
    await conditionalGet(this.connection(generation, "revalidate", token, newAbortController().signal));
  }

  private async authorized(method: string, path: string, body?: string) {
    const send = async (forceRefresh: boolean) => {
      const token = await this.options.getToken({ forceRefresh });
      const headers: Record<string, string> = { Authorization: `Bearer ${token}` };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      return this.fetch(userPath(this, path), { method, headers, body });
    };
    const response = await send(false);
    return response.status === 401 ? send(true) : response;
  }
}

async function requestError(response: { status: number; json(): Promise<unknown> }): Promise<CountsRequestError> {
  let detail = `HTTP ${response.status}`;
  try {
    const problem = (await response.json()) as { detail?: string };
    if (problem.detail) detail += `: ${problem.detail}`;
  } catch {
    // not problem+json
  }
  return new CountsRequestError(response.status, detail);
}

