//! Long files decoded once, not once per clip: a long recording cut into windows gives
//! hundreds of clips, and each clip used to decode and resample the whole file (a 10-minute
//! file cut every 0.5 s was 1,200 decodes of 10 minutes). The loader's threads share these
//! decoded files, least recently used dropped past a memory budget.

use super::decode::{self, AudioError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Memory kept for decoded long files: 256 MB is 70 minutes of sound at 16 kHz.
pub const BUDGET_BYTES: usize = 256 << 20;

type Decoded = Arc<OnceLock<Result<Arc<Vec<f32>>, AudioError>>>;

/// Decoded files at one rate, shared by threads. Two threads asking for the same file at once
/// decode it once: the second waits for the first.
pub struct LongFiles {
    budget: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    files: HashMap<PathBuf, (Decoded, u64)>,
    /// Bytes of the decoded files held.
    bytes: usize,
    clock: u64,
}

impl Default for LongFiles {
    fn default() -> Self {
        Self::with_budget(BUDGET_BYTES)
    }
}

impl LongFiles {
    pub fn with_budget(budget: usize) -> Self {
        LongFiles {
            budget,
            state: Mutex::default(),
        }
    }

    /// `path` decoded and resampled to `rate` (`decode::load`), from memory when held.
    pub fn load(&self, path: &Path, rate: u32) -> Result<Arc<Vec<f32>>, AudioError> {
        let cell = {
            let mut s = self.lock();
            s.clock += 1;
            let now = s.clock;
            let entry = s
                .files
                .entry(path.to_path_buf())
                .or_insert_with(|| (Decoded::default(), now));
            entry.1 = now;
            entry.0.clone()
        };
        let mut fresh = false;
        let got = cell
            .get_or_init(|| {
                fresh = true;
                decode::load(path, rate).map(Arc::new)
            })
            .clone();
        if fresh {
            let mut s = self.lock();
            match &got {
                Ok(samples) => {
                    s.bytes += samples.len() * std::mem::size_of::<f32>();
                    self.evict(&mut s, path);
                }
                // A failure is not kept: the next ask tries again (and reports again).
                Err(_) => {
                    s.files.remove(path);
                }
            }
        }
        got
    }

    /// Bytes of decoded sound held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops least recently used files (never `keep`, just loaded) until within budget.
    fn evict(&self, s: &mut State, keep: &Path) {
        while s.bytes > self.budget {
            let oldest = s
                .files
                .iter()
                .filter(|(p, (cell, _))| p.as_path() != keep && cell.get().is_some())
                .min_by_key(|(_, (_, used))| *used)
                .map(|(p, _)| p.clone());
            let Some(p) = oldest else { break };
            if let Some((cell, _)) = s.files.remove(&p)
                && let Some(Ok(samples)) = cell.get()
            {
                s.bytes -= samples.len() * std::mem::size_of::<f32>();
            }
        }
    }
}
