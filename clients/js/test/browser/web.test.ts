// The web build in Debian's Chromium, loaded from another origin than the service's: live over
// SSE, a real 304 on the next visit, offline and online, hidden and visible, page freeze and
// resume, and the service worker's badge.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { BrowserContext, CDPSession, Page } from "playwright-core";
import { ChatUser, type Service, sharedService, waitFor } from "../support/service.js";
import { PACKAGE, PageServer, launchChromium } from "./support.js";

const PAGE = `<!doctype html><title>counts</title><script type="module">
import { CountsClient, browserLifecycle } from "/dist/esm/index.js";
const config = JSON.parse(decodeURIComponent(location.hash.slice(1)));
window.log = [];
const realFetch = window.fetch.bind(window);
async function fetchLogged(url, init = {}) {   // what the client sends, and what it gets back
  const entry = { url, inm: init.headers?.["If-None-Match"] ?? null, status: null };
  window.log.push(entry);
  try { const response = await realFetch(url, init); entry.status = response.status; return response; }
  catch (error) { entry.status = "error"; throw error; }
}
let hidden = false;  // page visibility, switched by the test (headless pages are always visible)
Object.defineProperty(document, "visibilityState", { configurable: true, get: () => hidden ? "hidden" : "visible" });
window.setHidden = (value) => { hidden = value; document.dispatchEvent(new Event("visibilitychange")); };
const client = new CountsClient({
  baseUrl: config.base, userId: config.user, getToken: async () => config.token, storage: localStorage,
  fetch: fetchLogged, lifecycle: browserLifecycle({ document, window, navigator }, 500),
});
window.requestsWhenShown = null;
client.subscribe(() => {
  if (window.requestsWhenShown === null && client.getSnapshot().etag) window.requestsWhenShown = window.log.length;
});
window.client = client;
client.start();
</script>`;

const SW_PAGE = `<!doctype html><title>sw</title><script type="module">
window.ready = navigator.serviceWorker.register("/sw.js", { type: "module", scope: "/" }).then(() => navigator.serviceWorker.ready).then(() => true);
</script>`;

// The module under test, installed as an app would, with the badge recorded (a stub: headless
// Chromium has no app icon) and a way to deliver a push (a page cannot send a real one).
const SW = `import { installUnreadPush } from "/dist/esm/service-worker.js";
self.badges = [];
self.navigator.setAppBadge = async (count) => { self.badges.push(count); };
self.navigator.clearAppBadge = async () => { self.badges.push(0); };
const listeners = {};
self.posts = [];
installUnreadPush({ registration: self.registration, navigator: self.navigator, clients: self.clients,
  fetch: async (url, init) => { self.posts.push({ url, headers: init.headers, body: JSON.parse(init.body) }); return { status: 200 }; },
  addEventListener: (type, listener) => { listeners[type] = listener; self.addEventListener(type, listener); } },
  { url: "/inbox", baseUrl: "https://counts.example" });
self.deliverPush = (payload) => { let done; listeners.push({ data: { json: () => payload }, waitUntil: (p) => { done = p; } }); return done; };
// A page cannot make the browser replace a subscription: the event as Chromium 138+ fires it.
const subscription = (endpoint, auth) => ({ endpoint, toJSON: () => ({ endpoint, expirationTime: null, keys: { p256dh: "p", auth } }) });
self.changeSubscription = () => { let done; listeners.pushsubscriptionchange({ oldSubscription: subscription("https://push.example/old", "old-auth"),
  newSubscription: subscription("https://push.example/new", "new-auth"), waitUntil: (p) => { done = p; } }); return done; };
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));`;

let counts: Service;
let pages: PageServer;
let browser: Awaited<ReturnType<typeof launchChromium>>;
let context: BrowserContext;
let page: Page;
let user: ChatUser;
let url = "";

interface Logged { url: string; inm: string | null; status: number | string | null }

const snapshot = () => page.evaluate(() => (window as unknown as { client: { getSnapshot(): { status: string; transport: string; etag: string; counts: { total: number } | null } } }).client.getSnapshot());
const log = () => page.evaluate(() => (window as unknown as { log: Logged[] }).log);

async function until(condition: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
const total = async () => (await snapshot()).counts?.total;

beforeAll(async () => {
  // On a port the service lists in COUNTS_CORS_ORIGINS: another origin, allowed by name.
  pages = await new PageServer({ "/": PAGE, "/sw-page.html": SW_PAGE, "/sw.js": SW }, { "/dist/": `${PACKAGE}/dist/` }).start(inject("pagePorts")[0]);
  counts = sharedService();
  browser = await launchChromium();
  context = browser.context;
  user = await ChatUser.create(counts);
  url = `${pages.origin}/#${encodeURIComponent(JSON.stringify({ base: counts.url, user: user.id, token: user.token() }))}`;
  page = await context.newPage();
});

afterAll(async () => {
  await browser?.close();
  await pages?.stop();
});

describe("the web build in Chromium, on another origin", () => {
  it("goes live over SSE and delivers a write", async () => {
    await page.goto(url);
    await until(async () => (await snapshot()).status === "live", "live");
    expect((await snapshot()).transport).toBe("sse");
    await user.receiveMessage();
    await until(async () => (await total()) === 1, "the write");
  });

  it("on the next visit shows the saved counts at once, then revalidates: a real 304", async () => {
    const etag = (await snapshot()).etag;
    await page.reload();
    await until(async () => (await snapshot()).status === "live", "live");
    expect(await page.evaluate(() => (window as unknown as { requestsWhenShown: number }).requestsWhenShown)).toBe(0);
    const first = (await log())[0]!;
    expect(first).toMatchObject({ inm: etag, status: 304 });
    expect(first.url).toMatch(/\/unread-counts$/);
    expect(await total()).toBe(1);
  });

  it("offline stops, online comes back and catches up", async () => {
    await context.setOffline(true);
    await until(async () => (await snapshot()).status === "offline", "offline");
    await user.receiveMessage();
    await context.setOffline(false);
    await until(async () => (await total()) === 2, "the write made while offline");
    await until(async () => (await snapshot()).status === "live", "live again");
  });

  it("hidden sends nothing; visible sends one conditional GET first, then reconnects", async () => {
    const seen: string[] = [];
    const onRequest = (request: { url(): string }) => { if (request.url().startsWith(counts.url)) seen.push(request.url()); };
    await page.evaluate(() => (window as unknown as { setHidden(v: boolean): void }).setHidden(true));
    await until(async () => (await snapshot()).status === "paused", "paused after the grace period");
    page.on("request", onRequest);
    const before = (await log()).length;
    await user.receiveMessage();
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // a window in which nothing may leave
    expect(seen).toEqual([]);
    expect((await log()).length).toBe(before);
    await page.evaluate(() => (window as unknown as { setHidden(v: boolean): void }).setHidden(false));
    await until(async () => (await total()) === 3 && (await snapshot()).status === "live", "fresh and live");
    page.off("request", onRequest);
    const after = (await log()).slice(before);
    expect(after[0]!.url).toMatch(/\/unread-counts$/);
    expect(after[0]!.inm).not.toBeNull();
    expect(after[0]!.status).toBe(200);
    expect(after[1]!.url).toMatch(/\/unread-counts\/stream$/);
  });

  it("a frozen page resumes fresh", async () => {
    const cdp: CDPSession = await context.newCDPSession(page);
    await cdp.send("Page.setWebLifecycleState", { state: "frozen" });
    await user.receiveMessage();
    await new Promise((resolve) => setTimeout(resolve, 1_000)); // frozen a while
    await cdp.send("Page.setWebLifecycleState", { state: "active" });
    await until(async () => (await total()) === 4, "the write made while frozen");
    expect((await snapshot()).status).toBe("live");
    expect(await user.truth()).toBe(4);
    await cdp.detach();
  });
});

describe("the service worker module", () => {
  it("sets the app badge and shows the notification every push needs", async () => {
    await context.grantPermissions(["notifications"], { origin: pages.origin });
    const swPage = await context.newPage();
    await swPage.goto(`${pages.origin}/sw-page.html`);
    await swPage.evaluate(() => (window as unknown as { ready: Promise<boolean> }).ready);
    await waitFor(() => context.serviceWorkers().length > 0, "the service worker");
    const worker = context.serviceWorkers()[0]!;
    const result = await worker.evaluate(async () => {
      const sw = self as unknown as { deliverPush(p: unknown): Promise<void>; badges: number[]; registration: { getNotifications(): Promise<{ title: string; body: string }[]> } };
      await sw.deliverPush({ type: "unread", user_id: "u", total: 3, unread_conversations: 1, conversation_id: null, alert: true });
      await sw.deliverPush({ type: "unread", user_id: "u", total: 0, unread_conversations: 0, conversation_id: null, alert: false });
      const shown = await sw.registration.getNotifications();
      return { badges: sw.badges, notifications: shown.map((n) => `${n.title}: ${n.body}`) };
    });
    expect(result.badges).toEqual([3, 0]);
    // The badge-only push replaced the alert's notification quietly: Chromium requires one per push.
    expect(result.notifications).toEqual(["Unread messages: No unread messages"]);
    const resubscribed = await worker.evaluate(async () => {
      const sw = self as unknown as { changeSubscription(): Promise<boolean>; posts: unknown[] };
      return { ok: await sw.changeSubscription(), posts: sw.posts };
    });
    expect(resubscribed).toEqual({ ok: true, posts: [{
      url: "https://counts.example/v1/push/webpush/resubscribe", headers: { "Content-Type": "application/json" },
      body: { old: { endpoint: "https://push.example/old", auth: "old-auth" },
              subscription: { endpoint: "https://push.example/new", expirationTime: null, keys: { p256dh: "p", auth: "new-auth" } } } }] });
    await swPage.close();
  });
});
