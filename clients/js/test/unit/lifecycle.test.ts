// Background, foreground, offline, online (issue 18: "Lifecycle"; invariant 16).
import { afterEach, describe, expect, it, vi } from "vitest";
import { browserLifecycle } from "../../src/lifecycle.js";
import { reactNativeLifecycle } from "../../src/react-native.js";
import { harness } from "../support/clients.js";
import { fakeToken, until } from "../support/fake-server.js";

afterEach(() => {
  vi.useRealTimers();
});

describe("web: hidden and visible", () => {
  it("hidden keeps the stream for the grace period, then closes it; nothing is sent while hidden", async () => {
    const { server, client, lifecycle } = harness({ graceMs: 30_000 });
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    lifecycle.emit("background");
    await vi.advanceTimersByTimeAsync(29_000);
    expect(server.lastStream.open).toBe(true); // a quick tab switch costs nothing
    await vi.advanceTimersByTimeAsync(2_000);
    expect(server.lastStream.open).toBe(false);
    expect(client.getSnapshot().status).toBe("paused");
    const sent = server.requests.length;
    server.bump();
    await vi.advanceTimersByTimeAsync(6 * 3600_000);
    expect(server.requests.length).toBe(sent); // silent in the background
    client.stop();
  });

  it("visible sends one conditional GET before anything else, then reconnects", async () => {
    const { server, client, lifecycle } = harness({ graceMs: 1_000 });
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    lifecycle.emit("background");
    await vi.advanceTimersByTimeAsync(2_000);
    server.bump();
    const before = server.requests.length;
    lifecycle.emit("foreground");
    await until(() => client.getSnapshot().status === "live", "live again");
    const after = server.requests.slice(before);
    expect(after.map((r) => r.path.split("/").pop())).toEqual(["unread-counts", "stream"]);
    expect(after[0]!.headers["If-None-Match"]).toBeDefined(); // conditional
    expect(client.getSnapshot().counts?.total).toBe(1); // fresh from that one GET
    client.stop();
  });

  it("back within the grace period: a quick switch costs nothing, a longer absence one conditional GET", async () => {
    const { server, client, lifecycle } = harness({ graceMs: 30_000 });
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    const sent = server.requests.length;
    lifecycle.emit("background");
    await vi.advanceTimersByTimeAsync(2_000);
    lifecycle.emit("foreground");
    await vi.advanceTimersByTimeAsync(100);
    expect(server.requests.length).toBe(sent); // kept the stream, sent nothing
    lifecycle.emit("background"); // a frozen page: timers stop, the stream may die unseen
    await vi.advanceTimersByTimeAsync(10_000);
    lifecycle.emit("foreground");
    await until(() => server.requests.length === sent + 1, "a revalidation");
    expect(server.requests[sent]!.headers["If-None-Match"]).toBe(server.etag);
    expect(server.lastStream.open).toBe(true);
    client.stop();
  });

  it("after standby, the first request uses a token fetched for it, not the one that expired meanwhile", async () => {
    // A getToken that hands out its cached token until asked to refresh (as a session store does
    // while its own refresh timer slept with the device): supabase-js's rejoin-after-sleep bug.
    let cached: string | undefined; // minted on first use, on the fake clock
    const asked: boolean[] = [];
    const { server, client, lifecycle } = harness({
      getToken: async ({ forceRefresh }) => {
        asked.push(forceRefresh);
        if (forceRefresh) cached = fakeToken(3600, "fresh");
        cached ??= fakeToken(100, "first");
        return cached;
      },
    });
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    lifecycle.emit("background");
    await vi.advanceTimersByTimeAsync(3600_000); // an hour asleep: the cached token expired
    const before = server.requests.length;
    lifecycle.emit("foreground");
    await until(() => client.getSnapshot().status === "live", "live again");
    const after = server.requests.slice(before);
    expect(after.map((r) => r.headers.Authorization!.split(".").pop())).toEqual(["fresh", "fresh"]);
    expect(asked.slice(-3)).toEqual([false, true, false]); // the stale one was seen and refreshed
    client.stop();
  });

  it("polling stops at once when hidden, even within the grace period", async () => {
    const { server, client, lifecycle } = harness({ graceMs: 30_000, transports: ["poll"], pollIntervalMs: 5_000 });
    server.pollInterval = 1;
    client.start();
    await until(() => client.getSnapshot().status === "polling", "polling");
    lifecycle.emit("background");
    const sent = server.requests.length;
    await vi.advanceTimersByTimeAsync(3600_000);
    expect(server.requests.length).toBe(sent);
    expect(client.getSnapshot().status).toBe("paused");
    client.stop();
  });

  it("browserLifecycle: visibilitychange, freeze/resume, pagehide/pageshow, online/offline", () => {
    const handlers = new Map<string, () => void>();
    const target = { addEventListener: (t: string, h: () => void) => handlers.set(t, h), removeEventListener: (t: string) => handlers.delete(t) };
    const document = { ...target, visibilityState: "visible" };
    const navigator = { onLine: true };
    const lifecycle = browserLifecycle({ document, window: target, navigator }, 30_000);
    const events: string[] = [];
    const unsubscribe = lifecycle.subscribe((e) => events.push(e));
    document.visibilityState = "hidden";
    handlers.get("visibilitychange")!();
    document.visibilityState = "visible";
    handlers.get("visibilitychange")!();
    handlers.get("freeze")!();
    expect(lifecycle.isForeground()).toBe(false);
    handlers.get("resume")!();
    handlers.get("offline")!();
    handlers.get("online")!();
    expect(events).toEqual(["background", "foreground", "background", "foreground", "offline", "online"]);
    unsubscribe();
    expect(handlers.size).toBe(0);
  });
});

describe("React Native: AppState and NetInfo", () => {
  it("background closes at once; active revalidates, then reconnects", async () => {
    const { server, client, lifecycle } = harness({ transports: ["ws"], wsAuth: "header" });
    client.start();
    await until(() => server.sockets.length === 1, "a socket");
    server.lastSocket.accept();
    await until(() => client.getSnapshot().status === "live", "live");
    lifecycle.emit("background");
    expect(server.lastSocket.closed).toBe(true); // at once: push takes over
    expect(client.getSnapshot().status).toBe("paused");
    const before = server.requests.length;
    lifecycle.emit("foreground");
    await until(() => server.sockets.length === 2, "a new socket");
    expect(server.requests.slice(before).map((r) => r.path.split("/").pop())).toEqual(["unread-counts"]);
    client.stop();
  });

  it("reactNativeLifecycle maps AppState and NetInfo to the four events", () => {
    const appListeners: ((s: string) => void)[] = [];
    const netListeners: ((s: { isConnected: boolean | null }) => void)[] = [];
    const AppState = { currentState: "active", addEventListener: (_: "change", l: (s: string) => void) => { appListeners.push(l); return { remove: () => appListeners.splice(0) }; } };
    const NetInfo = { addEventListener: (l: (s: { isConnected: boolean | null }) => void) => { netListeners.push(l); return () => netListeners.splice(0); } };
    const lifecycle = reactNativeLifecycle({ AppState, NetInfo });
    const events: string[] = [];
    const unsubscribe = lifecycle.subscribe((e) => events.push(e));
    expect(lifecycle.backgroundGraceMs).toBe(0);
    for (const state of ["inactive", "background", "active"]) {
      AppState.currentState = state;
      appListeners[0]!(state);
    }
    netListeners[0]!({ isConnected: true });
    netListeners[0]!({ isConnected: false });
    expect(lifecycle.isOnline()).toBe(false);
    netListeners[0]!({ isConnected: null }); // unknown: not offline
    expect(events).toEqual(["background", "foreground", "offline", "online"]);
    unsubscribe();
    expect(appListeners.length + netListeners.length).toBe(0);
  });
});

describe("offline and online", () => {
  it("offline stops everything; online resets the backoff and reconnects after a random delay", async () => {
    const { server, client, lifecycle } = harness({ random: () => 0.5 });
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    lifecycle.emit("offline");
    expect(client.getSnapshot().status).toBe("offline");
    expect(server.lastStream.open).toBe(false);
    const sent = server.requests.length;
    await vi.advanceTimersByTimeAsync(3600_000);
    expect(server.requests.length).toBe(sent);
    lifecycle.emit("online");
    const back = Date.now();
    await until(() => server.requests.length > sent, "a request");
    expect(server.requests[sent]!.at - back).toBe(1_500); // random 0.5 of 3 s
    expect(server.requests[sent]!.path.endsWith("/unread-counts")).toBe(true);
    await until(() => client.getSnapshot().status === "live", "live again");
    client.stop();
  });

  it("online retries a demoted transport", async () => {
    const { server, client, lifecycle } = harness();
    server.answer("/stream", { status: 502 }, { status: 502 });
    client.start();
    await until(() => client.getSnapshot().transport === "long-poll", "long-poll");
    lifecycle.emit("offline");
    lifecycle.emit("online");
    await until(() => client.getSnapshot().transport === "sse", "SSE again");
    client.stop();
  });
});
