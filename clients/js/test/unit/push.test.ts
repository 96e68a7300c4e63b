// Devices, Web Push, the service worker, Expo (issue 18: "Push").
import { afterEach, describe, expect, it, vi } from "vitest";
import { startExpoPush, type ExpoNotificationsLike } from "../../src/expo.js";
import { installUnreadPush, resubscribe, showUnreadPush, type ServiceWorkerScopeLike } from "../../src/service-worker.js";
import { base64UrlToBytes, subscribeWebPush } from "../../src/web-push.js";
import { harness } from "../support/clients.js";
import { until } from "../support/fake-server.js";

afterEach(() => {
  vi.useRealTimers();
});

describe("registerDevice / unregisterDevice", () => {
  it("posts the registration with a token, retrying once with a refreshed one after a 401", async () => {
    const { server, client, tokens } = harness();
    server.answer("/devices", { status: 401 });
    const created = await client.registerDevice({ platform: "fcm", token: "fcm-token" });
    expect(created.device_id).toMatch(/d001$/);
    const posts = server.requestsTo("/devices");
    expect(posts).toHaveLength(2);
    expect(JSON.parse(posts[1]!.body!)).toEqual({ platform: "fcm", token: "fcm-token" });
    expect(posts[1]!.headers["Content-Type"]).toBe("application/json");
    expect(tokens.map((t) => t.forceRefresh)).toEqual([false, true]);
    await client.unregisterDevice("00000000-0000-4000-8000-00000000d001");
    expect(server.requests[2]).toMatchObject({ method: "DELETE", path: `/v1/users/${server.userId}/devices/00000000-0000-4000-8000-00000000d001` });
  });

  it("throws the problem's detail on a refusal", async () => {
    const { server, client } = harness();
    server.answer("/devices", { status: 422, body: { detail: "platform expo is not configured" } });
    await expect(client.registerDevice({ platform: "expo", token: "ExponentPushToken[x]" })).rejects.toMatchObject({
      status: 422, message: "HTTP 422: platform expo is not configured",
    });
  });
});

describe("web-push", () => {
  it("subscribes with the service's key and registers the subscription", async () => {
    const { server, client } = harness();
    const subscription = { toJSON: () => ({ endpoint: "https://push.example/1", expirationTime: null, keys: { p256dh: "k", auth: "a" } }), unsubscribe: async () => true };
    const subscribe = vi.fn(async () => subscription);
    const device = await subscribeWebPush(client, { pushManager: { getSubscription: async () => null, subscribe } });
    expect(server.requestsTo("/push/webpush-key")).toHaveLength(1);
    expect(subscribe).toHaveBeenCalledWith({ userVisibleOnly: true, applicationServerKey: base64UrlToBytes("BAEC") });
    expect(Array.from(base64UrlToBytes("BAEC"))).toEqual([4, 1, 2]);
    expect(JSON.parse(server.requestsTo("/devices")[0]!.body!)).toEqual({ platform: "webpush", subscription: subscription.toJSON() });
    expect(device.deviceId).toMatch(/d001$/);
  });

  it("replaces a subscription made with another key", async () => {
    const { client } = harness();
    const old = { toJSON: () => ({}), unsubscribe: vi.fn(async () => true), options: { applicationServerKey: new Uint8Array([9, 9]).buffer } };
    const fresh = { toJSON: () => ({ endpoint: "e", keys: {} }), unsubscribe: async () => true };
    const subscribe = vi.fn(async () => fresh);
    await subscribeWebPush(client, { pushManager: { getSubscription: async () => old, subscribe } });
    expect(old.unsubscribe).toHaveBeenCalled();
    expect(subscribe).toHaveBeenCalledOnce();
  });
});

describe("service worker", () => {
  function scope() {
    const calls: string[] = [];
    const listeners = new Map<string, (event: never) => void>();
    const sw: ServiceWorkerScopeLike = {
      registration: { showNotification: async (title, options) => void calls.push(`notify ${title}: ${options?.body} silent=${options?.silent}`) },
      navigator: { setAppBadge: async (n) => void calls.push(`badge ${n}`), clearAppBadge: async () => void calls.push("clear") },
      clients: { openWindow: async (url) => calls.push(`open ${url}`) },
      addEventListener: (type, listener) => listeners.set(type, listener),
    };
    return { sw, calls, listeners };
  }
  const push = (total: number, alert: boolean) => ({ type: "unread", user_id: "u", total, unread_conversations: 1, conversation_id: null, alert });

  it("sets the badge on every push and shows a notification for alerts", async () => {
    const { sw, calls } = scope();
    await showUnreadPush(sw, push(3, true));
    await showUnreadPush(sw, push(0, false));
    await showUnreadPush(sw, { something: "else" });
    expect(calls).toEqual(["badge 3", "notify New message: 3 unread messages silent=false", "clear",
      "notify Unread messages: No unread messages silent=true"]);
  });

  it("badges the push's badge, not its total, when the service sends one", async () => {
    const { sw, calls } = scope();
    await showUnreadPush(sw, { ...push(5, false), badge: 2 });
    await showUnreadPush(sw, { ...push(4, false), badge: 0 });
    expect(calls.filter((call) => !call.startsWith("notify"))).toEqual(["badge 2", "clear"]);
  });

  it("shows a quiet notification for badge-only pushes, since browsers require one per push", async () => {
    const { sw, calls } = scope();
    await showUnreadPush(sw, push(1, false), { title: () => "Chat" });
    await showUnreadPush(sw, push(2, false), { notifyEveryPush: false });
    expect(calls).toEqual(["badge 1", "notify Chat: 1 unread message silent=true", "badge 2"]);
  });

  it("re-registers a replaced subscription with the old one's endpoint and auth secret", async () => {
    const { sw, listeners } = scope();
    const posts: { url: string; body: unknown; headers: Record<string, string> }[] = [];
    const withFetch: ServiceWorkerScopeLike = { ...sw, fetch: async (url, init) => { posts.push({ url, body: JSON.parse(init.body), headers: init.headers }); return { status: 200 }; } };
    installUnreadPush(withFetch, { baseUrl: "https://counts.example/" });
    const sub = (endpoint: string, auth: string) => ({ endpoint, toJSON: () => ({ endpoint, keys: { p256dh: "p", auth } }) });
    const waited: Promise<unknown>[] = [];
    (listeners.get("pushsubscriptionchange") as (e: unknown) => void)({
      oldSubscription: sub("https://push.example/old", "old-auth"), newSubscription: sub("https://push.example/new", "new-auth"),
      waitUntil: (p: Promise<unknown>) => waited.push(p),
    });
    expect(await Promise.all(waited)).toEqual([true]);
    expect(posts).toEqual([{ url: "https://counts.example/v1/push/webpush/resubscribe", headers: { "Content-Type": "application/json" },
      body: { old: { endpoint: "https://push.example/old", auth: "old-auth" }, subscription: { endpoint: "https://push.example/new", keys: { p256dh: "p", auth: "new-auth" } } } }]);
    expect(posts[0]!.headers).not.toHaveProperty("Authorization"); // no user token in a service worker
  });

  it("cannot prove anything without the old subscription: the page re-registers instead", async () => {
    const { sw } = scope();
    const fetch = vi.fn(async () => ({ status: 200 }));
    expect(await resubscribe({ ...sw, fetch }, "https://counts.example", { oldSubscription: null, waitUntil: () => undefined })).toBe(false);
    expect(fetch).not.toHaveBeenCalled();
  });

  it("installs push and notificationclick handlers", async () => {
    const { sw, calls, listeners } = scope();
    installUnreadPush(sw, { url: "/inbox" });
    const waited: Promise<unknown>[] = [];
    (listeners.get("push") as (e: unknown) => void)({ data: { json: () => push(2, true) }, waitUntil: (p: Promise<unknown>) => waited.push(p) });
    (listeners.get("notificationclick") as (e: unknown) => void)({ notification: { close: () => calls.push("close"), data: { url: "/inbox" } }, waitUntil: (p: Promise<unknown>) => waited.push(p) });
    await Promise.all(waited);
    expect(calls).toEqual(["badge 2", "close", "open /inbox", "notify New message: 2 unread messages silent=false"].sort((a, b) => calls.indexOf(a) - calls.indexOf(b)));
    expect(calls).toContain("open /inbox");
  });
});

describe("expo", () => {
  function notifications(granted: boolean) {
    const calls: string[] = [];
    let tokenListener: ((token: unknown) => void) | undefined;
    let n = 0;
    const api: ExpoNotificationsLike = {
      AndroidImportance: { DEFAULT: 3 },
      setNotificationChannelAsync: async (id, channel) => void calls.push(`channel ${id} ${channel.importance}`),
      getPermissionsAsync: async () => ({ granted: false, canAskAgain: true }),
      requestPermissionsAsync: async () => { calls.push("ask"); return { granted }; },
      getExpoPushTokenAsync: async (options) => { calls.push(`token ${options?.projectId}`); return { data: `ExponentPushToken[${++n}]` }; },
      addPushTokenListener: (listener) => { tokenListener = listener; return { remove: () => { tokenListener = undefined; } }; },
      setBadgeCountAsync: async (count) => { calls.push(`badge ${count}`); return true; },
    };
    return { api, calls, changeToken: () => tokenListener?.({ type: "fcm", data: "new" }), listening: () => tokenListener !== undefined };
  }

  it("creates the Android channel, asks permission, registers the Expo token, and re-registers on change", async () => {
    const { server, client } = harness();
    const expo = notifications(true);
    const push = await startExpoPush({ client, Notifications: expo.api, platform: "android", projectId: "p1", channelId: "counts" });
    expect(expo.calls.slice(0, 3)).toEqual(["channel counts 3", "ask", "token p1"]);
    expect(JSON.parse(server.requestsTo("/devices")[0]!.body!)).toEqual({ platform: "expo", token: "ExponentPushToken[1]" });
    expo.changeToken();
    await until(() => server.requestsTo("/devices").length === 2, "a second registration");
    expect(JSON.parse(server.requestsTo("/devices")[1]!.body!)).toEqual({ platform: "expo", token: "ExponentPushToken[2]" });
    expect(push.token).toBe("ExponentPushToken[2]");
    push.stop();
    expect(expo.listening()).toBe(false);
  });

  it("sets the badge from foreground snapshots, once per new total", async () => {
    const { server, client } = harness();
    const expo = notifications(true);
    const push = await startExpoPush({ client, Notifications: expo.api, platform: "ios" });
    expect(expo.calls).not.toContain("channel counts 3"); // iOS: no channel
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    server.bump();
    server.bump();
    await until(() => client.getSnapshot().counts?.total === 2, "two bumps");
    expect(expo.calls.filter((c) => c.startsWith("badge"))).toEqual(["badge 0", "badge 1", "badge 2"]);
    push.stop();
    client.stop();
  });

  it("sets the badge from the body's badge, not its total", async () => {
    const { server, client } = harness();
    const expo = notifications(true);
    const push = await startExpoPush({ client, Notifications: expo.api, platform: "ios" });
    server.badge = 7;
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    server.bump();
    await until(() => client.getSnapshot().counts?.total === 1, "a bump");
    expect(expo.calls.filter((c) => c.startsWith("badge"))).toEqual(["badge 7"]);
    push.stop();
    client.stop();
  });

  it("without permission registers nothing", async () => {
    const { server, client } = harness();
    const push = await startExpoPush({ client, Notifications: notifications(false).api, platform: "ios" });
    expect(push.token).toBeNull();
    expect(server.requestsTo("/devices")).toHaveLength(0);
  });

  it("a refused registration (a server without expo yet) is reported, not thrown", async () => {
    const { server, client } = harness();
    server.answer("/devices", { status: 422, body: { detail: "unknown platform" } });
    const errors: unknown[] = [];
    await startExpoPush({ client, Notifications: notifications(true).api, platform: "ios", onError: (e) => errors.push(e) });
    expect(errors).toHaveLength(1);
  });
});
