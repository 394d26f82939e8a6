//! Anchor boxes estimated from the training boxes, as YOLO v2 and MATLAB's
//! `estimateAnchorBoxes` do: k-means over (width, height) with the distance 1 − IoU of two
//! boxes sharing a centre, so that big and small boxes weigh alike.

use crate::stats::median;
use rand::SeedableRng;
use rand::distr::{Distribution, weighted::WeightedIndex};
use rand_chacha::ChaCha8Rng;

/// IoU of two boxes with the same centre.
pub fn shape_iou(a: (f32, f32), b: (f32, f32)) -> f32 {
    let inter = a.0.min(b.0) * a.1.min(b.1);
    let union = a.0 * a.1 + b.0 * b.1 - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Every box's (width, height) in a detector's `side`-pixel input, the images fitted into it
/// as training will fit them: anchors live in input pixels.
pub fn input_box_sizes(
    images: &[super::dataset::BoxImage],
    side: usize,
    fit: super::transform::Fit,
) -> Vec<(f32, f32)> {
    images
        .iter()
        .flat_map(|img| {
            let p = super::transform::Placement::fit(img.width, img.height, side, fit);
            img.objects.iter().map(move |o| {
                let b = p.to_output(&o.bbox);
                (b.width(), b.height())
            })
        })
        .collect()
}

/// At most this many boxes (evenly spaced) go into the k-means.
pub const MAX_BOXES: usize = 20_000;

/// Anchors found for a set of boxes.
#[derive(Clone, Debug, PartialEq)]
pub struct Anchors {
    /// (width, height), smallest area first.
    pub sizes: Vec<(f32, f32)>,
    /// Mean over the boxes of the IoU with their best anchor (MATLAB's `meanIoU`).
    pub mean_iou: f32,
}

impl Anchors {
    /// "29×29, 34×34, …" (input pixels, rounded), for reports.
    pub fn list(&self) -> String {
        let sizes: Vec<String> = self
            .sizes
            .iter()
            .map(|(w, h)| format!("{w:.0}×{h:.0}"))
            .collect();
        sizes.join(", ")
    }
}

/// `k` anchors for the box sizes: k-means++ seeding (seeded, so the answer repeats), then
/// Lloyd iterations with the median of each cluster, until the assignment stops changing.
pub fn estimate(sizes: &[(f32, f32)], k: usize, seed: u64) -> Result<Anchors, String> {
    // A big dataset's boxes, evenly thinned: the anchors barely move, the window stays quick.
    let step = sizes.len().div_ceil(MAX_BOXES).max(1);
    let sizes: Vec<(f32, f32)> = sizes
        .iter()
        .step_by(step)
        .copied()
        .filter(|&(w, h)| w > 0.0 && h > 0.0 && w.is_finite() && h.is_finite())
        .collect();
    if k == 0 {
        return Err("asked for 0 anchors".into());
    }
    if sizes.len() < k {
        return Err(format!(
            "{} boxes cannot give {k} anchors; use fewer anchors",
            sizes.len()
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let nearest = |s: (f32, f32), centres: &[(f32, f32)]| {
        centres
            .iter()
            .enumerate()
            .map(|(i, &c)| (i, 1.0 - shape_iou(s, c)))
            .fold((0, f32::INFINITY), |b, x| if x.1 < b.1 { x } else { b })
    };
    // k-means++: each new centre drawn with probability proportional to its distance².
    let first = rand::Rng::random_range(&mut rng, 0..sizes.len());
    let mut centres = vec![sizes[first]];
    while centres.len() < k {
        let weights: Vec<f32> = sizes
            .iter()
            .map(|&s| nearest(s, &centres).1.powi(2))
            .collect();
        let next = match WeightedIndex::new(&weights) {
            Ok(d) => d.sample(&mut rng),
            // Every box already sits on a centre: fewer distinct shapes than anchors.
            Err(_) => return Err(format!("the boxes have fewer than {k} distinct shapes")),
        };
        centres.push(sizes[next]);
    }
    let mut assignment = vec![usize::MAX; sizes.len()];
    for _ in 0..300 {
        let next: Vec<usize> = sizes.iter().map(|&s| nearest(s, &centres).0).collect();
        if next == assignment {
            break;
        }
        assignment = next;
        for (c, centre) in centres.iter_mut().enumerate() {
            let mut ws: Vec<f64> = Vec::new();
            let mut hs: Vec<f64> = Vec::new();
            for (s, _) in sizes.iter().zip(&assignment).filter(|(_, a)| **a == c) {
                ws.push(f64::from(s.0));
                hs.push(f64::from(s.1));
            }
            // (The mean of two middle f32s, taken in f64 and rounded once, is the f32 one.)
            if let (Some(w), Some(h)) = (median(ws), median(hs)) {
                *centre = (w as f32, h as f32);
            }
        }
    }
    centres.sort_by(|a, b| (a.0 * a.1).total_cmp(&(b.0 * b.1)));
    let mean_iou = sizes
        .iter()
        .map(|&s| 1.0 - nearest(s, &centres).1)
        .sum::<f32>()
        / sizes.len() as f32;
    Ok(Anchors {
        sizes: centres,
        mean_iou,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_shapes_give_three_anchors_and_more_anchors_fit_better() {
        // Tall, wide and small boxes, with ±10 % jitter.
        let mut sizes = Vec::new();
        for i in 0..30 {
            let j = 1.0 + ((i * 7) % 11) as f32 / 50.0 - 0.1;
            sizes.push((20.0 * j, 80.0 * j));
            sizes.push((90.0 * j, 30.0 * j));
            sizes.push((10.0 * j, 10.0 * j));
        }
        let a = estimate(&sizes, 3, 1).unwrap();
        let near = |w: f32, h: f32| a.sizes.iter().any(|&s| shape_iou(s, (w, h)) > 0.9);
        assert!(
            near(20.0, 80.0) && near(90.0, 30.0) && near(10.0, 10.0),
            "{a:?}"
        );
        assert!(a.mean_iou > 0.85, "{a:?}");
        // Smallest first.
        assert!(a.sizes[0].0 * a.sizes[0].1 < a.sizes[2].0 * a.sizes[2].1);
        let one = estimate(&sizes, 1, 1).unwrap();
        assert!(one.mean_iou < a.mean_iou);
        // Seeded: the same answer again.
        assert_eq!(estimate(&sizes, 3, 1).unwrap(), a);
    }

    #[test]
    fn too_few_boxes_or_shapes_are_errors() {
        assert!(estimate(&[(1.0, 1.0)], 2, 0).is_err());
        assert!(estimate(&[(1.0, 1.0); 5], 2, 0).is_err());
        assert!(estimate(&[(1.0, 1.0), (0.0, 3.0)], 2, 0).is_err());
        assert!(estimate(&[(1.0, 2.0), (2.0, 1.0)], 0, 0).is_err());
    }
}
