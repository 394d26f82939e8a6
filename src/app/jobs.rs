//! Work that takes more than a frame runs on its own thread; the UI polls for the result once
//! per frame and shows the progress.

use crossbeam_channel::{Receiver, TryRecvError, bounded};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Shared between a job and the UI.
#[derive(Default)]
pub struct Progress {
    done: AtomicUsize,
    total: AtomicUsize,
    cancel: AtomicBool,
    /// Bytes (or items) per second, as f64 bits; 0 when unknown.
    rate: std::sync::atomic::AtomicU64,
}

impl Progress {
    pub fn set(&self, done: usize, total: usize) {
        self.done.store(done, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    /// Fraction done, `None` while the total is unknown.
    pub fn fraction(&self) -> Option<f32> {
        let total = self.total.load(Ordering::Relaxed);
        (total > 0).then(|| self.done.load(Ordering::Relaxed) as f32 / total as f32)
    }

    pub fn set_rate(&self, per_s: f64) {
        self.rate.store(per_s.to_bits(), Ordering::Relaxed);
    }

    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::Relaxed))
    }

    pub fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }
}

pub struct Job<T> {
    pub label: String,
    pub progress: Arc<Progress>,
    rx: Receiver<Result<T, String>>,
}

impl<T: Send + 'static> Job<T> {
    /// Runs `work` on a new thread; `ctx` is asked to repaint when it ends.
    pub fn spawn(
        label: impl Into<String>,
        ctx: &egui::Context,
        work: impl FnOnce(&Progress) -> Result<T, String> + Send + 'static,
    ) -> Self {
        let (tx, rx) = bounded(1);
        let progress = Arc::new(Progress::default());
        let p = progress.clone();
        let ctx = ctx.clone();
        let label = label.into();
        let name = format!("graft-{}", label.to_lowercase().replace(' ', "-"));
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            crate::priority::lower_current_thread();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&p)))
                .unwrap_or_else(|_| Err("internal error (see the terminal)".into()));
            let _ = tx.send(result);
            ctx.request_repaint();
        });
        let (tx2, rx2) = bounded(1);
        let rx = match spawned {
            Ok(_) => rx,
            Err(e) => {
                let _ = tx2.send(Err(format!("cannot start a thread: {e}")));
                rx2
            }
        };
        Job {
            label,
            progress,
            rx,
        }
    }

    /// The result, once the job has ended.
    pub fn poll(&self) -> Option<Result<T, String>> {
        match self.rx.try_recv() {
            Ok(r) => Some(r),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err("the job ended without a result".into())),
        }
    }
}

/// Polls an optional job slot: returns the result and empties the slot when done.
pub fn take<T: Send + 'static>(slot: &mut Option<Job<T>>) -> Option<Result<T, String>> {
    let r = slot.as_ref()?.poll()?;
    *slot = None;
    Some(r)
}
