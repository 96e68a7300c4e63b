// The public types: request and response bodies come from the service's OpenAPI document.
import type { components } from "./generated/openapi.js";

type Schemas = components["schemas"];

export type Counts = Schemas["Counts"];
export type ConversationUnread = Schemas["ConversationUnread"];
export type StreamTicket = Schemas["StreamTicket"];
export type WebPushKey = Schemas["WebPushKey"];
export type DeviceCreated = Schemas["DeviceCreated"];
export type PushSubscriptionJSON = Schemas["Subscription"];

/** An Expo push token: the service accepts `platform: "expo"` from its issue 17 on. */
export interface ExpoDevice {
  platform: "expo";
  token: string;
}

export type DeviceRegistration = Schemas["WebPushDevice"] | Schemas["ApnsDevice"] | Schemas["FcmDevice"] | ExpoDevice;

export type TransportName = "sse" | "ws" | "long-poll" | "poll";

export type Status =
  | "idle" // not started, or stopped
  | "connecting" // opening a transport, or waiting to retry one
  | "live" // a live transport is open (SSE, WebSocket, long-poll)
  | "polling" // conditional polling, the last fallback
  | "paused" // background, hidden tab: push carries the news
  | "offline"
  | "unauthorized" // 401 twice, the second with a refreshed token
  | "forbidden"; // 403: this token may not read this user's counts

export interface CountsError {
  /** What failed: "http" (a status), "network", "token" (getToken threw), "protocol". */
  readonly kind: "http" | "network" | "token" | "protocol";
  readonly status?: number;
  readonly message: string;
}

export interface CountsSnapshot {
  readonly counts: Counts | null;
  readonly etag: string | null;
  readonly status: Status;
  readonly transport: TransportName | null;
  /** When these counts arrived (ms since the epoch), null before any. */
  readonly updatedAt: number | null;
  readonly error: CountsError | null;
}
