//! A training run on its own thread: `Session::start` returns at once; events arrive on a
//! channel; stop, pause and resume are requests the run honours between iterations.

use super::events::TrainEvent;
use super::options::TrainingOptions;
use crate::data::Dataset;
use crate::graph::Network;
use crate::weights::Store;
use crossbeam_channel::{Receiver, Sender, unbounded};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct TrainJob {
    /// A network whose output has one value per class of `train` (see `graph::edit::Edit::AdaptHead`).
    pub network: Network,
    pub store: Store,
    pub train: Dataset,
    pub validation: Option<Dataset>,
    pub options: TrainingOptions,
    /// Where to write a checkpoint at each epoch's end.
    pub checkpoint: Option<PathBuf>,
    /// Continue from `checkpoint` if it exists.
    pub resume: bool,
}

/// Stop / pause / resume requests shared with the run.
#[derive(Default)]
pub struct Control {
    stop: AtomicBool,
    paused: Mutex<bool>,
    wake: Condvar,
}

impl Control {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.resume();
    }

    pub fn pause(&self) {
        *self.paused.lock().unwrap_or_else(|e| e.into_inner()) = true;
    }

    pub fn resume(&self) {
        *self.paused.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.wake.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn is_paused(&self) -> bool {
        *self.paused.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks while paused. Returns true if the run should stop.
    pub(crate) fn wait_if_paused(&self) -> bool {
        let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        while *paused && !self.is_stopped() {
            paused = self.wake.wait(paused).unwrap_or_else(|e| e.into_inner());
        }
        self.is_stopped()
    }
}

/// Called after every event, e.g. to ask a UI to repaint.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Sends events and wakes the listener.
#[derive(Clone)]
pub(crate) struct Reporter {
    tx: Sender<TrainEvent>,
    waker: Option<Waker>,
}

impl Reporter {
    pub(crate) fn send(&self, event: TrainEvent) {
        // A listener that went away is not an error for the run.
        let _ = self.tx.send(event);
        if let Some(w) = &self.waker {
            w();
        }
    }

    pub(crate) fn message(&self, text: impl Into<String>) {
        self.send(TrainEvent::Message(text.into()));
    }
}

pub struct Session {
    events: Receiver<TrainEvent>,
    control: Arc<Control>,
    handle: Option<JoinHandle<()>>,
}

impl Session {
    /// Starts the run on a new thread and returns at once.
    pub fn start(job: TrainJob, waker: Option<Waker>) -> Result<Session, String> {
        let (tx, rx) = unbounded();
        let control = Arc::new(Control::default());
        let reporter = Reporter { tx, waker };
        let ctl = control.clone();
        let handle = std::thread::Builder::new()
            .name("graft-train".into())
            .spawn(move || {
                crate::priority::lower_current_thread();
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    super::trainer::run(job, &reporter, &ctl)
                }));
                match result {
                    Ok(Ok(outcome)) => reporter.send(TrainEvent::Finished(Box::new(outcome))),
                    Ok(Err(e)) => reporter.send(TrainEvent::Failed(e)),
                    Err(panic) => {
                        let msg = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "unknown".into());
                        reporter.send(TrainEvent::Failed(format!("internal error: {msg}")));
                    }
                }
            })
            .map_err(|e| format!("cannot start the training thread: {e}"))?;
        Ok(Session {
            events: rx,
            control,
            handle: Some(handle),
        })
    }

    pub fn events(&self) -> &Receiver<TrainEvent> {
        &self.events
    }

    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    pub fn stop(&self) {
        self.control.stop();
    }

    pub fn pause(&self) {
        self.control.pause();
    }

    pub fn resume(&self) {
        self.control.resume();
    }

    /// Whether the run's thread has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Waits for the run's thread.
    pub fn join(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A dropped session stops its run rather than training on unobserved.
        self.control.stop();
    }
}
