// 401, 403, Retry-After, server close hints, and tokens (issue 18: "Errors").
import { afterEach, describe, expect, it, vi } from "vitest";
import { harness } from "../support/clients.js";
import { fakeToken, until } from "../support/fake-server.js";

/** An hour-long token with 30 s left. */
function staleHourToken(): string {
  const now = Math.floor(Date.now() / 1000);
  const claims = Buffer.from(JSON.stringify({ iat: now - 3570, exp: now + 30 })).toString("base64url");
  return `eyJhbGciOiJIUzI1NiJ9.${claims}.stale`;
}

afterEach(() => {
  vi.useRealTimers();
});

describe("401 and 403", () => {
  it("a 401 forces one token refresh, and the refreshed token is used", async () => {
    const { server, client, tokens } = harness();
    server.answer("/unread-counts", { status: 401 });
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    expect(tokens.map((t) => t.forceRefresh)).toEqual([false, true]);
    expect(server.requests[1]!.headers.Authorization).toBe(`Bearer ${tokens[1]!.token}`);
    client.stop();
  });

  it("a second 401 stops with unauthorized, and nothing more is sent", async () => {
    const { server, client } = harness();
    server.answer("/unread-counts", { status: 401 });
    server.answer("/stream", { status: 401 });
    client.start();
    await until(() => client.getSnapshot().status === "unauthorized", "unauthorized");
    expect(client.getSnapshot().error).toMatchObject({ status: 401 });
    const sent = server.requests.length;
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(server.requests.length).toBe(sent);
    client.stop();
  });

  it("a 403 is final at once", async () => {
    const { server, client } = harness();
    server.answer("/stream", { status: 403 });
    client.start();
    await until(() => client.getSnapshot().status === "forbidden", "forbidden");
    const sent = server.requests.length;
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(server.requests.length).toBe(sent);
  });

  it("refresh() after a sign-in starts again", async () => {
    const { server, client } = harness();
    server.answer("/unread-counts", { status: 403 });
    client.start();
    await until(() => client.getSnapshot().status === "forbidden", "forbidden");
    void client.refresh();
    await until(() => client.getSnapshot().status === "live", "live");
    client.stop();
  });
});

describe("Retry-After and the server's hints", () => {
  it("waits at least Retry-After after a 429", async () => {
    const { server, client } = harness({ transports: ["poll"] });
    server.answer("/unread-counts", { status: 429, headers: { "Retry-After": "20" } });
    client.start();
    await until(() => server.requestsTo("/unread-counts").length === 2, "the retry");
    const [refused, retried] = server.requestsTo("/unread-counts");
    expect(retried!.at - refused!.at).toBeGreaterThanOrEqual(20_000);
    client.stop();
  });

  it("waits at least Retry-After after a 503 from a poll (Postgres down), without demoting polling", async () => {
    const { server, client } = harness({ transports: ["poll"] });
    server.answer("/unread-counts", { status: 503, headers: { "Retry-After": "5" } }, { status: 503, headers: { "Retry-After": "5" } });
    client.start();
    await until(() => server.requestsTo("/unread-counts").length === 3, "two retries");
    const at = server.requestsTo("/unread-counts").map((r) => r.at);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(5_000);
    expect(at[2]! - at[1]!).toBeGreaterThanOrEqual(5_000);
    await until(() => client.getSnapshot().status === "polling", "polling");
    client.stop();
  });

  it("a 503 on a stream (at capacity) degrades to polling at once", async () => {
    const { server, client } = harness();
    server.answer("/stream", { status: 503, headers: { "Retry-After": "9" } });
    server.longPollRefused = true; // at capacity long-polls are answered at once, as polls
    client.start();
    await until(() => client.getSnapshot().status === "polling", "polling");
    expect(server.requestsTo("/stream")).toHaveLength(1);
    client.stop();
  });

  it("a stream's final retry: is when it reconnects, not before", async () => {
    const { server, client } = harness();
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    server.lastStream.end(4_321);
    const closed = Date.now();
    await until(() => server.requestsTo("/stream").length === 2, "the reconnect");
    expect(server.requestsTo("/stream")[1]!.at - closed).toBe(4_321);
    client.stop();
  });

  it("WebSocket close 1012 waits the delay in its reason", async () => {
    const { server, client } = harness({ transports: ["ws"] });
    client.start();
    await until(() => server.sockets.length === 1, "a socket");
    server.lastSocket.accept();
    await until(() => client.getSnapshot().status === "live", "live");
    server.lastSocket.serverClose(1012, "retry in 2500 ms");
    const closed = Date.now();
    await until(() => server.sockets.length === 2, "a second socket");
    expect(server.requestsTo("/stream-tickets")[1]!.at - closed).toBe(2_500);
    client.stop();
  });

  it("WebSocket close 1008 (token expired) reconnects at once with a refreshed token", async () => {
    const { server, client, tokens } = harness({ transports: ["ws"] });
    client.start();
    await until(() => server.sockets.length === 1, "a socket");
    server.lastSocket.accept();
    await until(() => client.getSnapshot().status === "live", "live");
    server.lastSocket.serverClose(1008, "token expired");
    await until(() => server.sockets.length === 2, "a second socket");
    expect(tokens[tokens.length - 1]!.forceRefresh).toBe(true);
    client.stop();
  });
});

describe("tokens", () => {
  it("fetches a token before every connection, reconnects included", async () => {
    const { server, client, tokens } = harness();
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    for (let i = 0; i < 3; i++) {
      server.lastStream.end(1000);
      await until(() => server.requestsTo("/stream").length === i + 2, "a reconnect");
    }
    const used = server.requests.map((r) => r.headers.Authorization);
    expect(used).toEqual(tokens.map((t) => `Bearer ${t.token}`));
    expect(new Set(used).size).toBe(used.length); // each connection its own fetch of the token
    client.stop();
  });

  it("renews a stream shortly before its token's exp", async () => {
    // Renewed 20 s before exp; heartbeats are not what this test is about.
    const { server, client, tokens } = harness({ tokenSeconds: 100, heartbeatTimeoutMs: 600_000 });
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    const opened = Date.now();
    await until(() => server.requestsTo("/stream").length === 2, "the renewal");
    const renewedAt = server.requestsTo("/stream")[1]!.at;
    expect(renewedAt - opened).toBeGreaterThan(70_000);
    expect(renewedAt - opened).toBeLessThan(100_000);
    expect(server.streams[0]!.open).toBe(false); // the old stream was closed
    expect(tokens.length).toBe(3);
    client.stop();
  });

  it("refreshes a token that would expire before its stream could be renewed", async () => {
    // A cached token with 30 s left (a margin of 60 s for an hour-long token): refreshed first.
    const tokens: { forceRefresh: boolean; token: string }[] = [];
    const { client, server } = harness({
      getToken: async ({ forceRefresh }) => {
        const token = forceRefresh ? fakeToken(3600, "fresh") : staleHourToken();
        tokens.push({ forceRefresh, token });
        return token;
      },
    });
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    expect(tokens.map((t) => t.forceRefresh)).toEqual([false, true, false, true]);
    expect(server.requests.every((r) => r.headers.Authorization!.endsWith(".fresh"))).toBe(true);
    client.stop();
  });

  it("a getToken that throws sends nothing and retries with backoff", async () => {
    const { server, client } = harness({ getToken: () => Promise.reject(new Error("offline auth")) });
    client.start();
    await until(() => client.getSnapshot().error?.kind === "token", "a token error");
    await vi.advanceTimersByTimeAsync(60_000);
    expect(server.requests).toHaveLength(0);
    client.stop();
  });
});
