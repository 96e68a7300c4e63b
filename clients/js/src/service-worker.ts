// The service worker's side of Web Push: what the service pushes is `{"type": "unread",
// "user_id", "total", "unread_conversations", "badge", "mentions", "conversation_id", "alert"}`
// (no message bodies). The app badge is `badge`, the number a poll answers under the user's badge
// policy; a service from before badges sends only `total`, which was its badge.
// Browsers require a notification for a push (`userVisibleOnly`): Chrome shows a generic one of
// its own when none is shown, and Safari revokes the subscription after three pushes without
// one. So alerts are shown, the app badge follows every push, and badge-only pushes show a
// quiet notification where `notifyEveryPush` asks for it (set it for Safari).

export interface UnreadPush {
  type: "unread";
  user_id: string;
  total: number;
  unread_conversations: number;
  badge?: number;
  mentions?: number;
  conversation_id: string | null;
  alert: boolean;
}

export interface NotificationOptionsLike {
  body?: string;
  tag?: string;
  icon?: string;
  badge?: string;
  silent?: boolean;
  data?: unknown;
}

export interface ServiceWorkerScopeLike {
  readonly registration: { showNotification(title: string, options?: NotificationOptionsLike): Promise<void> };
  readonly navigator: { setAppBadge?(count?: number): Promise<void>; clearAppBadge?(): Promise<void> };
  readonly clients: { openWindow(url: string): Promise<unknown> };
  addEventListener(type: string, listener: (event: never) => void): void;
}

export interface UnreadPushOptions {
  /** The notification's title and body for an alert. */
  title?: (push: UnreadPush) => string;
  body?: (push: UnreadPush) => string;
  icon?: string;
  /** Opened when the notification is clicked. */
  url?: string;
  notifyEveryPush?: boolean;
}

function isUnreadPush(value: unknown): value is UnreadPush {
  const push = value as Partial<UnreadPush> | null;
  return !!push && push.type === "unread" && typeof push.total === "number";
}

/** Badge, then the notification the browser requires. */
export async function showUnreadPush(scope: ServiceWorkerScopeLike, payload: unknown, options: UnreadPushOptions = {}): Promise<void> {
  if (!isUnreadPush(payload)) return;
  const { navigator, registration } = scope;
  const badge = payload.badge ?? payload.total;
  if (badge > 0) await navigator.setAppBadge?.(badge);
  else await (navigator.clearAppBadge ? navigator.clearAppBadge() : navigator.setAppBadge?.(0));
  if (!payload.alert && !options.notifyEveryPush) return;
  const unread = payload.total === 1 ? "1 unread message" : `${payload.total} unread messages`;
  await registration.showNotification(options.title?.(payload) ?? "New message", {
    body: options.body?.(payload) ?? unread,
    tag: "unread", // a newer push replaces the older notification
    icon: options.icon,
    silent: !payload.alert,
    data: { url: options.url ?? "/" },
  });
}

interface PushEventLike {
  readonly data: { json(): unknown } | null;
  waitUntil(promise: Promise<unknown>): void;
}

interface NotificationClickLike {
  readonly notification: { close(): void; readonly data?: { url?: string } };
  waitUntil(promise: Promise<unknown>): void;
}

/** In the service worker: `installUnreadPush(self, {url: "/inbox"})`. */
export function installUnreadPush(scope: ServiceWorkerScopeLike, options: UnreadPushOptions = {}): void {
  scope.addEventListener("push", (event: PushEventLike) => {
    let payload: unknown = null;
    try {
      payload = event.data?.json() ?? null;
    } catch {
      // not ours
    }
    event.waitUntil(showUnreadPush(scope, payload, options));
  });
  scope.addEventListener("notificationclick", (event: NotificationClickLike) => {
    event.notification.close();
    event.waitUntil(scope.clients.openWindow(event.notification.data?.url ?? options.url ?? "/"));
  });
}
