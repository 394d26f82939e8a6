//! Per-op timing of forward passes, for finding where inference time goes, and of Graft's
//! own training ops' backward passes (`graft train` prints the table at its end).
//! `GRAFT_PROFILE=1` makes every step wait for its result and adds its time to a table that
//! [`report`] prints (slower overall: the waits stop asynchronous backends overlapping work);
//! `GRAFT_PROFILE=nodes` times each node apart, with its output's shape (which layers of a
//! kind are slow: a convolution's GMAC/s follows from its shapes). Each row also gives the
//! median call: in training the odd step pays the kernel's first touch of fresh pages (up to
//! 0.6 s for one batch norm pass that takes 20 ms), and sums alone overstated such ops.

use super::{Step, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Per op: each call's seconds.
static TABLE: Mutex<Option<HashMap<String, Vec<f64>>>> = Mutex::new(None);
/// What [`leave_out`] last left out of the table.
static LEFT_OUT: Mutex<Option<&'static str>> = Mutex::new(None);

pub fn enabled() -> bool {
    std::env::var_os("GRAFT_PROFILE").is_some()
}

/// `step`'s time since `started` into the table; `fused`: a 1x1 + depthwise pair run as one
/// step (`exec::run_pair`).
pub(crate) fn record(step: &Step, outs: &[Value], started: Instant, fused: bool) {
    if let Some(v) = outs.first() {
        // Wait for the device to finish the op.
        let _ = v.device().sync();
    }
    let key = match &step.op {
        _ if by_node() => format!(
            "{} {} {:?}",
            step.node,
            step.op.onnx_type(),
            outs.first().map(Value::dims).unwrap_or_default()
        ),
        _ if fused => "Conv 1x1 + depthwise (fused)".to_string(),
        _ if !step.parts.is_empty() => "Concat + its convolutions (in place)".to_string(),
        crate::graph::Op::Conv(c) if c.groups > 1 => "Conv (depthwise/grouped)".to_string(),
        crate::graph::Op::Conv(c) if c.strides == [1, 1] && step.inputs.len() > 1 => {
            "Conv".to_string()
        }
        op => op.onnx_type().to_string(),
    };
    add(key, started);
}

fn by_node() -> bool {
    std::env::var_os("GRAFT_PROFILE").is_some_and(|v| v == "nodes")
}

fn add(key: String, started: Instant) {
    let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    t.get_or_insert_with(HashMap::new)
        .entry(key)
        .or_default()
        .push(started.elapsed().as_secs_f64());
}

/// `f`, timed into the table as `what` (with `dims` under `GRAFT_PROFILE=nodes`) when
/// profiling: a training op's pass, which no plan step wraps (CPU kernels: no device wait).
pub(crate) fn time<R>(what: &str, dims: &[usize], f: impl FnOnce() -> R) -> R {
    if !enabled() {
        return f();
    }
    let started = Instant::now();
    let r = f();
    let key = match by_node() {
        true => format!("{what} {dims:?}"),
        false => what.to_string(),
    };
    add(key, started);
    r
}

/// Empties the table, and has [`report`] say that `what` was left out. Training leaves out
/// the first epoch of a run when more follow (`train::trainer`): its steps also pay the
/// kernel's first touch of the memory (seconds, where the host has taken back the machine's
/// free pages), which swamped the ops' own times.
pub fn leave_out(what: &'static str) {
    if enabled() {
        let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
        *t = Some(HashMap::new());
        *LEFT_OUT.lock().unwrap_or_else(|e| e.into_inner()) = Some(what);
    }
}

/// The table so far, slowest op first, then cleared.
pub fn report() -> String {
    let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let mut rows: Vec<(String, Row)> = t
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|(op, calls)| (op, Row::new(calls)))
        .collect();
    rows.sort_by(|a, b| b.1.seconds.total_cmp(&a.1.seconds));
    let total: f64 = rows.iter().map(|r| r.1.seconds).sum();
    let mut out = match LEFT_OUT.lock().unwrap_or_else(|e| e.into_inner()).take() {
        Some(what) => format!("(without {what})\n"),
        None => String::new(),
    };
    out.push_str(&format!(
        "{:<28} {:>7} {:>10} {:>6} {:>10}\n",
        "op", "calls", "seconds", "share", "median ms"
    ));
    for (op, r) in rows {
        out.push_str(&format!(
            "{op:<28} {:>7} {:>10.3} {:>5.1}% {:>10.3}\n",
            r.calls,
            r.seconds,
            100.0 * r.seconds / total.max(1e-9),
            r.median * 1e3
        ));
    }
    out
}

/// One op's row of the table.
struct Row {
    calls: usize,
    seconds: f64,
    /// The median call's seconds.
    median: f64,
}

impl Row {
    fn new(mut calls: Vec<f64>) -> Self {
        calls.sort_by(f64::total_cmp);
        Row {
            calls: calls.len(),
            seconds: calls.iter().sum(),
            median: calls.get(calls.len() / 2).copied().unwrap_or(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Row;

    /// One slow call moves the sum, not the median.
    #[test]
    fn a_row_gives_the_median_call_beside_the_sum() {
        let r = Row::new(vec![0.020, 0.600, 0.019, 0.021, 0.018]);
        assert_eq!(r.calls, 5);
        assert!((r.seconds - 0.678).abs() < 1e-9);
        assert_eq!(r.median, 0.020);
    }
}
