// Benchmarks of the web client in headless Chromium (Debian's chromium via
// playwright-core, the browser tests' flags). Not a test: run by
// scripts/bench-wasm, which builds what it needs first. Two parts:
//
// 1. `ops`: the client-core operations of northstar_bench_core::OPERATIONS in the
//    wasm build with the `bench` feature (a module built into a temporary
//    directory, never the served one), timed in the page with
//    performance.now() around BenchOperation.run(n). Per operation, in a
//    fresh page: a first run (recorded: the cold cost), warm-up batches for
//    at least WARMUP_MS (default 3000) and while they still get faster (at
//    most WARMUP_MAX_MS, default 20000), then ROUNDS batches, each of n runs
//    with n chosen so a batch lasts about BATCH_MS; the figure is the median
//    batch time / n, with the spread (min..max).
//    Compared with the native figures of scripts/bench-core
//    (target/bench/core.json, same sitting) as wasm/native ratios, and the
//    ratchet with the floor its primitives set in wasm (floors.mjs).
// 2. `seeker`: the seeker page's total transfer to the first message sent,
//    on the real relay with the served module (web-client/static/pkg): every
//    HTTP response's encoded size (headers + body, as Chromium's network
//    stack counts it) and every WebSocket frame's payload, from opening the
//    page until the message is shown as sent (the relay acknowledged the
//    deposit). The organisation and one counselor device are set up with
//    the real CLI, as in e2e.test.js.
//
//   node bench.js <bench-pkg-dir> <core.json> <out.json>   (env: ROUNDS, BATCH_MS, WARMUP_MS, WARMUP_MAX_MS, SKIP_OPS, SKIP_SEEKER, OPS)
//
// OPS: a regular expression; only the operations whose name it matches are
// timed (e.g. OPS='pqxdh|setup/|prim/(x25519|ed25519|mlkem)').
import { spawn } from "node:child_process";
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { floorOf, median } from "../../bench-core/report/floors.mjs";
import { REPO, WEB_ROOT, startRealRelay } from "./server.js";

const [pkgDir, coreJson, outJson] = process.argv.slice(2);
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const BATCH_MS = Number(process.env.BATCH_MS ?? 300);
const OPS = process.env.OPS ? new RegExp(process.env.OPS) : null;
const WARMUP_MS = Number(process.env.WARMUP_MS ?? 3000);
const WARMUP_MAX_MS = Number(process.env.WARMUP_MAX_MS ?? 20000);
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(REPO, process.env.CARGO_TARGET_DIR) : path.join(REPO, "target");
const CLI = process.env.NORTHSTAR_BIN_DIR ? path.join(process.env.NORTHSTAR_BIN_DIR, "northstar") : path.join(TARGET, "debug/northstar");
const ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
// Extra Chromium flags for an experiment (e.g. BENCH_CHROMIUM_ARGS='--js-flags=--no-liftoff'); none by default.
if (process.env.BENCH_CHROMIUM_ARGS) ARGS.push(...process.env.BENCH_CHROMIUM_ARGS.split(" ").filter(Boolean));

const loadavg = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const log = (...a) => console.error("#", ...a);

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };

/** A static server of `dir` on 127.0.0.1 with a page that loads the bench module. */
function serveBench(dir) {
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
    const file = path.join(dir, path.normalize(url.pathname).replace(/^(\.\.[/\\])+/, ""));
    if (!file.startsWith(dir) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" });
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

/** CPU time (ns) a thread has run, from Linux's schedstat; null if unreadable. */
function threadCpuNs(pid) {
  try {
    return Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, "utf8").split(" ")[0]);
  } catch {
    return null;
  }
}

/**
 * The main threads of Chromium's renderer processes now; `after()` then
 * names the one that ran the most since (the page's, which ran the
 * operation), or null where /proc cannot tell (not Linux).
 */
function rendererMainThreads() {
  const list = () =>
    readdirSync("/proc")
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, "utf8").includes("--type=renderer");
        } catch {
          return false;
        }
      });
  let before = {};
  try {
    before = Object.fromEntries(list().map((p) => [p, threadCpuNs(p)]));
  } catch {
    return { after: () => null };
  }
  return {
    after: () => {
      let best = null;
      let most = 0;
      for (const p of list()) {
        const ran = (threadCpuNs(p) ?? 0) - (before[p] ?? 0);
        if (ran > most) [best, most] = [p, ran];
      }
      return best;
    },
  };
}

async function timeOps(browser) {
  const server = await serveBench(path.resolve(pkgDir));
  const origin = `http://127.0.0.1:${server.address().port}`;
  const context = await browser.newContext();
  const errors = [];
  // A fresh page (a fresh instance of the module) per operation, so that
  // every operation starts from the same state: V8 compiles a module's
  // functions lazily with its baseline compiler (Liftoff) and optimises hot
  // ones (TurboFan) in the background, so in a shared page an operation
  // started warm or cold depending on what ran before it (the primitives
  // share curve25519's field arithmetic with the set-up that used to run
  // first). For the first seconds after a page loads, Chromium's own
  // threads (V8's compiler threads, the browser process) share the pinned
  // CPU with the page: the warm-up below waits them out.
  const open = async () => {
    const page = await context.newPage();
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(origin + "/");
    await page.waitForFunction(() => document.title === "ready", null, { timeout: 60_000 });
    return page;
  };
  let page = await open();
  const names = (await page.evaluate(() => window.bench.bench_operations())).filter((n) => !OPS || OPS.test(n));
  const ops = {};
  for (const name of names) {
    await page.close();
    page = await open();
    const renderers = rendererMainThreads();
    const r = await page.evaluate(
      ({ name, batchMs, warmupMs, warmupMaxMs }) => {
        const { BenchOperation } = window.bench;
        const op = new BenchOperation(name);
        const start = performance.now();
        // The first run in a fresh instance: what one run costs before V8
        // has optimised anything (performance.now() is coarsened to 100 µs
        // in this page).
        let t0 = performance.now();
        op.run(1);
        let dt = performance.now() - t0;
        const firstNs = dt * 1e6;
        // Find n so that one batch lasts about batchMs...
        let n = 1;
        if (!BenchOperation.slow(name)) {
          while (dt < batchMs / 4) {
            n *= 4;
            t0 = performance.now();
            op.run(n);
            dt = performance.now() - t0;
          }
          n = Math.max(1, Math.round((n * batchMs) / dt));
        }
        // ...then warm up, as criterion does natively (1 s there), so that
        // both sides are timed in their steady state: V8 needs longer to
        // finish optimising, so for at least warmupMs since the first run and
        // then for as long as the batches keep getting faster (the best of
        // the last 4 more than 3 % under the best before them), at most
        // warmupMaxMs.
        const warmupNs = [];
        for (;;) {
          const elapsed = performance.now() - start;
          if (elapsed >= warmupMaxMs) break;
          if (elapsed >= warmupMs && warmupNs.length >= 8) {
            const before = Math.min(...warmupNs.slice(0, -4));
            const recent = Math.min(...warmupNs.slice(-4));
            if (recent > before * 0.97) break;
          }
          t0 = performance.now();
          op.run(n);
          warmupNs.push(((performance.now() - t0) / n) * 1e6);
        }
        // n again from the warmed-up speed, so a batch lasts about batchMs
        // even if the first batches were slowed down.
        if (!BenchOperation.slow(name) && warmupNs.length) {
          n = Math.max(1, Math.round((batchMs * 1e6) / Math.min(...warmupNs)));
        }
        window.op = op;
        return { n, firstNs, warmupNs };
      },
      { name, batchMs: BATCH_MS, warmupMs: WARMUP_MS, warmupMaxMs: WARMUP_MAX_MS },
    );
    const main = renderers.after(); // the renderer main thread that ran the warm-up
    // The timed batches, one evaluate each: wall time in the page, and the CPU
    // time of the page's main thread around it (Linux schedstat), which
    // other processes on the pinned CPU, and Chromium's own threads beside
    // the page's (V8's background compilation, the browser process), do not
    // inflate.
    const perOp = [];
    const cpuPerOp = [];
    for (let i = 0; i < ROUNDS; i++) {
      const c0 = main ? threadCpuNs(main) : null;
      const wallNs = await page.evaluate(({ n }) => {
        const t0 = performance.now();
        window.op.run(n);
        return ((performance.now() - t0) / n) * 1e6;
      }, { n: r.n });
      if (main) cpuPerOp.push((threadCpuNs(main) - c0) / r.n);
      perOp.push(wallNs);
    }
    await page.evaluate(() => window.op.free());
    ops[name] = {
      median_ns: median(perOp),
      min_ns: Math.min(...perOp),
      max_ns: Math.max(...perOp),
      runs: perOp.length,
      n: r.n,
      cpu_median_ns: cpuPerOp.length ? median(cpuPerOp) : null,
      cpu_min_ns: cpuPerOp.length ? Math.min(...cpuPerOp) : null,
      cpu_max_ns: cpuPerOp.length ? Math.max(...cpuPerOp) : null,
      first_run_ns: r.firstNs,
      warmup_batches_ns: r.warmupNs,
    };
    const cpu = ops[name].cpu_median_ns === null ? "" : `, main-thread CPU ${(ops[name].cpu_median_ns / 1000).toFixed(2)} µs`;
    log(`${name}: ${(ops[name].median_ns / 1000).toFixed(2)} µs${cpu} (n=${r.n}; first run ${(r.firstNs / 1e6).toFixed(1)} ms; ${r.warmupNs.length} warm-up batches)`);
  }
  await context.close();
  server.close();
  if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
  return ops;
}

/** Runs the real CLI; resolves with stdout. */
function cli(home, relay, args, stdin = "") {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, NORTHSTAR_HOME: home, NORTHSTAR_RELAY: relay };
    delete env.NORTHSTAR_ORG;
    const child = spawn(CLI, args, { env, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`northstar ${args.join(" ")}: ${err}`))));
    child.stdin.end(stdin);
  });
}

async function seekerTransfer(browser) {
  const ADMIN = "admin passphrase for the benchmark\n";
  const COUNSELOR = "counselor passphrase for the benchmark\n";
  const tmp = mkdtempSync(path.join(os.tmpdir(), "northstar-bench-"));
  let server;
  try {
    const admin = path.join(tmp, "admin");
    const desk = path.join(tmp, "desk");
    const org = JSON.parse(await cli(admin, "ws://127.0.0.1:1/ws", ["--json", "admin", "init"], ADMIN.repeat(2)));
    const webRoot = path.join(tmp, "web");
    mkdirSync(webRoot);
    server = await startRealRelay(webRoot);
    const relay = `${server.origin.replace(/^http/, "ws")}/ws`;
    // The seeker page as deployed: a release signed for this relay.
    await cli(admin, relay, ["admin", "web-release", "--from", WEB_ROOT, "--out", webRoot], ADMIN);
    const dev = JSON.parse(await cli(desk, relay, ["--json", "counselor", "init", "--org", org.org_key], COUNSELOR)).device;
    await cli(admin, relay, ["admin", "add-device", "--team", "unaccompanied-minors", "--label", "desk", "--device", dev], ADMIN);
    await cli(admin, relay, ["admin", "publish"], ADMIN);
    await cli(desk, relay, ["counselor", "sync"], COUNSELOR);

    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, serviceWorkers: "block" });
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
    const requests = new Map(); // requestId -> {url, type}
    const http = []; // {url, type, bytes}
    const ws = { sent: 0, received: 0, frames: 0 };
    cdp.on("Network.responseReceived", (e) => requests.set(e.requestId, { url: e.response.url, type: e.type }));
    cdp.on("Network.loadingFinished", (e) => {
      const r = requests.get(e.requestId) ?? { url: "?", type: "?" };
      http.push({ url: new URL(r.url).pathname, type: r.type, bytes: e.encodedDataLength });
    });
    // Binary frames arrive base64-encoded (opcode 2), text frames as text.
    const frameLen = (r) => (r.opcode === 2 ? Buffer.from(r.payloadData, "base64").length : Buffer.byteLength(r.payloadData));
    cdp.on("Network.webSocketFrameSent", (e) => {
      ws.sent += frameLen(e.response);
      ws.frames++;
    });
    cdp.on("Network.webSocketFrameReceived", (e) => {
      ws.received += frameLen(e.response);
      ws.frames++;
    });
    const t0 = Date.now();
    await page.goto(server.origin + "/");
    await page.click("#start");
    await page.locator("#topic-list .choice").first().waitFor({ state: "visible", timeout: 30_000 });
    await page.locator("#topic-list .choice").first().click();
    await page.click("#topic-form button[type=submit]");
    await page.click("#questions-skip"); // the topic's intake questions are optional (issue 20)
    await page.fill("#message", "I am 16 and alone in Texas. Can I ask for protection in Canada? My aunt lives in Toronto.");
    await page.click("#write-form button[type=submit]");
    await page.waitForFunction(() => document.querySelectorAll("#codename-words li").length === 7);
    await page.check("#wrote-it-down");
    await page.click("#send-first");
    await page.locator("#screen-conversation").waitFor({ state: "visible", timeout: 120_000 });
    const seconds = (Date.now() - t0) / 1000;
    await context.close();
    const httpBytes = http.reduce((a, r) => a + r.bytes, 0);
    const byType = {};
    for (const r of http) byType[r.type] = (byType[r.type] ?? 0) + r.bytes;
    return { total_bytes: httpBytes + ws.sent + ws.received, http_bytes: httpBytes, http_by_type: byType, responses: http, websocket: ws, seconds };
  } finally {
    await server?.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

const result = { load_before: loadavg() };
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
try {
  result.chromium = browser.version();
  if (!process.env.SKIP_OPS) {
    result.ops = await timeOps(browser);
    result.wasm_floor = floorOf((n) => result.ops[n]?.median_ns);
    result.ratchet_vs_wasm_floor = Object.fromEntries(Object.entries(result.wasm_floor).map(([k, f]) => [k, result.ops[k].median_ns / f]));
    if (coreJson && existsSync(coreJson)) {
      const native = JSON.parse(readFileSync(coreJson, "utf8")).ops;
      result.wasm_over_native = Object.fromEntries(
        Object.keys(result.ops)
          .filter((k) => native[k])
          .map((k) => [k, result.ops[k].median_ns / native[k].median_ns]),
      );
      result.wasm_cpu_over_native = Object.fromEntries(
        Object.keys(result.ops)
          .filter((k) => native[k] && result.ops[k].cpu_median_ns)
          .map((k) => [k, result.ops[k].cpu_median_ns / native[k].median_ns]),
      );
    } else {
      log(`no native figures (${coreJson}): run scripts/bench-core first for the wasm/native ratios`);
    }
  }
  if (!process.env.SKIP_SEEKER) result.seeker = await seekerTransfer(browser);
} finally {
  await browser.close();
}
result.load_after = loadavg();
writeFileSync(outJson, JSON.stringify(result, null, 2));
