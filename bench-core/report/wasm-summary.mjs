// Prints tests/browser/bench.js's result (scripts/bench-wasm) as Markdown:
// every operation in wasm with its spread, the native median and the ratio,
// the CPU time of the page's main thread per run (and its ratio to native),
// its first run in a fresh page (before V8 optimised anything) and how many
// warm-up batches it took;
// the ratchet against the floor its primitives set in wasm; the seeker
// page's transfer to the first message sent.
//
//   node bench-core/report/wasm-summary.mjs target/bench/wasm.json
import { readFileSync } from "node:fs";

const r = JSON.parse(readFileSync(process.argv[2], "utf8"));
const fmt = (ns) => (ns >= 1e6 ? `${(ns / 1e6).toFixed(1)} ms` : `${(ns / 1000).toFixed(ns < 10_000 ? 2 : 1)} µs`);
const out = [`Chromium ${r.chromium}; load average before ${r.load_before}, after ${r.load_after}.`, ""];
if (r.ops) {
  out.push(
    "| operation | wasm median | spread (batches) | wasm / native | main-thread CPU | CPU / native | first run (cold) | warm-up batches |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  );
  const x = (v) => (v ? v.toFixed(2) + "x" : "–");
  for (const [name, o] of Object.entries(r.ops)) {
    const first = o.first_run_ns === undefined ? "–" : fmt(o.first_run_ns);
    const warm = o.warmup_batches_ns === undefined ? "–" : String(o.warmup_batches_ns.length);
    const cpu = o.cpu_median_ns ? fmt(o.cpu_median_ns) : "–";
    out.push(
      `| ${name} | ${fmt(o.median_ns)} | ${fmt(o.min_ns)} – ${fmt(o.max_ns)} (${o.runs} × ${o.n}) | ${x(r.wasm_over_native?.[name])} | ${cpu} | ${x(r.wasm_cpu_over_native?.[name])} | ${first} | ${warm} |`,
    );
  }
  out.push("");
  for (const [name, f] of Object.entries(r.wasm_floor ?? {})) {
    out.push(`- ${name}: wasm floor ${fmt(f)}, the ratchet ${r.ratchet_vs_wasm_floor[name].toFixed(2)}x its floor`);
  }
}
if (r.seeker) {
  const s = r.seeker;
  const kb = (b) => `${(b / 1000).toFixed(1)} kB`;
  out.push(
    "",
    `Seeker page to the first message sent: ${kb(s.total_bytes)} in total (HTTP ${kb(s.http_bytes)}, WebSocket ${kb(s.websocket.sent)} sent + ${kb(s.websocket.received)} received in ${s.websocket.frames} frames), ${s.seconds.toFixed(1)} s.`,
    `By type: ${Object.entries(s.http_by_type)
      .map(([t, b]) => `${t} ${kb(b)}`)
      .join(", ")}.`,
  );
}
console.log(out.join("\n"));
