// The few platform APIs the core uses, typed by their shape: the core compiles against ES2020
// alone (no DOM or React Native types), and any runtime's fetch and WebSocket can be passed in.

export interface HeadersLike {
  get(name: string): string | null;
}

export interface StreamReaderLike {
  read(): Promise<{ done: boolean; value?: Uint8Array }>;
  cancel(): Promise<void>;
}

export interface ResponseLike {
  readonly status: number;
  readonly headers: HeadersLike;
  /** null or absent where fetch cannot stream (React Native's own fetch): SSE is then skipped. */
  readonly body?: { getReader(): StreamReaderLike } | null;
  json(): Promise<unknown>;
}

export interface AbortSignalLike {
  readonly aborted: boolean;
  addEventListener(type: "abort", listener: () => void): void;
}

export interface RequestInitLike {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  signal?: AbortSignalLike;
}

// `init` is loose on purpose: the DOM's, Node's, React Native's and Expo's fetch all take more
// than this, each with its own types, and must all be assignable here.
export type FetchLike = (url: string, init?: any) => Promise<ResponseLike>;

/** What the client needs of a WebSocket: the DOM's, React Native's and the ws package's all fit. */
export interface WebSocketLike {
  onopen: (() => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: (() => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

// The third argument is React Native's (and the ws package's) `{headers}`; browsers ignore it.
export type WebSocketConstructorLike = new (url: string, protocols?: string | string[], options?: any) => object;

interface AbortControllerLike {
  readonly signal: AbortSignalLike;
  abort(): void;
}
interface TextDecoderLike {
  decode(input?: Uint8Array, options?: { stream: boolean }): string;
}
type TimerId = unknown;

// Globals every target has (browsers, Node 18+, Hermes with React Native's polyfills), declared
// here because ES2020's library does not: the core must not depend on the DOM's types.
declare const AbortController: new () => AbortControllerLike;
declare const TextDecoder: (new () => TextDecoderLike) | undefined;
declare function setTimeout(callback: () => void, ms: number): TimerId;
declare function clearTimeout(id: TimerId): void;

export function newAbortController(): AbortControllerLike {
  return new AbortController();
}

/** A UTF-8 decoder, or null where the runtime has none (then streaming is not possible). */
export function newTextDecoder(): TextDecoderLike | null {
  return typeof TextDecoder === "function" ? new TextDecoder() : null;
}

export interface Timers {
  setTimeout(callback: () => void, ms: number): TimerId;
  clearTimeout(id: TimerId): void;
  now(): number;
}

// Looked up at call time, so that fake timers installed after import are the ones used.
export const realTimers: Timers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (id) => clearTimeout(id),
  now: () => Date.now(),
};

export function globalObject(): Record<string, unknown> {
  return globalThis as unknown as Record<string, unknown>;
}
