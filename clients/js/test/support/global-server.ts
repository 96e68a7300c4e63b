// One counts service for every test file against the real thing that needs no special settings
// or restarts (each start costs seconds of a shared 2-core machine). Files that restart the
// service or need other settings start their own. The browser tests' page servers get their
// ports from here, so the service can name their exact origins in COUNTS_CORS_ORIGINS.
import { createServer } from "node:net";
import type { TestProject } from "vitest/node";
import { startCountsServer } from "../../scripts/counts-server.mjs";

declare module "vitest" {
  export interface ProvidedContext {
    countsUrl: string;
    jwtSecret: string;
    pagePorts: number[];
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const pagePorts = [await freePort(), await freePort()];
  const server = await startCountsServer({
    settings: {
      COUNTS_POLL_INTERVAL: "1", COUNTS_STREAM_HEARTBEAT: "2",
      COUNTS_CORS_ORIGINS: pagePorts.map((port) => `http://127.0.0.1:${port}`).join(","),
    },
  });
  project.provide("countsUrl", server.url);
  project.provide("jwtSecret", server.jwtSecret);
  project.provide("pagePorts", pagePorts);
  return () => server.stop();
}
