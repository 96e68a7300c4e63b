// Against the real service (gunicorn, Postgres, Redis): each transport delivers a write, and
// streams are renewed before their tokens expire.
import { describe, expect, it } from "vitest";
import type { CountsClientOptions, TransportName } from "../../src/index.js";
import { type Service, sharedService, waitFor } from "../support/service.js";
import { watched } from "../support/watched.js";

// X-Poll-Interval 1 s there, so that the polling transport can be shown delivering too.
const server: Service = sharedService();

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
      const { client, user } = await watched(server, transports, options);
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
    const { client, user, trace, tokens } = await watched(server, ["sse"], { tokenSeconds: 3 });
    client.start();
    await waitFor(() => client.getSnapshot().status === "live", "live");
    await waitFor(() => trace.filter((e) => e.type === "connect" && e.transport === "sse").length >= 3, "two renewals", 20_000);
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
    const { client, trace } = await watched(server, ["ws"], { tokenSeconds: 3, wsAuth: "header", timers: lateRenewal() });
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
