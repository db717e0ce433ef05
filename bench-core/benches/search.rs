//! The counselor inbox's search, natively: each keystroke of
//! `northstar_bench_core::search::KEYSTROKES` timed on its own over
//! 10,000 conversations (p50, p99, max), the index built from nothing, a
//! keystroke after a new message, and the index's memory.
//!
//! `cargo bench -p northstar-bench-core --bench search` (scripts/bench-search
//! runs it pinned, then the same operations in wasm in headless Chromium).
//! Prints a summary and writes `target/bench/search-native.json`.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stdout
)]

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    use std::time::Instant;

    use northstar_bench_core::prepare;
    use northstar_bench_core::search::{INBOX_CONVERSATIONS, KEYSTROKES, sample_inbox, text_bytes};
    use northstar_core::client::search::{Inbox, SearchIndex};
    use northstar_core::directory::DeviceId;

    /// Rounds of the whole typing sequence.
    const ROUNDS: usize = 30;

    fn pct(sorted: &[f64], p: f64) -> f64 {
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[i]
    }
    fn time(name: &str, runs: usize) -> Vec<f64> {
        let mut op = prepare(name).expect("known operation");
        op(); // warm up
        let mut v: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                op();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    }
    let summary = |v: &[f64]| {
        serde_like(&[
            ("p50_ms", pct(v, 0.5)),
            ("p99_ms", pct(v, 0.99)),
            ("max_ms", *v.last().unwrap()),
            ("runs", v.len() as f64),
        ])
    };
    fn serde_like(kv: &[(&str, f64)]) -> String {
        let inner: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\": {v:.4}")).collect();
        format!("{{{}}}", inner.join(", "))
    }

    println!(
        "load average before: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let keystroke = time("core/inbox_search_keystroke_10k", ROUNDS * KEYSTROKES.len());
    let build = time("core/inbox_search_index_build_10k", 10);
    let update = time(
        "core/inbox_search_after_new_message_10k",
        ROUNDS * KEYSTROKES.len(),
    );

    let (map, dir) = sample_inbox();
    let mut index = SearchIndex::new();
    index.refresh(Inbox {
        conversations: &map,
        directory: Some(&dir),
        me: Some(DeviceId(1)),
    });
    let raw = text_bytes(&map);
    let folded = index.text_bytes();

    println!("inbox: {INBOX_CONVERSATIONS} conversations, {raw} bytes of messages and notes");
    println!(
        "keystroke (warm index):      p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} keystrokes)",
        pct(&keystroke, 0.5),
        pct(&keystroke, 0.99),
        keystroke.last().unwrap(),
        keystroke.len()
    );
    println!(
        "keystroke after new message: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        pct(&update, 0.5),
        pct(&update, 0.99),
        update.last().unwrap()
    );
    println!(
        "index build from nothing:    p50 {:.2} ms  max {:.2} ms",
        pct(&build, 0.5),
        build.last().unwrap()
    );
    println!(
        "index memory: {folded} bytes of folded text ({} conversations)",
        index.len()
    );
    println!(
        "load average after: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    let json = format!(
        "{{\"conversations\": {INBOX_CONVERSATIONS}, \"text_bytes\": {raw}, \"index_text_bytes\": {folded}, \"keystroke\": {}, \"after_new_message\": {}, \"index_build\": {}}}\n",
        summary(&keystroke),
        summary(&update),
        summary(&build)
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("search-native.json"), json).unwrap();
}

#[cfg(target_arch = "wasm32")]
fn main() {}
