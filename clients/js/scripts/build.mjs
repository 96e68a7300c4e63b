// Builds dist/: ESM (dist/esm/*.js) and CommonJS (dist/cjs/*.cjs), module for module, ES2020
// (Hermes runs it as it is), with type declarations for both (dist/types/*.d.ts for import,
// dist/cjs/*.d.cts for require).
import { execFileSync } from "node:child_process";
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { build } from "esbuild";

const ROOT = resolve(import.meta.dirname, "..");
const DIST = join(ROOT, "dist");

async function sources(dir) {
  const found = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await sources(path)));
    else if (entry.name.endsWith(".ts")) found.push(path);
  }
  return found;
}

async function files(dir, suffix) {
  return (await readdir(dir, { recursive: true }))
    .filter((name) => name.endsWith(suffix)).map((name) => join(dir, name));
}

/** Relative imports of `.js` files become `.cjs` ones (the CommonJS build's names). */
function toCjsPaths(text) {
  return text.replace(/((?:require\(|from |import\()\s*["'])(\.{1,2}\/[^"']+)\.js(["'])/g, "$1$2.cjs$3");
}

await rm(DIST, { recursive: true, force: true });
const entryPoints = await sources(join(ROOT, "src"));
const common = { entryPoints, outbase: join(ROOT, "src"), target: "es2020", platform: "neutral", logLevel: "warning" };
await build({ ...common, format: "esm", outdir: join(DIST, "esm") });
await build({ ...common, format: "cjs", outdir: join(DIST, "cjs"), outExtension: { ".js": ".cjs" } });
for (const file of await files(join(DIST, "cjs"), ".cjs")) await writeFile(file, toCjsPaths(await readFile(file, "utf8")));

execFileSync(join(ROOT, "node_modules/.bin/tsc"), ["-p", "tsconfig.json", "--emitDeclarationOnly"], { cwd: ROOT, stdio: "inherit" });
for (const file of await files(join(DIST, "types"), ".d.ts")) {
  const target = join(DIST, "cjs", relative(join(DIST, "types"), file)).replace(/\.d\.ts$/, ".d.cts");
  await writeFile(target, toCjsPaths(await readFile(file, "utf8")));
}
console.log(`built ${entryPoints.length} modules into ${relative(ROOT, DIST)}/ (esm, cjs, types)`);
