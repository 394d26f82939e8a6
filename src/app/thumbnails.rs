//! Thumbnails made when they come on screen: the Data tab asks each frame for the samples it
//! shows, worker threads make the missing ones (newest wish first, so a fast scroll does not
//! wait behind rows already gone), and the frame uploads a few finished ones at a time. A
//! 50,000-image folder costs what is on screen, not what is on disk.

use crate::data::{Dataset, Media, Sample};
use crossbeam_channel::{Receiver, Sender, unbounded};
use egui::{ColorImage, TextureHandle};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

/// Thumbnails kept as textures at most; beyond it the ones asked for longest ago go.
const KEEP: usize = 1500;
/// Finished thumbnails uploaded per frame (each is a texture upload on the UI thread).
const UPLOADS_PER_FRAME: usize = 48;

/// How one sample becomes a picture (an image's thumbnail, a clip's spectrogram).
type Make = dyn Fn(&Sample) -> Option<ColorImage> + Send + Sync;

/// What the workers share with the panel: the wish list and whether to stop.
#[derive(Default)]
struct Wishes {
    /// Sample indices still wanted, newest last (workers take from the end).
    wanted: Vec<(usize, Sample)>,
    closed: bool,
}

/// A thumbnail, or the mark that its file did not decode.
enum Thumb {
    Ready(TextureHandle),
    Failed,
}

/// The thumbnails of one dataset's samples, keyed by their index in `Dataset::samples`.
pub struct Thumbnails {
    shared: Arc<(Mutex<Wishes>, Condvar)>,
    done: Receiver<(usize, Option<ColorImage>)>,
    /// Made so far, with the frame each was last asked for.
    made: HashMap<usize, (Thumb, u64)>,
    /// Asked of the workers and not yet back.
    asked: std::collections::HashSet<usize>,
    frame: u64,
    /// This frame's wishes, in the order they were asked for.
    this_frame: Vec<(usize, Sample)>,
    ctx: egui::Context,
}

impl Thumbnails {
    /// Starts the workers for `dataset`'s samples: `side`-pixel image thumbnails, or the
    /// clips' spectrograms for a sound dataset.
    pub fn new(ctx: &egui::Context, dataset: &Dataset, side: u32) -> Self {
        let make: Arc<Make> = match &dataset.media {
            Media::Images => {
                Arc::new(move |s: &Sample| super::data_panel::thumbnail(&s.path, side))
            }
            Media::Sounds(a) => {
                let a = a.clone();
                Arc::new(move |s: &Sample| super::sound_panel::spectrogram_thumbnail(s, &a))
            }
        };
        let shared = Arc::new((Mutex::new(Wishes::default()), Condvar::new()));
        let (tx, rx) = unbounded();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        for _ in 0..workers {
            let (shared, tx, make, ctx) = (shared.clone(), tx.clone(), make.clone(), ctx.clone());
            let spawned = std::thread::Builder::new()
                .name("graft-thumbnails".into())
                .spawn(move || work(&shared, &tx, &*make, &ctx));
            if spawned.is_err() {
                break; // Fewer workers; the ones running still serve every wish.
            }
        }
        Thumbnails {
            shared,
            done: rx,
            made: HashMap::new(),
            asked: Default::default(),
            frame: 0,
            this_frame: Vec::new(),
            ctx: ctx.clone(),
        }
    }

    /// The thumbnail of sample `index` if it is ready; otherwise it is wished for (this frame).
    /// `Err(())` when its file did not decode.
    pub fn get(&mut self, index: usize, sample: &Sample) -> Result<Option<&TextureHandle>, ()> {
        let frame = self.frame;
        match self.made.get_mut(&index) {
            Some((thumb, seen)) => {
                *seen = frame;
                match thumb {
                    Thumb::Ready(t) => Ok(Some(t)),
                    Thumb::Failed => Err(()),
                }
            }
            None => {
                if self.this_frame.is_empty() {
                    // The wishes go out at the next frame's start: make sure there is one.
                    self.ctx.request_repaint();
                }
                self.this_frame.push((index, sample.clone()));
                Ok(None)
            }
        }
    }

    /// Once per frame, before the panel asks: uploads finished thumbnails, hands the workers
    /// last frame's wishes (replacing older ones, which are off screen now) and forgets the
    /// least recently shown beyond [`KEEP`].
    pub fn begin_frame(&mut self, ctx: &egui::Context) {
        for (index, image) in self.done.try_iter().take(UPLOADS_PER_FRAME) {
            self.asked.remove(&index);
            let thumb = match image {
                Some(img) => Thumb::Ready(ctx.load_texture(
                    format!("thumb-{index}"),
                    img,
                    egui::TextureOptions::LINEAR,
                )),
                None => Thumb::Failed,
            };
            self.made.insert(index, (thumb, self.frame));
        }
        if !self.this_frame.is_empty() || !self.asked.is_empty() {
            let (lock, wake) = &*self.shared;
            if let Ok(mut w) = lock.lock() {
                // Wishes no worker reached are replaced by last frame's: what is on screen now.
                for (i, _) in w.wanted.drain(..) {
                    self.asked.remove(&i);
                }
                // `asked` now holds what workers are making. They take from the end: the
                // first-asked (top of the screen) go last.
                for wish in self.this_frame.drain(..).rev() {
                    if self.asked.insert(wish.0) {
                        w.wanted.push(wish);
                    }
                }
                wake.notify_all();
            }
        }
        if self.made.len() > KEEP {
            let mut by_age: Vec<(u64, usize)> =
                self.made.iter().map(|(&i, &(_, seen))| (seen, i)).collect();
            by_age.sort_unstable();
            for (_, i) in by_age.into_iter().take(self.made.len() - KEEP) {
                self.made.remove(&i);
            }
        }
        self.frame += 1;
        if !self.done.is_empty() {
            ctx.request_repaint(); // More finished than one frame uploads.
        }
    }

    /// Thumbnails made and kept.
    pub fn kept(&self) -> usize {
        self.made.len()
    }
}

impl Drop for Thumbnails {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        if let Ok(mut w) = lock.lock() {
            w.closed = true;
            w.wanted.clear();
        }
        wake.notify_all();
    }
}

/// A worker: takes the newest wish, makes it, sends it back, until the panel closes.
fn work(
    shared: &(Mutex<Wishes>, Condvar),
    tx: &Sender<(usize, Option<ColorImage>)>,
    make: &Make,
    ctx: &egui::Context,
) {
    crate::priority::lower_current_thread();
    let (lock, wake) = shared;
    loop {
        let wish = {
            let Ok(mut w) = lock.lock() else { return };
            loop {
                if w.closed {
                    return;
                }
                if let Some(wish) = w.wanted.pop() {
                    break wish;
                }
                w = match wake.wait(w) {
                    Ok(w) => w,
                    Err(_) => return,
                };
            }
        };
        let image = make(&wish.1);
        if tx.send((wish.0, image)).is_err() {
            return;
        }
        ctx.request_repaint();
    }
}
