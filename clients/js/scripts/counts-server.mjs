// Starts the counts service for the JS tests and scripts through tests/support/js_server.py
// (gunicorn, Postgres, Redis as the Python suite starts them) and talks to it over its stdin and
// stdout.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

/** The Python of the repository's venv: `make` passes it in COUNTS_TEST_PYTHON. */
export function python() {
  return process.env.COUNTS_TEST_PYTHON ?? resolve(REPO_ROOT, ".venv/bin/python");
}

/**
 * Starts the service; resolves once it answers, with its URL, JWT secret and a `command()` to
 * restart it (or its private Redis) and `stop()`.
 * @param {{privateRedis?: boolean, workers?: number, settings?: Record<string, string>, timeoutMs?: number}} [options]
 */
export async function startCountsServer(options = {}) {
  const args = ["-m", "tests.support.js_server"];
  if (options.privateRedis) args.push("--private-redis");
  if (options.workers) args.push("--workers", String(options.workers));
  for (const [key, value] of Object.entries(options.settings ?? {})) args.push(`${key}=${value}`);
  const child = spawn(python(), args, { cwd: REPO_ROOT, stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout });
  const waiting = [];
  const queued = [];
  lines.on("line", (line) => {
    const message = JSON.parse(line);
    const next = waiting.shift();
    if (next) next.resolve(message);
    else queued.push(message);
  });
  const exited = new Promise((done) => child.once("exit", done));
  child.once("exit", (code) => {
    for (const next of waiting.splice(0)) next.reject(new Error(`js_server exited (${code})`));
  });

  /** The next JSON line the launcher prints, within `timeoutMs`. */
  function nextLine(timeoutMs) {
    if (queued.length) return Promise.resolve(queued.shift());
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject };
      const timer = setTimeout(() => {
        waiting.splice(waiting.indexOf(entry), 1);
        reject(new Error(`js_server did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      entry.resolve = (value) => { clearTimeout(timer); resolve(value); };
      entry.reject = (error) => { clearTimeout(timer); reject(error); };
      waiting.push(entry);
    });
  }

  const ready = await nextLine(options.timeoutMs ?? 60_000);
  return {
    url: ready.url,
    jwtSecret: ready.jwt_secret,
    /** @param {"restart" | "restart-redis"} name */
    async command(name, timeoutMs = 60_000) {
      child.stdin.write(`${name}\n`);
      const reply = await nextLine(timeoutMs);
      if (reply.done !== name) throw new Error(`js_server: ${JSON.stringify(reply)}`);
    },
    async stop() {
      child.stdin.end("stop\n");
      await exited;
    },
  };
}
