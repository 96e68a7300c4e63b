// useUnreadCounts: the client's snapshot in a React component. The client is created outside
// the component (once per user); the hook starts it while mounted. StrictMode mounts, unmounts
// and mounts again: start() and stop() are idempotent and the stop is deferred a tick, so a
// double mount keeps the one connection instead of opening a second.
import { useEffect, useSyncExternalStore } from "react";
import type { CountsClient } from "./client.js";
import { realTimers } from "./platform.js";
import type { CountsSnapshot } from "./types.js";

const users = new WeakMap<CountsClient, { mounted: number; stopping: unknown }>();

function retain(client: CountsClient): () => void {
  const entry = users.get(client) ?? { mounted: 0, stopping: undefined };
  users.set(client, entry);
  entry.mounted++;
  realTimers.clearTimeout(entry.stopping);
  client.start();
  return () => {
    entry.mounted--;
    // Deferred: StrictMode's unmount is followed at once by a mount that keeps the connection.
    entry.stopping = realTimers.setTimeout(() => {
      if (entry.mounted === 0) client.stop();
    }, 0);
  };
}

const whole = (snapshot: CountsSnapshot): CountsSnapshot => snapshot;

export function useUnreadCounts(client: CountsClient): CountsSnapshot;
export function useUnreadCounts<T>(client: CountsClient, selector: (snapshot: CountsSnapshot) => T): T;
export function useUnreadCounts<T>(client: CountsClient, selector?: (snapshot: CountsSnapshot) => T): T | CountsSnapshot {
  useEffect(() => retain(client), [client]);
  const snapshot = useSyncExternalStore(client.subscribe, client.getSnapshot, client.getSnapshot);
  return (selector ?? whole)(snapshot);
}
