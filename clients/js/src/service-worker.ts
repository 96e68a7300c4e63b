// The service worker's side of Web Push: what the service pushes is `{"type": "unread",
// "user_id", "total", "unread_conversations", "badge", "mentions", "conversation_id", "alert"}`
// (no message bodies). The app badge is `badge`, the number a poll answers under the user's badge
// policy; a service from before badges sends only `total`, which was its badge.
// Browsers require a notification for a push (`userVisibleOnly`): Chrome shows a generic one of
// its own when none is shown, and Safari revokes the subscription after three pushes without
// one. So the app badge follows every push, alerts are shown, and a badge-only push replaces
// the one "unread" notification quietly (the service sends none to Safari's push service:
// COUNTS_WEBPUSH_ALERTS_ONLY_HOSTS). `notifyEveryPush: false` skips that, at Chrome's notice.
// A browser that replaces a subscription fires `pushsubscriptionchange` here, where no user
// token is: the new one is registered with the old one's endpoint and auth secret as proof.

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

export interface PushSubscriptionLike {
  readonly endpoint: string;
  readonly options?: { readonly applicationServerKey?: ArrayBuffer | null };
  toJSON(): unknown;
}

export interface ServiceWorkerScopeLike {
  readonly registration: {
    showNotification(title: string, options?: NotificationOptionsLike): Promise<void>;
    readonly pushManager?: {
      subscribe(options: { userVisibleOnly: boolean; applicationServerKey: ArrayBuffer }): Promise<PushSubscriptionLike>;
    };
  };
  fetch?(url: string, init: { method: string; headers: Record<string, string>; body: string }): Promise<{ status: number }>;
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
  /** Show a quiet notification for badge-only pushes too (default true: Chrome shows its own
   * "updated in the background" notice for a push that shows none). */
  notifyEveryPush?: boolean;
  /** The service's base URL: set, a `pushsubscriptionchange` re-registers the new subscription. */
  baseUrl?: string;
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
  if (!payload.alert && options.notifyEveryPush === false) return;
  const unread = payload.total === 1 ? "1 unread message" : payload.total === 0 ? "No unread messages" : `${payload.total} unread messages`;
  const title = options.title?.(payload) ?? (payload.alert ? "New message" : "Unread messages");
  await registration.showNotification(title, {
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

interface SubscriptionChangeLike {
  readonly oldSubscription?: PushSubscriptionLike | null;
  readonly newSubscription?: PushSubscriptionLike | null;
  waitUntil(promise: Promise<unknown>): void;
}

/** Register the subscription that replaced `old`, proving the claim with `old`'s endpoint and
 * auth secret (`POST /v1/push/webpush/resubscribe`). Without the old subscription (older
 * browsers do not say) nothing can be proved here: the page re-registers on its next start. */
export async function resubscribe(scope: ServiceWorkerScopeLike, baseUrl: string, event: SubscriptionChangeLike): Promise<boolean> {
  const old = event.oldSubscription;
  const auth = (old?.toJSON() as { keys?: { auth?: string } } | undefined)?.keys?.auth;
  const key = old?.options?.applicationServerKey;
  if (!old || !auth || !scope.fetch) return false;
  const fresh = event.newSubscription ?? (key && scope.registration.pushManager
    ? await scope.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key })
    : null);
  if (!fresh) return false;
  const response = await scope.fetch(`${baseUrl.replace(/\/+$/, "")}/v1/push/webpush/resubscribe`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ old: { endpoint: old.endpoint, auth }, subscription: fresh.toJSON() }),
  });
  return response.status === 200;
}

interface NotificationClickLike {
  readonly notification: { close(): void; readonly data?: { url?: string } };
  waitUntil(promise: Promise<unknown>): void;
}

/** In the service worker: `installUnreadPush(self, {url: "/inbox", baseUrl: "https://counts.example"})`. */
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
  const baseUrl = options.baseUrl;
  if (baseUrl !== undefined) {
    scope.addEventListener("pushsubscriptionchange", (event: SubscriptionChangeLike) => {
      event.waitUntil(resubscribe(scope, baseUrl, event).catch(() => false));
    });
  }
  scope.addEventListener("notificationclick", (event: NotificationClickLike) => {
    event.notification.close();
    event.waitUntil(scope.clients.openWindow(event.notification.data?.url ?? options.url ?? "/"));
  });
}
