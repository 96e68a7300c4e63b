// The client section of `make bench` (bench/js_client.py runs this): N CountsClients in one Node
// process against a running service, through foreground, background, foreground again and a
// server restart. Speaks JSON lines: progress and {"event": "restart"} out (the Python side then
// SIGTERMs the service and starts it again, and answers {"sigterm_at", "up_at"} on stdin), and
// finally {"result": {...}}.
//   node bench/clients.mjs '{"url": ..., "secret": ..., "clients": 1000, ...}'
import { createHmac, randomUUID } from "node:crypto";
import { createInterface } from "node:readline";
import WebSocket from "ws";
import { CountsClient } from "../dist/esm/index.js";

const config = {
  clients: 1000, foregroundSeconds: 60, backgroundSeconds: 20, writesPerSecond: 20, pollShare: 0.1, startSpreadSeconds: 10,
  ...JSON.parse(process.argv[2]),
};
const say = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const input = createInterface({ input: process.stdin });
const replies = [];
input.on("line", (line) => replies.shift()?.(JSON.parse(line)));
const reply = () => new Promise((resolve) => replies.push(resolve));

function token(subject, service = false) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: subject, role: service ? "service_role" : "authenticated", iat: now, exp: now + 3600, jti: randomUUID() };
  if (!service) claims.aud = "authenticated";
  const unsigned = [{ alg: "HS256", typ: "JWT" }, claims].map((part) => Buffer.from(JSON.stringify(part)).toString("base64url")).join(".");
  return `${unsigned}.${createHmac("sha256", config.secret).update(unsigned).digest("base64url")}`;
}

async function pooled(items, concurrency, work) {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) await work(items[next++]);
  }));
}

async function waitFor(condition, what, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(20);
  }
}

function pct(values, q) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((q / 100) * sorted.length))];
}

// Every request a client sends is counted in the phase it is sent in.
let phase = "setup";
const sent = {};
/** How connections ended, by phase, transport and outcome: what the requests were for. */
const outcomes = {};
const count = (group) => {
  const key = `${phase}:${group}`;
  sent[key] = (sent[key] ?? 0) + 1;
};

/** One lifecycle for every client: the bench switches them all to the background and back. */
const lifecycle = {
  foreground: true,
  listeners: new Set(),
  isForeground() { return this.foreground; },
  isOnline: () => true,
  backgroundGraceMs: 0,
  subscribe(listener) { this.listeners.add(listener); return () => this.listeners.delete(listener); },
  set(foreground) {
    this.foreground = foreground;
    for (const listener of this.listeners) listener(foreground ? "foreground" : "background");
  },
};

const serviceAuth = { Authorization: `Bearer ${token("bench-client", true)}`, "Content-Type": "application/json" };

async function makeUser(i) {
  const id = randomUUID();
  const friend = randomUUID();
  const response = await fetch(`${config.url}/v1/conversations`, { method: "POST", headers: serviceAuth, body: JSON.stringify({ member_ids: [id, friend] }) });
  const { conversation_id: conversation } = await response.json();
  const group = i < config.clients * config.pollShare ? "poll" : i % 2 ? "ws" : "sse";
  return { id, friend, conversation, group, written: 0, pending: [], etags: [], connects: [], liveAt: [] };
}

function startClient(user) {
  const groupFetch = (url, init) => {
    count(user.group);
    return fetch(url, init);
  };
  class GroupWebSocket extends WebSocket {
    constructor(url, protocols, options) {
      count(user.group);
      super(url, protocols, options);
    }
  }
  user.client = new CountsClient({
    baseUrl: config.url, userId: user.id, getToken: async () => token(user.id), lifecycle,
    transports: user.group === "poll" ? ["poll"] : [user.group, "long-poll", "poll"], wsAuth: "header",
    fetch: groupFetch, WebSocket: GroupWebSocket,
    trace: (event) => {
      if (event.type === "connect") user.connects.push(Date.now());
      if (event.type === "outcome") {
        const key = `${phase}:${event.transport}:${event.outcome.kind}${event.outcome.reason ? ` (${event.outcome.reason})` : ""}`;
        outcomes[key] = (outcomes[key] ?? 0) + 1;
      }
    },
  });
  user.client.subscribe(() => {
    const snapshot = user.client.getSnapshot();
    if (snapshot.status === "live" || snapshot.status === "polling") user.liveAt.push(Date.now());
    if (snapshot.etag && snapshot.etag !== user.etags[user.etags.length - 1]) user.etags.push(snapshot.etag);
    const total = snapshot.counts?.total ?? 0;
    while (user.pending.length && user.pending[0].total <= total) {
      const write = user.pending.shift();
      if (write.at !== null) write.latency = Math.max(0, Date.now() - write.at);
      else write.early = true; // arrived before the writer saw its 201
    }
  });
  user.client.start();
}

const writes = [];
async function write(user) {
  const entry = { total: ++user.written, at: null, latency: null, phase };
  user.pending.push(entry);
  writes.push(entry);
  const response = await fetch(`${config.url}/v1/conversations/${user.conversation}/messages`, {
    method: "POST", headers: serviceAuth, body: JSON.stringify({ sender_id: user.friend, body: "hi" }),
  });
  if (response.status !== 201) throw new Error(`write: ${response.status}`);
  if (entry.early) entry.latency = 0;
  else if (entry.latency === null) entry.at = Date.now();
}

/** Writes at the configured rate to random live (stream) users for `seconds`. */
async function writeFor(seconds, users) {
  const interval = 1000 / config.writesPerSecond;
  const inFlight = [];
  for (const end = Date.now() + seconds * 1000; Date.now() < end;) {
    inFlight.push(write(users[Math.floor(Math.random() * users.length)]));
    await sleep(interval);
  }
  await Promise.all(inFlight);
}

function perHour(group, phaseName, seconds, users) {
  const n = users.filter((u) => u.group === group).length;
  return n ? ((sent[`${phaseName}:${group}`] ?? 0) / n) * (3600 / seconds) : null;
}

const users = [];
await pooled(Array.from({ length: config.clients }, (_, i) => i), 32, async (i) => users.push(await makeUser(i)));
const streamers = users.filter((u) => u.group !== "poll");
say({ event: "progress", text: `${users.length} users created; starting clients` });
phase = "start";
const startedAt = Date.now();
// Apps are opened over time, not in one instant: each client starts at a random moment of the
// first `startSpreadSeconds` (the return to the foreground below is all at once, a worst case).
for (const user of users) setTimeout(() => startClient(user), Math.random() * config.startSpreadSeconds * 1000);
await waitFor(() => users.every((u) => u.client), "every client started", config.startSpreadSeconds * 1000 + 5_000);
await waitFor(() => users.every((u) => ["live", "polling"].includes(u.client.getSnapshot().status)), "every client live", 180_000);
const startSeconds = (Date.now() - startedAt) / 1000;
say({ event: "progress", text: `all live in ${startSeconds.toFixed(1)} s` });

phase = "foreground";
await writeFor(config.foregroundSeconds, streamers);
await waitFor(() => streamers.every((u) => u.pending.length === 0), "every foreground write delivered", 30_000);

phase = "background";
lifecycle.set(false);
await writeFor(config.backgroundSeconds, streamers); // push's job now
const backgroundSent = Object.entries(sent).filter(([key]) => key.startsWith("background:")).reduce((sum, [, n]) => sum + n, 0);

phase = "return";
const returnedAt = Date.now();
lifecycle.set(true);
await waitFor(() => streamers.every((u) => u.pending.length === 0), "every background write seen on return", 60_000);
const freshSeconds = (Date.now() - returnedAt) / 1000;
await waitFor(() => users.every((u) => ["live", "polling"].includes(u.client.getSnapshot().status)), "live again", 60_000);

phase = "restart";
for (const user of users) user.connects = [];
say({ event: "restart" });
const { sigterm_at: sigtermAt, up_at: upAt } = await reply();
await waitFor(() => streamers.every((u) => u.connects.length > 0 && u.liveAt.some((t) => t > sigtermAt)), "every stream back", 120_000);
const backAfter = streamers.map((u) => (u.liveAt.find((t) => t > sigtermAt) - sigtermAt) / 1000);
const attempts = streamers.flatMap((u) => u.connects.map((t) => (t - sigtermAt) / 1000));
const firstAttempts = streamers.map((u) => (u.connects[0] - sigtermAt) / 1000);
const perHalfSecond = (times) => {
  const buckets = {};
  for (const t of times) buckets[Math.floor(t * 2) / 2] = (buckets[Math.floor(t * 2) / 2] ?? 0) + 1;
  return buckets;
};
await writeFor(5, streamers);
await waitFor(() => streamers.every((u) => u.pending.length === 0), "writes after the restart", 30_000);

const latencies = writes.filter((w) => w.phase === "foreground").map((w) => w.latency);
const duplicates = users.filter((u) => new Set(u.etags).size !== u.etags.length).length;
for (const user of users) user.client.stop();
say({
  result: {
    clients: users.length,
    groups: Object.fromEntries(["sse", "ws", "poll"].map((g) => [g, users.filter((u) => u.group === g).length])),
    start_seconds: startSeconds,
    foreground_seconds: config.foregroundSeconds,
    foreground_requests_per_client_hour: Object.fromEntries(["sse", "ws", "poll"].map((g) => [g, perHour(g, "foreground", config.foregroundSeconds, users)])),
    background_seconds: config.backgroundSeconds,
    background_requests: backgroundSent,
    background_requests_per_client_hour: (backgroundSent / users.length) * (3600 / config.backgroundSeconds),
    return_requests_per_client: Object.entries(sent).filter(([k]) => k.startsWith("return:")).reduce((s, [, n]) => s + n, 0) / users.length,
    return_fresh_seconds: freshSeconds,
    writes: latencies.length,
    latency_ms: { p50: pct(latencies, 50), p99: pct(latencies, 99), max: pct(latencies, 100) },
    restart: {
      down_seconds: (upAt - sigtermAt) / 1000,
      attempts: attempts.length,
      streams: streamers.length,
      back_seconds: { p50: pct(backAfter, 50), p90: pct(backAfter, 90), p99: pct(backAfter, 99), max: pct(backAfter, 100) },
      first_attempt_seconds: { p1: pct(firstAttempts, 1), p50: pct(firstAttempts, 50), p99: pct(firstAttempts, 99) },
      first_attempts_per_half_second: perHalfSecond(firstAttempts),
      attempts_per_half_second: perHalfSecond(attempts),
    },
    clients_hearing_an_etag_twice: duplicates,
    outcomes,
  },
});
input.close();
process.exit(0);
