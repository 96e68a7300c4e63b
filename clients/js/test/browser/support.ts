// Debian's Chromium driven by playwright-core (never a downloaded browser), a page server on an
// origin of its own, and the counts service allowing that origin.
import { createServer, type Server } from "node:http";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { extname, join, normalize, resolve } from "node:path";
import { type BrowserContext, chromium } from "playwright-core";

export const PACKAGE = resolve(import.meta.dirname, "../..");
const TYPES: Record<string, string> = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".map": "application/json" };

/** Serves `pages` (path -> html or js) and files under `roots` (prefix -> folder). */
export class PageServer {
  private server: Server | undefined;
  origin = "";

  constructor(private readonly pages: Record<string, string>, private readonly roots: Record<string, string>) {}

  /** On `port` (0: any free one). */
  async start(port = 0): Promise<this> {
    this.server = createServer(async (request, response) => {
      const path = new URL(request.url ?? "/", "http://x").pathname;
      const page = this.pages[path];
      if (page !== undefined) {
        response.writeHead(200, { "Content-Type": TYPES[extname(path)] ?? "text/html", "Service-Worker-Allowed": "/" });
        response.end(page);
        return;
      }
      for (const [prefix, folder] of Object.entries(this.roots)) {
        if (!path.startsWith(prefix)) continue;
        const file = normalize(join(folder, path.slice(prefix.length) || "index.html"));
        if (!file.startsWith(folder)) break;
        try {
          const body = await readFile(file);
          response.writeHead(200, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream" });
          response.end(body);
          return;
        } catch {
          break;
        }
      }
      response.writeHead(404);
      response.end();
    });
    await new Promise<void>((done) => this.server!.listen(port, "127.0.0.1", done));
    const address = this.server.address() as { port: number };
    this.origin = `http://127.0.0.1:${address.port}`;
    return this;
  }

  async stop(): Promise<void> {
    await new Promise((done) => this.server?.close(done));
  }
}

const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"];

/** A fresh profile each time (headless: playwright adds --headless). */
export async function launchChromium(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const profile = await mkdtemp(join(tmpdir(), "counts-chromium-"));
  const context = await chromium.launchPersistentContext(profile, { executablePath: "/usr/bin/chromium", headless: true, args: FLAGS });
  return {
    context,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}
