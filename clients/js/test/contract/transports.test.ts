// Against the real service (gunicorn, Postgres, Redis): each transport delivers a write, the
// client rides through a SIGTERM'd server on its hint, and renews its streams' tokens.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { CountsClient, type CountsClientOptions, type TraceEvent, type TransportName } from "../../src/index.js";
import { ChatUser, type CountsServer, startCountsServer, waitFor } from "../support/service.js";

let server: CountsServer;

beforeAll(async () => {
  // X-Poll-Interval 1 s, so that the polling transport can be shown delivering too.
  server = await startCountsServer({ settings: { COUNTS_POLL_INTERVAL: "1", COUNTS_STREAM_HEARTBEAT: "2" } });
});

afterAll(async () => {
  await server?.stop();
});

interface Watched {
  client: CountsClient;
  user: ChatUser;
  trace: (TraceEvent & { at: number })[];
  etags: string[];
  tokens: string[];
}

async function watched(transports: TransportName[], options: Partial<CountsClientOptions> & { tokenSeconds?: number } = {}): Promise<Watched> {
  const user = await ChatUser.create(server);
  const trace: Watched["trace"] = [];
  const etags: string[] = [];
  const tokens: string[] = [];
  const client = new CountsClient({
    baseUrl: server.url, userId: user.id, transports,
    getToken: async () => {
      tokens.push(user.token(options.tokenSeconds));
      return tokens[tokens.length - 1]!;
    },
    WebSocket, pollIntervalMs: 1_000, heartbeatTimeoutMs: 6_000,
    trace: (event) => trace.push({ ...event, at: Date.now() }),
    ...options,
  });
  client.subscribe(() => {
    const { etag } = client.getSnapshot();
    if (etag && etag !== etags[etags.length - 1]) etags.push(etag);
  });
  return { client, user, trace, etags, tokens };
}

describe("every transport delivers a write", () => {
  const cases: [string, TransportName[], Partial<CountsClientOptions>, number][] = [
    ["SSE over fetch", ["sse"], {}, 1_000],
    ["WebSocket with a ticket", ["ws"], { wsAuth: "ticket" }, 1_000],
    ["WebSocket with the Authorization header", ["ws"], { wsAuth: "header" }, 1_000],
    ["long-poll", ["long-poll"], {}, 1_000],
    // Polling is as quick as its interval allows: X-Poll-Interval 1 s, +20 % jitter at most.
    ["polling", ["poll"], {}, 1_500],
  ];
  for (const [name, transports, options, withinMs] of cases) {
    it(`${name}: within ${withinMs} ms of the write's 201`, async () => {
      const { client, user } = await watched(transports, options);
      client.start();
      await waitFor(() => client.getSnapshot().counts !== null && client.getSnapshot().status !== "connecting", "counts");
      expect(client.getSnapshot().transport).toBe(transports[0]);
      await new Promise((resolve) => setTimeout(resolve, 300)); // let a long-poll be held
      const written = await user.receiveMessage();
      await waitFor(() => client.getSnapshot().counts?.total === 1, "the write", 5_000);
      expect(Date.now() - written).toBeLessThan(withinMs);
      expect(client.getSnapshot().transport).toBe(transports[0]);
      client.stop();
    });
  }
});

describe("tokens", () => {
  it("renews a stream before its short-lived token expires, each time with a new token", async () => {
    const { client, user, trace, tokens } = await watched(["sse"], { tokenSeconds: 5 });
    client.start();
    await waitFor(() => client.getSnapshot().status === "live", "live");
    await waitFor(() => trace.filter((e) => e.type === "connect" && e.transport === "sse").length >= 4, "three renewals", 20_000);
    expect(client.getSnapshot().status).toBe("live");
    await user.receiveMessage();
    await waitFor(() => client.getSnapshot().counts?.total === 1, "the write");
    expect(new Set(tokens).size).toBe(tokens.length);
    expect(tokens.length).toBe(trace.filter((e) => e.type === "connect").length); // one per connection
    const outcomes = trace.filter((e) => e.type === "outcome").map((e) => (e as { outcome: { kind: string } }).outcome.kind);
    expect(outcomes).not.toContain("unauthorized");
    client.stop();
  });

  it("a WebSocket closed with 1008 at its token's expiry reconnects with a new token", async () => {
    // Renewal off by a clock that runs late: the server's close is what the client sees.
    const { client, trace } = await watched(["ws"], { tokenSeconds: 3, wsAuth: "header", timers: lateRenewal() });
    client.start();
    await waitFor(() => trace.some((e) => e.type === "outcome" && e.outcome.kind === "token-expired"), "a 1008", 15_000);
    await waitFor(() => client.getSnapshot().status === "live", "live again");
    client.stop();
  });
});

/** Real timers whose renewal timers (the only ones longer than 1.5 s here) never fire. */
function lateRenewal() {
  return {
    setTimeout: (callback: () => void, ms: number) => setTimeout(callback, ms > 1_500 && ms < 5_000 ? 3_600_000 : ms),
    clearTimeout: (id: unknown) => clearTimeout(id as NodeJS.Timeout),
    now: () => Date.now(),
  };
}

describe("a SIGTERM'd server", () => {
  for (const transport of ["sse", "ws"] as const) {
    it(`${transport}: reconnects after the server's hint, with no duplicate event`, async () => {
      const { client, user, trace, etags } = await watched([transport], { wsAuth: "header" });
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
});
