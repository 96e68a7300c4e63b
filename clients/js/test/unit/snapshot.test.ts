// What listeners hear (invariant 16: each new ETag once, never twice, never an older one) and
// what is kept across launches.
import { afterEach, describe, expect, it, vi } from "vitest";
import { CountsStore } from "../../src/store.js";
import { harness } from "../support/clients.js";
import { json, until } from "../support/fake-server.js";

afterEach(() => {
  vi.useRealTimers();
});

const threads = { unread: 0, unread_threads: 0, mentions: 0 };
const counts = (total: number) => ({ user_id: "u", total, unread_conversations: total ? 1 : 0, mentions: 0, badge: total, threads, conversations: [] });

describe("the store", () => {
  it("snapshots are frozen and keep their identity until the ETag or status changes", () => {
    const store = new CountsStore();
    const first = store.getSnapshot();
    expect(Object.isFrozen(first)).toBe(true);
    expect(store.getSnapshot()).toBe(first);
    let calls = 0;
    store.subscribe(() => calls++);
    store.setStatus("idle", null);
    expect(store.getSnapshot()).toBe(first);
    store.adopt('"a"', counts(1), 1);
    store.setStatus("live", "sse");
    expect(calls).toBe(2);
    expect(store.getSnapshot()).toMatchObject({ etag: '"a"', status: "live", transport: "sse", updatedAt: 1 });
  });

  it("never adopts an ETag it held before: no duplicate, no going back", () => {
    const store = new CountsStore();
    expect(store.adopt('"a"', counts(1), 1)).toBe(true);
    expect(store.adopt('"a"', counts(1), 2)).toBe(false); // the same event twice
    expect(store.adopt('"b"', counts(2), 3)).toBe(true);
    expect(store.adopt('W/"a"', counts(1), 4)).toBe(false); // a late answer for an older ETag
    expect(store.getSnapshot()).toMatchObject({ etag: '"b"', counts: { total: 2 } });
  });
});

describe("through the client", () => {
  it("a 200 carrying the ETag already held is not a change (iOS's URL cache)", async () => {
    const { server, client, heard } = harness({ transports: ["poll"], pollIntervalMs: 1_000 });
    server.pollInterval = 1;
    client.start();
    await until(() => client.getSnapshot().status === "polling", "polling");
    const notified = heard.length;
    // A cache answers 200 with the held ETag and stale counts instead of the server's 304.
    server.answer("/unread-counts", { status: 200, body: counts(99), headers: { ETag: server.etag } });
    await until(() => server.requestsTo("/unread-counts").length === 3, "two more polls");
    expect(heard.length).toBe(notified);
    expect(client.getSnapshot().counts?.total).toBe(0);
    client.stop();
  });

  it("each new ETag is heard once across revalidations, reconnects and duplicate events", async () => {
    const { server, client, lifecycle, etagsHeard } = harness();
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    server.bump();
    server.lastStream.counts(server.etag, server.counts); // the same event again
    server.lastStream.counts('"m1.e1"', { ...server.counts, total: 0 }); // an older one, late
    server.lastStream.end(500);
    await until(() => server.requestsTo("/stream").length === 2, "a reconnect");
    lifecycle.emit("background");
    lifecycle.emit("foreground"); // revalidation: 304, nothing to hear
    await until(() => client.getSnapshot().status === "live", "live");
    server.bump();
    await until(() => client.getSnapshot().counts?.total === 2, "the second bump");
    expect(etagsHeard().filter((e) => e !== null)).toEqual(['"m1.e1"', '"m2.e1"', '"m3.e1"']);
    const heardTwice = etagsHeard().filter((e, i, all) => e !== null && all.indexOf(e) !== i);
    expect(heardTwice).toEqual([]);
    client.stop();
  });

  it("a late answer of an ended connection is dropped", async () => {
    let release: (() => void) | undefined;
    const { server, client, lifecycle } = harness({
      transports: ["poll"],
      wrapFetch: (fetch) => async (url, init) => {
        const response = await fetch(url, init);
        if (release === undefined && server.requests.length === 1) {
          await new Promise<void>((resolve) => { release = resolve; }); // the first answer is slow
          return json(200, { ...server.counts, total: 42 }, { ETag: '"old"' });
        }
        return response;
      },
    });
    client.start();
    await until(() => release !== undefined, "the slow request");
    lifecycle.emit("background");
    lifecycle.emit("foreground");
    await until(() => client.getSnapshot().status === "polling", "polling");
    release!();
    await vi.advanceTimersByTimeAsync(100);
    expect(client.getSnapshot().counts?.total).toBe(0);
    expect(client.getSnapshot().etag).toBe(server.etag);
    client.stop();
  });
});

describe("persisted counts", () => {
  it("shows the saved counts at once, then revalidates them with one conditional GET", async () => {
    const saved = new Map<string, string>();
    const storage = { getItem: async (k: string) => saved.get(k) ?? null, setItem: async (k: string, v: string) => void saved.set(k, v) };
    const first = harness({ storage });
    first.client.start();
    await until(() => first.client.getSnapshot().status === "live", "live");
    first.server.bump();
    await until(() => first.client.getSnapshot().counts?.total === 1, "the bump");
    first.client.stop();
    const key = `counts:${first.server.userId}`;
    expect(JSON.parse(saved.get(key)!)).toMatchObject({ etag: first.server.etag, counts: { total: 1 } });

    // The next launch: same server state, a new client.
    const next = harness({ storage, transports: ["poll"] });
    Object.assign(next.server, { etag: first.server.etag, total: 1 });
    let requestsWhenShown = -1;
    next.client.subscribe(() => {
      if (requestsWhenShown < 0 && next.client.getSnapshot().etag) requestsWhenShown = next.server.requests.length;
    });
    next.client.start();
    await until(() => next.client.getSnapshot().etag !== null, "the saved counts");
    expect(requestsWhenShown).toBe(0); // shown before any request
    expect(next.client.getSnapshot().counts?.total).toBe(1);
    await until(() => next.server.requests.length === 1, "the revalidation");
    expect(next.server.requests[0]!.headers["If-None-Match"]).toBe(first.server.etag);
    await vi.advanceTimersByTimeAsync(100);
    expect(next.etagsHeard().filter((e) => e !== null)).toEqual([first.server.etag]); // 304: heard once
    next.client.stop();
  });

  it("ignores a broken or another user's entry", async () => {
    const storage = { getItem: () => "{not json", setItem: () => { throw new Error("quota"); } };
    const { client } = harness({ storage });
    client.start();
    await until(() => client.getSnapshot().status === "live", "live");
    expect(client.getSnapshot().counts?.total).toBe(0);
    client.stop();
  });
});
