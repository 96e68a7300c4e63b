// @counts/client: the core. No DOM or React Native imports: adapters live in their own entries.
export { CountsClient, CountsRequestError } from "./client.js";
export type { CountsClientOptions, TraceEvent } from "./client.js";
export { alwaysForeground, browserLifecycle } from "./lifecycle.js";
export type { BrowserGlobals, Lifecycle, LifecycleEvent } from "./lifecycle.js";
export type { FetchLike, ResponseLike, Timers, WebSocketConstructorLike } from "./platform.js";
export type { StorageLike } from "./storage.js";
export type { GetToken } from "./token.js";
export type {
  ConversationUnread, Counts, CountsError, CountsSnapshot, DeviceCreated, DeviceRegistration, ExpoDevice,
  PushSubscriptionJSON, Status, StreamTicket, TransportName, WebPushKey,
} from "./types.js";
