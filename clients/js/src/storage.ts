// The last {etag, counts} kept across launches, so an app shows its counts at once and then
// revalidates them with one conditional request. localStorage and AsyncStorage both fit.
import type { Counts } from "./types.js";

export interface StorageLike {
  getItem(key: string): string | null | Promise<string | null>;
  setItem(key: string, value: string): void | Promise<void>;
}

export interface Persisted {
  etag: string;
  counts: Counts;
  /** When these counts arrived (ms since the epoch). */
  savedAt: number;
}

function storageKey(userId: string): string {
  return `counts:${userId}`;
}

/** What was saved for this user, or null (nothing, unreadable, or another user's). */
export async function loadPersisted(storage: StorageLike, userId: string): Promise<Persisted | null> {
  try {
    const text = await storage.getItem(storageKey(userId));
    if (!text) return null;
    const saved = JSON.parse(text) as Partial<Persisted>;
    if (typeof saved.etag !== "string" || saved.counts?.user_id !== userId) return null;
    return { etag: saved.etag, counts: saved.counts, savedAt: typeof saved.savedAt === "number" ? saved.savedAt : 0 };
  } catch {
    return null; // a broken entry costs one 200, never a failure
  }
}

export async function savePersisted(storage: StorageLike, userId: string, value: Persisted): Promise<void> {
  try {
    await storage.setItem(storageKey(userId), JSON.stringify(value));
  } catch {
    // Quota or private mode: the counts still work, the next launch just starts empty.
  }
}
