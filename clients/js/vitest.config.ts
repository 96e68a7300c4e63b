import { defineConfig } from "vitest/config";

// Four projects: unit tests (fake timers, fakes for fetch and WebSocket: fast), and three against
// real things: the counts service (contract), React Native's entry in Node, and Chromium.
export default defineConfig({
  test: {
    projects: [
      { test: { name: "unit", include: ["test/unit/**/*.test.ts"], environment: "node" } },
      {
        test: {
          name: "contract", include: ["test/contract/**/*.test.ts"], environment: "node",
          testTimeout: 60_000, hookTimeout: 90_000, fileParallelism: false,
        },
      },
      {
        test: {
          name: "react-native", include: ["test/react-native/**/*.test.ts"], environment: "node",
          testTimeout: 60_000, hookTimeout: 90_000, fileParallelism: false,
        },
      },
      {
        test: {
          name: "browser", include: ["test/browser/**/*.test.ts"], environment: "node",
          testTimeout: 90_000, hookTimeout: 120_000, fileParallelism: false,
        },
      },
    ],
  },
});
