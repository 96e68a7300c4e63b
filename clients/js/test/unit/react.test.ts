// @vitest-environment happy-dom
// useUnreadCounts: StrictMode's double mount opens one connection; unmount stops the client.
import { StrictMode, createElement } from "react";
import { act } from "react";
import { createRoot } from "react-dom/client";
import { afterEach, describe, expect, it, vi } from "vitest";
import { useUnreadCounts } from "../../src/react.js";
import { harness } from "../support/clients.js";
import { until } from "../support/fake-server.js";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

afterEach(() => {
  vi.useRealTimers();
});

describe("useUnreadCounts", () => {
  it("opens one connection under StrictMode, renders the counts, and stops on unmount", async () => {
    const { server, client } = harness();
    const seen: (number | undefined)[] = [];
    function Badge() {
      const total = useUnreadCounts(client, (s) => s.counts?.total);
      seen.push(total);
      return createElement("span", null, String(total ?? "-"));
    }
    const host = document.createElement("div");
    const root = createRoot(host);
    await act(async () => root.render(createElement(StrictMode, null, createElement(Badge))));
    await act(async () => until(() => client.getSnapshot().status === "live", "live"));
    expect(server.requestsTo("/stream")).toHaveLength(1);
    expect(server.requestsTo("/unread-counts")).toHaveLength(1);
    await act(async () => {
      server.bump();
      await until(() => host.textContent === "1", "the bump rendered");
    });
    await act(async () => root.unmount());
    await act(async () => vi.advanceTimersByTimeAsync(10));
    expect(client.getSnapshot().status).toBe("idle");
    expect(server.lastStream.open).toBe(false);
    expect(seen).toContain(1);
  });
});
