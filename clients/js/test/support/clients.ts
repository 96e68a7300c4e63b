// Building clients over the fake server, with a lifecycle the test switches and a record of every
// snapshot listeners were given.
import { vi } from "vitest";
import { CountsClient, type CountsClientOptions, type CountsSnapshot, type FetchLike, type Lifecycle, type LifecycleEvent } from "../../src/index.js";
import { FakeServer, fakeToken } from "./fake-server.js";

export class FakeLifecycle implements Lifecycle {
  foreground = true;
  online = true;
  private readonly listeners = new Set<(event: LifecycleEvent) => void>();

  constructor(readonly backgroundGraceMs = 0) {}

  isForeground = (): boolean => this.foreground;
  isOnline = (): boolean => this.online;

  subscribe(listener: (event: LifecycleEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(event: LifecycleEvent): void {
    if (event === "foreground" || event === "background") this.foreground = event === "foreground";
    if (event === "online" || event === "offline") this.online = event === "online";
    for (const listener of this.listeners) listener(event);
  }
}

export interface Harness {
  server: FakeServer;
  client: CountsClient;
  lifecycle: FakeLifecycle;
  tokens: { forceRefresh: boolean; token: string }[];
  /** Every snapshot a listener was called with, in order. */
  heard: CountsSnapshot[];
  /** ETags in the order listeners first saw them. */
  etagsHeard(): (string | null)[];
}

export interface HarnessOptions extends Partial<CountsClientOptions> {
  tokenSeconds?: number;
  graceMs?: number;
  /** Wraps the fake server's fetch (a buffering React Native fetch, a recorder). */
  wrapFetch?: (fetch: FakeServer["fetch"]) => FetchLike;
}

export function harness(options: HarnessOptions = {}): Harness {
  vi.useFakeTimers({ now: new Date("2026-12-07T12:00:00Z") });
  const server = new FakeServer();
  const lifecycle = new FakeLifecycle(options.graceMs ?? 0);
  const tokens: Harness["tokens"] = [];
  const client = new CountsClient({
    baseUrl: "http://counts.test",
    userId: server.userId,
    getToken: async ({ forceRefresh }) => {
      const token = fakeToken(options.tokenSeconds ?? 3600, `t${tokens.length}`);
      tokens.push({ forceRefresh, token });
      return token;
    },
    fetch: options.wrapFetch ? options.wrapFetch(server.fetch) : server.fetch,
    WebSocket: server.WebSocket,
    lifecycle,
    random: () => 0.5,
    ...without(options, "wrapFetch", "fetch"),
  });
  const heard: CountsSnapshot[] = [];
  client.subscribe(() => heard.push(client.getSnapshot()));
  return {
    server, client, lifecycle, tokens, heard,
    etagsHeard: () => heard.map((s) => s.etag).filter((etag, i, all) => i === 0 || etag !== all[i - 1]),
  };
}

function without<T extends object>(options: T, ...keys: string[]): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([key]) => !keys.includes(key))) as Partial<T>;
}
