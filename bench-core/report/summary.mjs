// Summarises scripts/bench-core's runs: for every operation the median (over
// the runs) of criterion's per-run median, with the spread (min..max over
// the runs); the ratchet's primitive floor (floors.mjs) and the ratios the
// targets are stated in.
// Writes <dir>/core.json and prints a Markdown table.
//
//   node bench-core/report/summary.mjs target/bench 3
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { floorOf, median } from "./floors.mjs";

const [dir, runsArg] = process.argv.slice(2);
const runs = Number(runsArg ?? 3);

const samples = {}; // name -> [ns per run]
const loads = [];
for (let r = 1; r <= runs; r++) {
  const rd = path.join(dir, `core-run-${r}`);
  if (!existsSync(rd)) continue;
  if (existsSync(path.join(rd, "loadavg"))) loads.push(readFileSync(path.join(rd, "loadavg"), "utf8").trim().split(": ")[1]);
  for (const f of readdirSync(rd).filter((f) => f.endsWith(".json"))) {
    const name = f.slice(0, -5).replace("__", "/");
    const est = JSON.parse(readFileSync(path.join(rd, f), "utf8"));
    (samples[name] ??= []).push(est.median.point_estimate);
  }
}

const ops = {};
for (const [name, xs] of Object.entries(samples)) {
  ops[name] = { median_ns: median(xs), min_ns: Math.min(...xs), max_ns: Math.max(...xs), runs: xs.length };
}

const floor = floorOf((name) => ops[name]?.median_ns);

const us = (ns) => (ns / 1000).toFixed(ns < 10_000 ? 2 : 1);
const fmt = (ns) => (ns >= 1e6 ? `${(ns / 1e6).toFixed(1)} ms` : `${us(ns)} µs`);
const spread = (o) => `${fmt(o.min_ns)} – ${fmt(o.max_ns)}`;
const lines = ["| operation | median | spread (runs) | notes |", "| --- | --- | --- | --- |"];
for (const [name, o] of Object.entries(ops).sort()) {
  let note = "";
  if (floor[name]) note = `floor ${fmt(floor[name])}, ${(o.median_ns / floor[name]).toFixed(2)}x the floor`;
  lines.push(`| ${name} | ${fmt(o.median_ns)} | ${spread(o)} (${o.runs}) | ${note} |`);
}
const ratio = (a, b) => (ops[a] && ops[b] ? ops[a].median_ns / ops[b].median_ns : null);
const ratios = {
  same_direction_vs_olm: ratio("core/ratchet_1k_same_direction", "peer/olm_1k_same_direction"),
  alternating_vs_olm: ratio("core/ratchet_1k_alternating", "peer/olm_1k_alternating"),
  setup_vs_olm: ratio("core/pqxdh_setup", "peer/olm_session_create"),
};
lines.push("");
for (const [k, v] of Object.entries(ratios)) if (v !== null) lines.push(`- ${k}: ${v.toFixed(2)}x`);
lines.push(`- load average after each run: ${loads.join(" | ")}`);
writeFileSync(path.join(dir, "core.json"), JSON.stringify({ ops, floor, ratios, loads }, null, 2));
console.log(lines.join("\n"));
