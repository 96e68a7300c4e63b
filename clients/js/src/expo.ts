// Expo push: the Android channel, permission, the Expo push token registered with the service
// on every start and whenever the token changes, and the app badge from foreground snapshots.
// `expo-notifications` is passed in, never imported.
import type { CountsClient } from "./client.js";

export interface ExpoNotificationsLike {
  AndroidImportance: { DEFAULT: number };
  setNotificationChannelAsync(id: string, channel: { name: string; importance: number; showBadge?: boolean }): Promise<unknown>;
  getPermissionsAsync(): Promise<{ granted: boolean; canAskAgain?: boolean }>;
  requestPermissionsAsync(request?: { ios?: { allowAlert?: boolean; allowBadge?: boolean; allowSound?: boolean } }): Promise<{ granted: boolean }>;
  getExpoPushTokenAsync(options?: { projectId?: string }): Promise<{ data: string }>;
  addPushTokenListener(listener: (token: unknown) => void): { remove(): void };
  setBadgeCountAsync(count: number): Promise<boolean>;
}

export interface ExpoPushOptions {
  client: CountsClient;
  Notifications: ExpoNotificationsLike;
  /** `Platform.OS`. */
  platform: string;
  /** The EAS project id (`Constants.expoConfig.extra.eas.projectId`). */
  projectId?: string;
  /** Must match the server's COUNTS_EXPO_ANDROID_CHANNEL_ID. */
  channelId?: string;
  channelName?: string;
  /** Registration failures (the app keeps working; the next start tries again). */
  onError?: (error: unknown) => void;
}

export interface ExpoPush {
  /** The Expo push token registered, or null without permission. */
  readonly token: string | null;
  stop(): void;
}

export async function startExpoPush(options: ExpoPushOptions): Promise<ExpoPush> {
  const { client, Notifications, onError } = options;
  if (options.platform === "android") {
    await Notifications.setNotificationChannelAsync(options.channelId ?? "counts", {
      name: options.channelName ?? "Unread messages", importance: Notifications.AndroidImportance.DEFAULT, showBadge: true,
    });
  }
  let permission = await Notifications.getPermissionsAsync();
  if (!permission.granted && permission.canAskAgain !== false) {
    permission = await Notifications.requestPermissionsAsync({ ios: { allowAlert: true, allowBadge: true, allowSound: true } });
  }
  if (!permission.granted) return { token: null, stop: () => undefined };

  const state = { token: null as string | null };
  const register = async (): Promise<void> => {
    try {
      const { data } = await Notifications.getExpoPushTokenAsync({ projectId: options.projectId });
      state.token = data;
      await client.registerDevice({ platform: "expo", token: data });
    } catch (error) {
      onError?.(error);
    }
  };
  await register();
  // The listener reports the device's own token; the Expo token follows from it: fetch it again.
  const tokens = Notifications.addPushTokenListener(() => void register());

  // The client is silent in the background, so its snapshots are foreground ones.
  let badge: number | null = null;
  const showBadge = (): void => {
    // The body's badge, as every push carries it; a service from before badges: its total.
    const counts = client.getSnapshot().counts;
    const total = counts?.badge ?? counts?.total;
    if (total === undefined || total === badge) return;
    badge = total;
    Notifications.setBadgeCountAsync(total).catch(onError ?? (() => undefined));
  };
  const unsubscribe = client.subscribe(showBadge);
  showBadge();
  return {
    get token() {
      return state.token;
    },
    stop() {
      tokens.remove();
      unsubscribe();
    },
  };
}
