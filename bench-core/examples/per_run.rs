//! Each operation's time per single run natively: minimum, 10th percentile
//! and median of one-run timings over 2 s (after 0.5 s of warm-up). A
//! per-run median is hardly moved by other processes sharing the CPU (a
//! preempted run is one slow sample among thousands), where criterion's
//! per-sample means are; for comparisons on a busy machine, beside
//! scripts/bench-wasm's main-thread CPU time.
//!
//!   cargo run --release -p northstar-bench-core --example per_run -- pqxdh setup/ prim/x25519
//!
//! Arguments: substrings of the operation names (none: every operation).
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

fn main() {
    let filters: Vec<String> = std::env::args().skip(1).collect();
    for name in northstar_bench_core::OPERATIONS {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let Some(mut op) = northstar_bench_core::prepare(name) else {
            continue;
        };
        let warm = Instant::now();
        while warm.elapsed() < Duration::from_millis(500) {
            op();
        }
        let mut us = Vec::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) || us.len() < 5 {
            let t = Instant::now();
            op();
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        us.sort_by(f64::total_cmp);
        println!(
            "{name}: min {:.1} µs, p10 {:.1} µs, median {:.1} µs ({} runs)",
            us[0],
            us[us.len() / 10],
            us[us.len() / 2],
            us.len()
        );
    }
}
