// Heartbeat watchdog, WebSocket ping/pong, backoff and polling (issue 18: "Liveness", "Backoff").
import { afterEach, describe, expect, it, vi } from "vitest";
import { Backoff, fullJitter } from "../../src/backoff.js";
import { harness } from "../support/clients.js";
import { until } from "../support/fake-server.js";

afterEach(() => {
  vi.useRealTimers();
});

describe("liveness", () => {
  it("SSE: no byte for the heartbeat timeout means a dead stream: reconnect", async () => {
    const { server, client } = harness({ heartbeatTimeoutMs: 20_000 });
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    for (let i = 0; i < 3; i++) {
      await vi.advanceTimersByTimeAsync(15_000);
      server.lastStream.write(": heartbeat\n\n"); // heartbeats keep it
    }
    expect(server.requestsTo("/stream")).toHaveLength(1);
    const quietFrom = Date.now();
    await until(() => server.requestsTo("/stream").length === 2, "a reconnect");
    expect(server.requestsTo("/stream")[1]!.at - quietFrom).toBeGreaterThanOrEqual(20_000);
    client.stop();
  });

  it("WebSocket: pings on every foreground, and a socket that does not pong is replaced", async () => {
    const { server, client, lifecycle } = harness({ transports: ["ws"], graceMs: 30_000, pongTimeoutMs: 5_000 });
    client.start();
    await until(() => server.sockets.length === 1, "a socket");
    server.lastSocket.accept();
    await until(() => client.getSnapshot().status === "live", "live");
    lifecycle.emit("background");
    lifecycle.emit("foreground");
    await until(() => server.lastSocket.sent.includes("ping"), "a ping");
    await vi.advanceTimersByTimeAsync(10_000);
    expect(server.sockets).toHaveLength(1); // it answered: kept
    server.lastSocket.answersPings = false; // half-open after sleep
    lifecycle.emit("background");
    lifecycle.emit("foreground");
    await until(() => server.sockets.length === 2, "a new socket");
    expect(server.sockets[0]!.closed).toBe(true);
    client.stop();
  });

  it("WebSocket: a quiet socket is probed with a ping after pingAfterMs", async () => {
    const { server, client } = harness({ transports: ["ws"], pingAfterMs: 50_000 });
    client.start();
    await until(() => server.sockets.length === 1, "a socket");
    server.lastSocket.accept();
    await vi.advanceTimersByTimeAsync(49_000);
    expect(server.lastSocket.sent).toEqual([]);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(server.lastSocket.sent).toEqual(["ping"]);
    client.stop();
  });
});

describe("backoff", () => {
  it("is full jitter: random in [0, min(cap, base * 2^n)]", () => {
    expect([0, 1, 2, 3, 10].map((n) => fullJitter(n, () => 0.999999))).toEqual([999, 1999, 3999, 7999, 29999]);
    expect(fullJitter(4, () => 0)).toBe(0);
    expect(fullJitter(2, () => 0.5)).toBe(2000);
    const backoff = new Backoff(() => 0.999999);
    expect([backoff.next(), backoff.next(), backoff.next()]).toEqual([999, 1999, 3999]);
    backoff.reset();
    expect(backoff.next()).toBe(999);
  });

  it("widens while connections die young, and starts over only after one proved itself", async () => {
    const { server, client } = harness({ random: () => 0.999999 });
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    const gaps: number[] = [];
    for (let i = 0; i < 4; i++) {
      server.lastStream.end(); // dies at once: not proven
      const closed = Date.now();
      await until(() => server.requestsTo("/stream").length === i + 2, "a reconnect");
      gaps.push(server.requestsTo("/stream")[i + 1]!.at - closed);
    }
    expect(gaps).toEqual([999, 1999, 3999, 7999]);
    await vi.advanceTimersByTimeAsync(12_000); // this one stays up: proven
    server.lastStream.write(": heartbeat\n\n");
    server.lastStream.end();
    const closed = Date.now();
    await until(() => server.requestsTo("/stream").length === 6, "a reconnect");
    expect(server.requestsTo("/stream")[5]!.at - closed).toBe(999);
    client.stop();
  });
});

describe("polling", () => {
  it("waits at least X-Poll-Interval, and lengthens while nothing changes", async () => {
    const { server, client } = harness({ transports: ["poll"], pollIntervalMs: 10_000, random: () => 0 });
    server.pollInterval = 15; // the server's interval is longer than ours: it wins
    client.start();
    await until(() => server.requestsTo("/unread-counts").length === 9, "nine polls", 600_000);
    const at = server.requestsTo("/unread-counts").map((r) => r.at);
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    // The revalidation's 200 is a change; then three unchanged polls stretch the local interval
    // x2 (past the server's), three more x4, and there it stays.
    expect(gaps).toEqual([15_000, 15_000, 15_000, 20_000, 20_000, 20_000, 40_000, 40_000]);
    server.bump(); // a change: back to the shortest interval
    await until(() => server.requestsTo("/unread-counts").length === 11, "two more polls", 600_000);
    const after = server.requestsTo("/unread-counts").map((r) => r.at);
    expect(after[10]! - after[9]!).toBe(15_000);
    client.stop();
  });

  it("is 'polling' from the first answer: the revalidation is this period's first poll", async () => {
    const { server, client } = harness({ transports: ["poll"] });
    client.start();
    await until(() => server.requests.length === 1, "the revalidation");
    await vi.advanceTimersByTimeAsync(10);
    expect(client.getSnapshot()).toMatchObject({ status: "polling", transport: "poll" });
    expect(server.requests).toHaveLength(1); // and the next poll waits its interval
    client.stop();
  });

  it("refresh() polls now and resets the interval", async () => {
    const { server, client } = harness({ transports: ["poll"], pollIntervalMs: 10_000, random: () => 0 });
    server.pollInterval = 1;
    client.start();
    await until(() => server.requestsTo("/unread-counts").length === 8, "eight polls", 600_000);
    const before = Date.now();
    await client.refresh();
    await until(() => server.requestsTo("/unread-counts").length === 9, "the refresh");
    expect(server.requestsTo("/unread-counts")[8]!.at).toBe(before);
    await until(() => server.requestsTo("/unread-counts").length === 10, "the next poll");
    expect(server.requestsTo("/unread-counts")[9]!.at - before).toBe(10_000);
    client.stop();
  });

  it("spaces long-polls answered at once by a second (no tight loop)", async () => {
    const { server, client } = harness({ transports: ["long-poll"] });
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    for (let i = 0; i < 3; i++) server.bump();
    await vi.advanceTimersByTimeAsync(5_000);
    const held = server.requests.filter((r) => r.headers.Prefer);
    const gaps = held.slice(1).map((r, i) => r.at - held[i]!.at);
    expect(gaps.every((gap) => gap >= 1_000)).toBe(true);
    client.stop();
  });
});
