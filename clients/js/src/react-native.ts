// React Native: AppState and NetInfo as the lifecycle, and the transports React Native has.
// The modules are passed in (never imported), so this entry builds and runs without them and an
// app picks its own NetInfo version (a native-module peer dependency breaks builds).
import { CountsClient, type CountsClientOptions } from "./client.js";
import type { Lifecycle, LifecycleEvent } from "./lifecycle.js";
import type { TransportName } from "./types.js";

export interface AppStateLike {
  readonly currentState: string | null;
  addEventListener(type: "change", listener: (state: string) => void): { remove(): void };
}

export interface NetInfoStateLike {
  isConnected: boolean | null;
}

export interface NetInfoLike {
  addEventListener(listener: (state: NetInfoStateLike) => void): () => void;
}

/** `background` closes at once (push takes over; Android reports it for every other Activity
 * too, so `active` always reopens); `inactive` (iOS's passing states) changes nothing. */
export function reactNativeLifecycle(modules: { AppState: AppStateLike; NetInfo?: NetInfoLike }): Lifecycle {
  const { AppState, NetInfo } = modules;
  let connected: boolean | null = null;
  return {
    isForeground: () => AppState.currentState !== "background",
    isOnline: () => connected !== false,
    backgroundGraceMs: 0,
    subscribe(listener: (event: LifecycleEvent) => void) {
      const appState = AppState.addEventListener("change", (state) => {
        if (state === "active") listener("foreground");
        else if (state === "background") listener("background");
      });
      const netInfo = NetInfo?.addEventListener((state) => {
        const was = connected;
        connected = state.isConnected;
        if (state.isConnected === false && was !== false) listener("offline");
        else if (state.isConnected !== false && was === false) listener("online");
      });
      return () => {
        appState.remove();
        netInfo?.();
      };
    },
  };
}

export interface ReactNativeClientOptions extends Omit<CountsClientOptions, "lifecycle"> {
  AppState: AppStateLike;
  NetInfo?: NetInfoLike;
  /** True only with a fetch that streams response bodies (Expo's `expo/fetch`): then SSE is
   * tried after the WebSocket. React Native's own fetch buffers the whole body. */
  fetchStreams?: boolean;
}

/** A client for React Native: WebSocket with the Authorization header, then long-poll, then
 * polling (SSE too where fetch streams). */
export function createReactNativeClient(options: ReactNativeClientOptions): CountsClient {
  const { AppState, NetInfo, fetchStreams, ...rest } = options;
  const transports: TransportName[] = options.transports ?? (fetchStreams ? ["ws", "sse", "long-poll", "poll"] : ["ws", "long-poll", "poll"]);
  return new CountsClient({
    wsAuth: "header",
    ...rest,
    transports: fetchStreams ? transports : transports.filter((t) => t !== "sse"),
    lifecycle: reactNativeLifecycle({ AppState, NetInfo }),
  });
}

export { CountsClient };
