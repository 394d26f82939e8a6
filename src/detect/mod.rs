//! Object detection (issue 10), built up in parts. So far: boxes and their overlap measures
//! ([`boxes`]), box datasets in the YOLO, COCO and Pascal VOC layouts ([`dataset`]), average
//! precision by the VOC and COCO definitions ([`ap`]), anchor boxes by k-means on IoU
//! ([`anchors`]), and the input view with its boxes: letterbox or stretch, seeded
//! augmentation that moves the boxes with the pixels ([`transform`]); what the head's
//! prediction map means, decoded to boxes with non-maximum suppression and encoded from true
//! boxes as training targets ([`yolo`]); the loss on burn tensors ([`loss`]); results on
//! labelled images as AP and per-image mistakes ([`evaluate`]). The head itself is a graph
//! edit (`graph::edit::Edit::AddDetectionHead`); training runs in the same `train::Session`
//! as classification (a box dataset is a `data::Dataset` of `Task::Detect`).

pub mod anchors;
pub mod ap;
pub mod boxes;
pub mod dataset;
pub mod evaluate;
pub mod loss;
pub mod predict;
pub mod transform;
pub mod yolo;

pub use boxes::BBox;
