//! Timing exports for the benchmarks (feature `bench`; the served module is
//! built without it). The page prepares an operation of
//! `northstar_bench_core::OPERATIONS` — the very code the native criterion benches
//! time — and times `run(n)` with `performance.now()` around it
//! (tests/browser/bench.js, run by scripts/bench-wasm).

use core::fmt;

use js_sys::Array;
use wasm_bindgen::prelude::*;

/// One prepared operation.
#[wasm_bindgen]
pub struct BenchOperation {
    op: northstar_bench_core::Operation,
}

impl fmt::Debug for BenchOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BenchOperation(..)")
    }
}

#[wasm_bindgen]
impl BenchOperation {
    /// Prepares operation `name` (keys, sessions, inputs; not timed).
    #[wasm_bindgen(constructor)]
    pub fn new(name: &str) -> Result<BenchOperation, JsValue> {
        northstar_bench_core::prepare(name)
            .map(|op| BenchOperation { op })
            .ok_or_else(|| JsValue::from_str(&format!("unknown operation {name}")))
    }

    /// Runs the operation `n` times.
    pub fn run(&mut self, n: u32) {
        for _ in 0..n {
            (self.op)();
        }
    }

    /// Whether the operation takes hundreds of milliseconds (time fewer runs).
    pub fn slow(name: &str) -> bool {
        northstar_bench_core::is_slow(name)
    }
}

/// Every operation's name.
#[wasm_bindgen]
pub fn bench_operations() -> Array {
    northstar_bench_core::OPERATIONS
        .iter()
        .map(|n| JsValue::from_str(n))
        .collect()
}
