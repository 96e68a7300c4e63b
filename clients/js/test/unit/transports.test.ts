// Which transport, in which order, and when one is demoted (issue 18: "Transport order").
import { afterEach, describe, expect, it, vi } from "vitest";
import { type ReactNativeClientOptions, createReactNativeClient } from "../../src/react-native.js";
import { harness } from "../support/clients.js";
import { FakeServer, fakeToken, until } from "../support/fake-server.js";

afterEach(() => {
  vi.useRealTimers();
});

describe("web transport order", () => {
  it("opens SSE over fetch with the Authorization header, after one conditional GET", async () => {
    const { server, client } = harness();
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    expect(server.requests.map((r) => r.path.split("/").pop())).toEqual(["unread-counts", "stream"]);
    const stream = server.requestsTo("/stream")[0]!;
    expect(stream.headers.Authorization).toMatch(/^Bearer ey/);
    expect(stream.headers["Last-Event-ID"]).toBe(server.etag); // resumes from the revalidated ETag
    expect(client.getSnapshot()).toMatchObject({ transport: "sse", etag: server.etag });
    server.bump();
    await until(() => client.getSnapshot().counts?.total === 1, "the bump");
    client.stop();
  });

  it("names its push device on SSE and WebSocket streams, so only its own alerts are skipped", async () => {
    const device = "4b0e9c1e-5f3a-4d2b-9c7e-0123456789ab";
    const sse = harness({ deviceId: device });
    sse.client.start();
    await until(() => sse.client.getSnapshot().status === "live", "live over SSE");
    expect(new URL(sse.server.requestsTo("/stream")[0]!.url).searchParams.get("device_id")).toBe(device);
    expect(sse.server.requestsTo("/unread-counts")[0]!.url).not.toContain("device_id"); // polls are not presence
    sse.client.stop();
    const ws = harness({ transports: ["ws"], deviceId: device });
    ws.client.start();
    await until(() => ws.server.sockets.length === 1, "a socket");
    expect(new URL(ws.server.lastSocket.url.replace(/^ws/, "http")).searchParams.get("device_id")).toBe(device);
    ws.client.stop();
  });

  it("falls back to long-poll when SSE fails to open twice within seconds, then to polling when long-poll is refused", async () => {
    const { server, client } = harness();
    server.answer("/stream", { status: 502 }, { status: 502 });
    server.longPollRefused = true;
    client.start();
    await until(() => client.getSnapshot().status === "polling", "polling");
    const kinds = server.requests.map((r) => r.path.endsWith("/stream") ? "sse" : r.headers.Prefer ? "long-poll" : "get");
    expect(kinds).toEqual(["get", "sse", "sse", "long-poll"]);
    client.stop();
  });

  it("uses the WebSocket with a stream ticket when asked", async () => {
    const { server, client } = harness({ transports: ["ws"] });
    client.start();
    await until(() => server.sockets.length === 1, "a socket");
    expect(server.lastSocket.url).toMatch(/^ws:\/\/counts\.test\/v1\/users\/.+\/unread-counts\/ws\?etag=.+&ticket=ticket-/);
    expect(server.lastSocket.headers).toEqual({}); // browsers cannot send headers
    server.lastSocket.accept();
    await until(() => client.getSnapshot().status === "live", "live");
    expect(client.getSnapshot().transport).toBe("ws");
    client.stop();
  });

  it("re-tries a demoted transport on the next foreground", async () => {
    const { server, client, lifecycle } = harness();
    server.answer("/stream", { status: 502 }, { status: 502 });
    client.start();
    await until(() => client.getSnapshot().transport === "long-poll", "long-poll");
    lifecycle.emit("background");
    lifecycle.emit("foreground");
    await until(() => client.getSnapshot().transport === "sse", "SSE again");
    expect(server.requestsTo("/stream")).toHaveLength(3);
    client.stop();
  });

  it("does not demote a transport that opened once: it just reconnects", async () => {
    const { server, client } = harness();
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    server.answer("/stream", { status: 502 }, { status: 502 }, { status: 502 });
    server.lastStream.end();
    await until(() => server.requestsTo("/stream").length === 5, "four reconnects");
    expect(server.requests.filter((r) => r.headers.Prefer)).toHaveLength(0); // never long-poll
    await until(() => client.getSnapshot().status === "live", "live again");
    client.stop();
  });
});

describe("React Native transport order", () => {
  const appState = { currentState: "active", addEventListener: () => ({ remove: () => undefined }) };

  function nativeClient(server: FakeServer, options: Partial<ReactNativeClientOptions>) {
    return createReactNativeClient({
      baseUrl: "http://counts.test", userId: server.userId, getToken: async () => fakeToken(3600),
      fetch: server.fetch, WebSocket: server.WebSocket, random: () => 0.5, AppState: appState, ...options,
    });
  }

  it("opens the WebSocket with the Authorization header, no ticket", async () => {
    vi.useFakeTimers();
    const server = new FakeServer();
    const client = nativeClient(server, { fetchStreams: false });
    client.start();
    await until(() => server.sockets.length === 1, "a socket");
    expect(server.lastSocket.headers.Authorization).toMatch(/^Bearer /);
    expect(server.requestsTo("/stream-tickets")).toHaveLength(0);
    client.stop();
  });

  it("skips SSE where fetch does not stream, and falls back to long-poll then polling", async () => {
    vi.useFakeTimers();
    const server = new FakeServer();
    const client = nativeClient(server, { WebSocket: undefined, transports: ["sse", "ws", "long-poll"] });
    client.start();
    await until(() => client.getSnapshot().transport === "long-poll", "long-poll");
    expect(server.requestsTo("/stream")).toHaveLength(0);
    client.stop();
  });

  it("tries SSE after the WebSocket when fetch streams (Expo)", async () => {
    vi.useFakeTimers();
    const server = new FakeServer();
    const client = nativeClient(server, { fetchStreams: true });
    client.start();
    await until(() => server.sockets.length === 1, "a socket");
    server.lastSocket.serverClose(1006);
    await until(() => server.sockets.length === 2, "a second socket");
    server.lastSocket.serverClose(1006);
    await until(() => client.getSnapshot().transport === "sse", "SSE");
    client.stop();
  });

  it("an SSE response without a streaming body is unsupported: demoted for good", async () => {
    const { server, client } = harness({
      transports: ["sse", "long-poll"],
      wrapFetch: (streaming) => async (url, init) => {
        const response = await streaming(url, init);
        if (!url.endsWith("/stream")) return response;
        return { status: response.status, headers: response.headers, body: null, json: () => response.json() };
      },
    });
    client.start();
    await until(() => client.getSnapshot().transport === "long-poll", "long-poll");
    expect(server.requestsTo("/stream")).toHaveLength(1);
    client.stop();
  });
});
