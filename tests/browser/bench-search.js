// The counselor inbox's search in the wasm build, in headless Chromium (the
// browser tests' flags): the operations of bench-core/src/search.rs over
// 10,000 conversations, each run timed on its own with performance.now()
// (Chromium's resolution here: 0.1 ms), so that per-keystroke p50 and p99
// can be given, as benches/search.rs gives them natively. Not a test: run by
// scripts/bench-search, which builds the module with the `bench` feature.
//
//   node bench-search.js <bench-pkg-dir> <out.json>   (env: ROUNDS, default 30)
import { createReadStream, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { chromium } from "playwright-core";

const [pkgDir, outJson] = process.argv.slice(2);
const ROUNDS = Number(process.env.ROUNDS ?? 30);
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
const loadavg = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const log = (...a) => console.error("#", ...a);

function serve(dir) {
  const page = `<!doctype html><meta charset=utf-8><title>bench</title><script type=module>
import init, * as m from "/northstar_web.js";
await init();
window.bench = m;
document.title = "ready";
</script>`;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    if (url.pathname === "/") {
      res.writeHead(200, { "content-type": "text/html" });
      return res.end(page);
    }
    const file = path.join(dir, path.normalize(url.pathname));
    if (!file.startsWith(dir) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" });
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

const pct = (sorted, p) => sorted[Math.round((sorted.length - 1) * p)];
const summary = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return { p50_ms: pct(s, 0.5), p99_ms: pct(s, 0.99), max_ms: s[s.length - 1], runs: s.length };
};

const result = { load_before: loadavg() };
const server = await serve(path.resolve(pkgDir));
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
try {
  result.chromium = browser.version();
  const page = await (await browser.newContext()).newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.waitForFunction(() => document.title === "ready", null, { timeout: 60_000 });
  // 31 keystrokes in the typing sequence (bench-core/src/search.rs KEYSTROKES).
  const time = (name, runs) =>
    page.evaluate(
      ({ name, runs }) => {
        const t0 = performance.now();
        const op = new window.bench.BenchOperation(name);
        const prepare = performance.now() - t0;
        op.run(1); // warm up
        const ms = [];
        for (let i = 0; i < runs; i++) {
          const t = performance.now();
          op.run(1);
          ms.push(performance.now() - t);
        }
        op.free();
        return { ms, prepare };
      },
      { name, runs },
    );
  const keys = await time("core/inbox_search_keystroke_10k", ROUNDS * 31);
  result.keystroke = summary(keys.ms);
  log(`keystroke: p50 ${result.keystroke.p50_ms.toFixed(2)} ms, p99 ${result.keystroke.p99_ms.toFixed(2)} ms (prepare ${keys.prepare.toFixed(0)} ms)`);
  const update = await time("core/inbox_search_after_new_message_10k", ROUNDS * 31);
  result.after_new_message = summary(update.ms);
  log(`after a new message: p50 ${result.after_new_message.p50_ms.toFixed(2)} ms, p99 ${result.after_new_message.p99_ms.toFixed(2)} ms`);
  const build = await time("core/inbox_search_index_build_10k", 10);
  result.index_build = summary(build.ms);
  log(`index build: p50 ${result.index_build.p50_ms.toFixed(1)} ms, max ${result.index_build.max_ms.toFixed(1)} ms`);
} finally {
  await browser.close();
  server.close();
}
result.load_after = loadavg();
writeFileSync(outJson, JSON.stringify(result, null, 2));
