//! `cargo bench --bench kernels [-- FILTER [ROUNDS]]`: Graft's training kernels timed one at
//! a time at EfficientNet-Lite0's shapes (`graft::engine::kernel_timing`), every case whose
//! name contains FILTER, ROUNDS runs each (default 15). Run it with the benchmarks' malloc
//! settings (docs/BENCHMARKS.md):
//!
//!     MALLOC_MMAP_THRESHOLD_=10000000000 MALLOC_TRIM_THRESHOLD_=10000000000 \
//!         cargo bench --bench kernels -- "1x1 backward"

fn main() {
    // `cargo bench` passes `--bench` to a bench without libtest's harness; skip flags.
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let filter = args.next().unwrap_or_default();
    let rounds = args.next().and_then(|r| r.parse().ok()).unwrap_or(15);
    graft::engine::kernel_timing::run(&filter, rounds);
}
