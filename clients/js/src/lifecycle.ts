// When the app may use the network: in the foreground and online. Adapters turn a platform's
// signals (page visibility, AppState, NetInfo) into these four events; the core imports none.

export type LifecycleEvent = "foreground" | "background" | "online" | "offline";

export interface Lifecycle {
  isForeground(): boolean;
  isOnline(): boolean;
  /** How long a live connection stays open once in the background (a quick tab switch should
   * not cost a reconnect); 0 closes it at once. No new request starts meanwhile either way. */
  readonly backgroundGraceMs: number;
  subscribe(listener: (event: LifecycleEvent) => void): () => void;
}

/** A process with no lifecycle (Node, a test): always in the foreground and online. */
export const alwaysForeground: Lifecycle = {
  isForeground: () => true,
  isOnline: () => true,
  backgroundGraceMs: 0,
  subscribe: () => () => undefined,
};

interface EventTargetLike {
  addEventListener(type: string, listener: () => void): void;
  removeEventListener(type: string, listener: () => void): void;
}

export interface BrowserGlobals {
  document: EventTargetLike & { readonly visibilityState: string };
  window: EventTargetLike;
  navigator: { readonly onLine: boolean };
}

export const BROWSER_HIDDEN_GRACE_MS = 30_000;

/** A browser page: hidden or frozen (Page Lifecycle) is background, visible or resumed is
 * foreground; `online`/`offline` as the browser reports them. Phoenix found Chrome does not
 * always fire visibilitychange after a resume, hence `resume` and `pageshow` as well. */
export function browserLifecycle(globals: BrowserGlobals, backgroundGraceMs = BROWSER_HIDDEN_GRACE_MS): Lifecycle {
  const { document, window, navigator } = globals;
  let frozen = false;
  const visible = (): boolean => document.visibilityState !== "hidden";
  return {
    isForeground: () => !frozen && visible(),
    isOnline: () => navigator.onLine !== false,
    backgroundGraceMs,
    subscribe(listener) {
      const visibility = (): void => listener(visible() ? "foreground" : "background");
      const freeze = (): void => {
        frozen = true;
        listener("background");
      };
      const resume = (): void => {
        frozen = false;
        if (visible()) listener("foreground");
      };
      const online = (): void => listener("online");
      const offline = (): void => listener("offline");
      const bindings: [EventTargetLike, string, () => void][] = [
        [document, "visibilitychange", visibility], [document, "freeze", freeze], [document, "resume", resume],
        [window, "pagehide", freeze], [window, "pageshow", resume],
        [window, "online", online], [window, "offline", offline],
      ];
      for (const [target, type, handler] of bindings) target.addEventListener(type, handler);
      return () => {
        for (const [target, type, handler] of bindings) target.removeEventListener(type, handler);
      };
    },
  };
}

/** The browser's lifecycle where there is a page, else none. */
export function defaultLifecycle(): Lifecycle {
  const globals = globalThis as unknown as Partial<BrowserGlobals>;
  if (typeof globals.document?.addEventListener === "function" && globals.window && globals.navigator) {
    return browserLifecycle(globals as BrowserGlobals);
  }
  return alwaysForeground;
}
