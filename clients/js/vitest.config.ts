import { defineConfig } from "vitest/config";

// Unit tests (fake timers, fakes for fetch and WebSocket: fast), and the tests against real
// things: the counts service (contract), React Native's entry in Node, and Chromium. These share
// one service started by the global setup, one file at a time (2 cores, shared).
export default defineConfig({
  test: {
    projects: [
      { test: { name: "unit", include: ["test/unit/**/*.test.ts"], environment: "node" } },
      {
        test: {
          name: "service", environment: "node", globalSetup: ["test/support/global-server.ts"],
          include: ["test/contract/**/*.test.ts", "test/react-native/**/*.test.ts", "test/browser/**/*.test.ts"],
          testTimeout: 60_000, hookTimeout: 120_000, fileParallelism: false,
        },
      },
    ],
  },
});
