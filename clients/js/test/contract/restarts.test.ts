// Against the real service in trouble: every stream slot taken, a SIGTERM (a deploy), and Redis
// restarted empty. These need a service of their own: they restart it, or fill it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CountsClient, type TransportName } from "../../src/index.js";
import { ChatUser, type CountsServer, startCountsServer, waitFor } from "../support/service.js";
import { watched } from "../support/watched.js";

function client(user: ChatUser, transports: TransportName[]): { client: CountsClient; etags: string[] } {
  const etags: string[] = [];
  const made = new CountsClient({
    baseUrl: user.server.url, userId: user.id, transports, getToken: async () => user.token(), pollIntervalMs: 1_000,
  });
  made.subscribe(() => {
    const { etag } = made.getSnapshot();
    if (etag && etag !== etags[etags.length - 1]) etags.push(etag);
  });
  return { client: made, etags };
}

describe("COUNTS_MAX_STREAMS exhausted", () => {
  it("degrades SSE to polling, and still delivers", async () => {
    const server = await startCountsServer({ settings: { COUNTS_MAX_STREAMS: "1", COUNTS_POLL_INTERVAL: "1" } });
    const other = await ChatUser.create(server);
    const hog = new AbortController(); // someone else holds the one stream slot
    const held = await fetch(`${server.url}/v1/users/${other.id}/unread-counts/stream`, {
      headers: { Authorization: `Bearer ${other.token()}` }, signal: hog.signal,
    });
    expect(held.status).toBe(200);
    const user = await ChatUser.create(server);
    const { client: watched } = client(user, ["sse", "long-poll", "poll"]);
    watched.start();
    await waitFor(() => watched.getSnapshot().status === "polling", "polling", 20_000);
    expect(watched.getSnapshot().transport).toBe("poll");
    await user.receiveMessage();
    await waitFor(() => watched.getSnapshot().counts?.total === 1, "the write, by polling", 5_000);
    watched.stop();
    hog.abort();
    await server.stop();
  });
});

describe("restarts", () => {
  let server: CountsServer;

  beforeAll(async () => {
    server = await startCountsServer({ privateRedis: true, settings: { COUNTS_POLL_INTERVAL: "1", COUNTS_STREAM_HEARTBEAT: "1" } });
  });

  afterAll(async () => {
    await server?.stop();
  });

  for (const transport of ["sse", "ws"] as const) {
    it(`${transport}: reconnects after the server's hint, with no duplicate event`, async () => {
      const { client, user, trace, etags } = await watched(server, [transport], { wsAuth: "header" });
      client.start();
      await waitFor(() => client.getSnapshot().status === "live", "live");
      await user.receiveMessage();
      await waitFor(() => client.getSnapshot().counts?.total === 1, "the first write");
      const connects = trace.filter((e) => e.type === "connect").length;
      await server.command("restart");
      const hinted = trace.find((e) => e.type === "outcome" && e.outcome.kind === "ended" && e.outcome.retryMs !== undefined);
      expect(hinted, "the server's hint").toBeDefined();
      const retryMs = (hinted as { outcome: { retryMs: number } }).outcome.retryMs;
      await waitFor(() => client.getSnapshot().status === "live" && trace.filter((e) => e.type === "connect").length > connects, "reconnected", 20_000);
      const reconnect = trace.filter((e) => e.type === "connect")[connects]!;
      expect(reconnect.at - hinted!.at).toBeGreaterThanOrEqual(retryMs - 5);
      await user.receiveMessage();
      await waitFor(() => client.getSnapshot().counts?.total === 2, "a write after the restart");
      expect(new Set(etags).size).toBe(etags.length); // no ETag heard twice
      expect(etags).toHaveLength(3);
      client.stop();
    });
  }

  it("Redis restarted empty loses nothing: every transport converges on the truth, no ETag heard twice", async () => {
    const watchers = await Promise.all((["sse", "ws", "long-poll", "poll"] as const).map(async (transport) => {
      const user = await ChatUser.create(server);
      return { user, transport, ...client(user, [transport]) };
    }));
    for (const w of watchers) w.client.start();
    await waitFor(() => watchers.every((w) => w.client.getSnapshot().counts !== null), "first counts");
    for (const w of watchers) await w.user.receiveMessage();
    await waitFor(() => watchers.every((w) => w.client.getSnapshot().counts?.total === 1), "the first writes");
    await server.command("restart-redis"); // every marker is gone; writes meanwhile are queued
    for (const w of watchers) await w.user.receiveMessage();
    await waitFor(() => watchers.every((w) => w.client.getSnapshot().counts?.total === 2), "the writes across the restart", 20_000);
    for (const w of watchers) {
      expect(w.client.getSnapshot().counts?.total, w.transport).toBe(await w.user.truth());
      expect(new Set(w.etags).size, w.transport).toBe(w.etags.length);
      w.client.stop();
    }
  });
});
