// Web Push for a page: subscribe with the service's VAPID key and register the subscription as
// this user's device. The service worker's side is in `@counts/client/service-worker`.
import type { CountsClient } from "./client.js";
import type { DeviceCreated, PushSubscriptionJSON } from "./types.js";

export interface PushSubscriptionLike {
  toJSON(): unknown;
  unsubscribe(): Promise<boolean>;
  readonly options?: { readonly applicationServerKey?: ArrayBuffer | null };
}

export interface PushRegistrationLike {
  readonly pushManager: {
    getSubscription(): Promise<PushSubscriptionLike | null>;
    subscribe(options: { userVisibleOnly: boolean; applicationServerKey: Uint8Array }): Promise<PushSubscriptionLike>;
  };
}

/** The VAPID public key (base64url) from `GET /v1/push/webpush-key`. */
export async function fetchWebPushKey(client: CountsClient): Promise<string> {
  const response = await client.fetch(`${client.baseUrl.replace(/\/+$/, "")}/v1/push/webpush-key`);
  if (response.status !== 200) throw new Error(`GET /v1/push/webpush-key: HTTP ${response.status}`);
  return ((await response.json()) as { public_key: string }).public_key;
}

export function base64UrlToBytes(text: string): Uint8Array {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const bytes: number[] = [];
  let value = 0;
  let bits = 0;
  for (const char of text.replace(/=+$/, "")) {
    value = (value << 6) | alphabet.indexOf(char);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((value >> bits) & 0xff);
    }
  }
  return new Uint8Array(bytes);
}

function sameKey(held: ArrayBuffer | null | undefined, key: Uint8Array): boolean {
  if (!held) return true; // the browser does not say: keep the subscription
  const bytes = new Uint8Array(held);
  return bytes.length === key.length && bytes.every((byte, i) => byte === key[i]);
}

export interface WebPushDevice {
  deviceId: string;
  subscription: PushSubscriptionJSON;
}

/** Subscribe (the browser asks the user for permission) and register the device. A
 * subscription made with another key (the service's VAPID key rotated) is replaced. Call it on
 * every start: the service answers the same device id for a subscription it knows. */
export async function subscribeWebPush(client: CountsClient, registration: PushRegistrationLike): Promise<WebPushDevice> {
  const key = base64UrlToBytes(await fetchWebPushKey(client));
  let subscription = await registration.pushManager.getSubscription();
  if (subscription && !sameKey(subscription.options?.applicationServerKey, key)) {
    await subscription.unsubscribe();
    subscription = null;
  }
  subscription ??= await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  const json = subscription.toJSON() as PushSubscriptionJSON;
  const created: DeviceCreated = await client.registerDevice({ platform: "webpush", subscription: json });
  return { deviceId: created.device_id, subscription: json };
}

/** Unsubscribe in the browser and forget the device in the service (sign-out). */
export async function unsubscribeWebPush(client: CountsClient, registration: PushRegistrationLike, deviceId: string): Promise<void> {
  const subscription = await registration.pushManager.getSubscription();
  await subscription?.unsubscribe();
  await client.unregisterDevice(deviceId);
}
