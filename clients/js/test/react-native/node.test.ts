// React Native without a phone: the built `react-native` entry run in Node with the DOM's
// globals removed, a WebSocket that takes headers (React Native's constructor shape, played by
// the ws package), a fake AppState and NetInfo, and a fetch that buffers whole bodies as React
// Native's does (so SSE must never be tried), against the real service.
import { describe, expect, it } from "vitest";
import WebSocket from "ws";
import { ChatUser, sharedService, waitFor } from "../support/service.js";

for (const name of ["window", "document", "navigator", "EventSource", "WebSocket", "localStorage"]) {
  delete (globalThis as Record<string, unknown>)[name];
}

const server = sharedService();

/** React Native's WebSocket: `new WebSocket(url, protocols, {headers})`. */
class NativeWebSocket extends WebSocket {
  static opened: { url: string; headers: Record<string, string> }[] = [];
  constructor(url: string, protocols?: string | string[], options?: { headers?: Record<string, string> }) {
    super(url, protocols, { headers: options?.headers });
    NativeWebSocket.opened.push({ url, headers: options?.headers ?? {} });
  }
}

/** React Native's fetch (whatwg-fetch over XMLHttpRequest): the answer only once the whole body
 * arrived, and no `body` stream. */
const requested: { url: string; at: number }[] = [];
async function bufferingFetch(url: string, init?: RequestInit) {
  requested.push({ url, at: Date.now() });
  const response = await fetch(url, init);
  const text = await response.text();
  return { status: response.status, headers: response.headers, json: async () => JSON.parse(text) as unknown };
}

class FakeAppState {
  currentState = "active";
  private listeners: ((state: string) => void)[] = [];
  addEventListener(_: "change", listener: (state: string) => void) {
    this.listeners.push(listener);
    return { remove: () => { this.listeners = this.listeners.filter((l) => l !== listener); } };
  }
  set(state: string): void {
    this.currentState = state;
    for (const listener of this.listeners) listener(state);
  }
}

class FakeNetInfo {
  private listeners: ((state: { isConnected: boolean | null }) => void)[] = [];
  addEventListener(listener: (state: { isConnected: boolean | null }) => void) {
    this.listeners.push(listener);
    listener({ isConnected: true });
    return () => { this.listeners = this.listeners.filter((l) => l !== listener); };
  }
  set(isConnected: boolean): void {
    for (const listener of this.listeners) listener({ isConnected });
  }
}

describe("the react-native entry in Node, without the DOM", () => {
  it("runs WebSocket with the header, skips SSE, closes in the background and revalidates on active", async () => {
    expect(typeof (globalThis as Record<string, unknown>).document).toBe("undefined");
    const { createReactNativeClient } = await import("@counts/client/react-native");
    const user = await ChatUser.create(server);
    const AppState = new FakeAppState();
    const NetInfo = new FakeNetInfo();
    const client = createReactNativeClient({
      baseUrl: server.url, userId: user.id, getToken: async () => user.token(),
      transports: ["sse", "ws", "long-poll", "poll"], // asked for, but this fetch cannot stream
      fetch: bufferingFetch, WebSocket: NativeWebSocket, AppState, NetInfo,
    });
    client.start();
    await waitFor(() => client.getSnapshot().status === "live", "live");
    expect(client.getSnapshot().transport).toBe("ws");
    expect(NativeWebSocket.opened[0]!.headers.Authorization).toMatch(/^Bearer ey/); // the header, as React Native sends it
    expect(NativeWebSocket.opened[0]!.url).not.toContain("ticket=");
    await user.receiveMessage();
    await waitFor(() => client.getSnapshot().counts?.total === 1, "the write over the socket");

    AppState.set("background");
    expect(client.getSnapshot().status).toBe("paused");
    const sent = requested.length;
    const sockets = NativeWebSocket.opened.length;
    await user.receiveMessage(); // push's job now, not ours
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // a window in which nothing may leave
    expect(requested.length).toBe(sent);
    expect(NativeWebSocket.opened.length).toBe(sockets);
    expect(client.getSnapshot().counts?.total).toBe(1);

    AppState.set("active");
    await waitFor(() => client.getSnapshot().counts?.total === 2, "the revalidation");
    expect(requested[sent]!.url).toMatch(/\/unread-counts$/); // the first thing sent: a conditional GET
    await waitFor(() => client.getSnapshot().status === "live" && NativeWebSocket.opened.length === sockets + 1, "the socket again");

    NetInfo.set(false);
    expect(client.getSnapshot().status).toBe("offline");
    NetInfo.set(true);
    await waitFor(() => client.getSnapshot().status === "live", "live after the network came back", 10_000);
    expect(requested.some((r) => r.url.endsWith("/stream"))).toBe(false); // SSE never tried
    client.stop();
  });

  it("falls back to long-poll when the WebSocket cannot open", async () => {
    const { createReactNativeClient } = await import("@counts/client/react-native");
    const user = await ChatUser.create(server);
    class Refused extends NativeWebSocket {
      constructor(url: string, protocols?: string | string[], options?: { headers?: Record<string, string> }) {
        super(url.replace(/\/ws(\?|$)/, "/nowhere$1"), protocols, options);
      }
    }
    const client = createReactNativeClient({
      baseUrl: server.url, userId: user.id, getToken: async () => user.token(), fetch: bufferingFetch,
      WebSocket: Refused, AppState: new FakeAppState(),
    });
    client.start();
    await waitFor(() => client.getSnapshot().transport === "long-poll" && client.getSnapshot().status === "live", "long-poll", 15_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await user.receiveMessage();
    await waitFor(() => client.getSnapshot().counts?.total === 1, "the write by long-poll", 5_000);
    client.stop();
  });
});
