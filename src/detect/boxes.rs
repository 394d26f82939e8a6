//! Axis-aligned boxes in pixels and the overlap measures detection uses.

use serde::{Deserialize, Serialize};

/// A box by its corners, in pixels of its image: `x0 ≤ x1`, `y0 ≤ y1`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl BBox {
    pub fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        Self { x0, y0, x1, y1 }
    }

    /// From a centre and a size (YOLO's convention).
    pub fn from_centre(cx: f32, cy: f32, w: f32, h: f32) -> Self {
        Self::new(cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
    }

    pub fn width(&self) -> f32 {
        (self.x1 - self.x0).max(0.0)
    }

    pub fn height(&self) -> f32 {
        (self.y1 - self.y0).max(0.0)
    }

    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// The part inside a `width × height` image.
    pub fn clipped(&self, width: f32, height: f32) -> Self {
        Self::new(
            self.x0.clamp(0.0, width),
            self.y0.clamp(0.0, height),
            self.x1.clamp(0.0, width),
            self.y1.clamp(0.0, height),
        )
    }

    fn intersection(&self, o: &BBox) -> f32 {
        let w = (self.x1.min(o.x1) - self.x0.max(o.x0)).max(0.0);
        let h = (self.y1.min(o.y1) - self.y0.max(o.y0)).max(0.0);
        w * h
    }

    /// Intersection over union; 0 for two empty boxes.
    pub fn iou(&self, o: &BBox) -> f32 {
        let inter = self.intersection(o);
        let union = self.area() + o.area() - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }

    /// Generalised IoU (Rezatofighi et al. 2019): IoU minus the share of the smallest
    /// enclosing box that neither box covers; in [-1, 1], informative also without overlap.
    pub fn giou(&self, o: &BBox) -> f32 {
        let inter = self.intersection(o);
        let union = self.area() + o.area() - inter;
        let hull =
            (self.x1.max(o.x1) - self.x0.min(o.x0)) * (self.y1.max(o.y1) - self.y0.min(o.y0));
        if union <= 0.0 || hull <= 0.0 {
            return 0.0;
        }
        inter / union - (hull - union) / hull
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_and_giou_of_worked_cases() {
        let a = BBox::new(0.0, 0.0, 2.0, 2.0);
        // Half overlapping: intersection 2, union 6.
        let b = BBox::new(1.0, 0.0, 3.0, 2.0);
        assert!((a.iou(&b) - 1.0 / 3.0).abs() < 1e-6);
        // Enclosing box 3×2 = 6 = union: GIoU = IoU.
        assert!((a.giou(&b) - 1.0 / 3.0).abs() < 1e-6);
        // Apart by 2: IoU 0, hull 6×2 = 12, union 8: GIoU = −4/12.
        let c = BBox::new(4.0, 0.0, 6.0, 2.0);
        assert_eq!(a.iou(&c), 0.0);
        assert!((a.giou(&c) + 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(BBox::from_centre(1.0, 1.0, 2.0, 2.0), a);
        assert_eq!(
            BBox::new(-1.0, 1.0, 5.0, 9.0).clipped(4.0, 4.0),
            BBox::new(0.0, 1.0, 4.0, 4.0)
        );
    }
}
