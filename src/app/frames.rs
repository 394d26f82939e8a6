//! Frame times, to show in the status bar and to measure the UI staying smooth while training.

use std::collections::VecDeque;

/// The last few seconds of frame times, and every frame of the current training run.
#[derive(Default)]
pub struct FrameStats {
    pub recent: VecDeque<f32>,
    pub during_training: Vec<f32>,
}

impl FrameStats {
    /// How many recent frames the status bar's p95 covers (~4 s at 60 Hz).
    const RECENT: usize = 240;

    pub fn push(&mut self, ms: f32, training: bool) {
        self.recent.push_back(ms);
        if self.recent.len() > Self::RECENT {
            self.recent.pop_front();
        }
        if training {
            self.during_training.push(ms);
        }
    }

    /// The 95th percentile (nearest rank below); 0 for no frames.
    pub fn p95(values: &[f32]) -> f32 {
        if values.is_empty() {
            return 0.0;
        }
        let mut v = values.to_vec();
        v.sort_by(f32::total_cmp);
        v[((v.len() as f32 * 0.95) as usize).min(v.len() - 1)]
    }

    pub fn recent_p95(&self) -> f32 {
        Self::p95(&self.recent.iter().copied().collect::<Vec<_>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_of_a_hundred_frames_is_the_96th_smallest() {
        let v: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        assert_eq!(FrameStats::p95(&v), 96.0);
        assert_eq!(FrameStats::p95(&[]), 0.0);
        assert_eq!(FrameStats::p95(&[3.0]), 3.0);
    }

    #[test]
    fn recent_frames_are_bounded_and_training_frames_kept() {
        let mut f = FrameStats::default();
        for i in 0..1000 {
            f.push(i as f32, i % 2 == 0);
        }
        assert_eq!(f.recent.len(), FrameStats::RECENT);
        assert_eq!(f.during_training.len(), 500);
    }
}
