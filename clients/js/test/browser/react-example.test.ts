// The React web example of README.md, as written there, built with Vite and run in Chromium
// against the real service: Supabase's session plugs into getToken as it is.
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { build } from "vite";
import { ChatUser, type Service, sharedService } from "../support/service.js";
import { PACKAGE, PageServer, launchChromium } from "./support.js";

const APP = join(PACKAGE, ".tmp/react-example");

/** The README's ```tsx block under "React on the web". */
async function readmeExample(): Promise<string> {
  const readme = await readFile(join(PACKAGE, "README.md"), "utf8");
  const section = readme.split("## React on the web")[1]!.split("\n## ")[0]!;
  const found = /```tsx\n([\s\S]*?)```/.exec(section);
  if (!found) throw new Error("README.md: no tsx block under 'React on the web'");
  return found[1]!;
}

// Stands in for the app's Supabase client: a signed-in session whose token the test minted.
const SUPABASE = `const config = JSON.parse(decodeURIComponent(location.hash.slice(1)));
const session = () => ({ data: { session: { user: { id: config.user }, access_token: config.token } } });
export const supabase = { auth: { getSession: async () => session(), refreshSession: async () => session() } };
`;

const ENTRY = { "@counts/client": "index.js", "@counts/client/react": "react.js" };

let counts: Service;
let pages: PageServer;

beforeAll(async () => {
  pages = new PageServer({}, { "/": join(APP, "dist") });
  await pages.start(inject("pagePorts")[1]);
  counts = sharedService();
  await rm(APP, { recursive: true, force: true });
  await mkdir(join(APP, "src"), { recursive: true });
  await writeFile(join(APP, "src/main.tsx"), await readmeExample());
  await writeFile(join(APP, "src/supabase.ts"), SUPABASE);
  await writeFile(join(APP, "index.html"), `<!doctype html><title>unread</title><div id="root"></div><script type="module" src="/src/main.tsx"></script>`);
  await build({
    root: APP, logLevel: "warn", configFile: false,
    define: { "import.meta.env.VITE_COUNTS_URL": JSON.stringify(counts.url) },
    resolve: { alias: Object.entries(ENTRY).map(([find, file]) => ({ find: new RegExp(`^${find}$`), replacement: join(PACKAGE, "dist/esm", file) })) },
    build: { outDir: join(APP, "dist"), target: "es2022", emptyOutDir: true },
    oxc: { jsx: { runtime: "automatic" } },
  });
});

afterAll(async () => {
  await pages?.stop();
  await rm(APP, { recursive: true, force: true });
});

describe("README's React web example", () => {
  it("renders the counts, goes live, and shows a write", async () => {
    const user = await ChatUser.create(counts);
    const browser = await launchChromium();
    try {
      const page = await browser.context.newPage();
      const errors: string[] = [];
      page.on("pageerror", (error) => errors.push(String(error)));
      const streams: string[] = [];
      page.on("request", (request) => { if (request.url().endsWith("/unread-counts/stream")) streams.push(request.url()); });
      await page.goto(`${pages.origin}/#${encodeURIComponent(JSON.stringify({ user: user.id, token: user.token() }))}`);
      const badge = page.locator("span.unread");
      await badge.and(page.locator('[data-status="live"]')).waitFor({ timeout: 15_000 });
      expect(await badge.textContent()).toBe("0");
      await user.receiveMessage();
      await page.locator('span.unread:text-is("1")').waitFor({ timeout: 5_000 });
      expect(streams).toHaveLength(1); // StrictMode's double mount: one connection
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
