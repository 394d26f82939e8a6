//! The network IR: nodes, their ops and attributes, the values between them, per-node freeze
//! state and learn-rate factors. Plain data: it can be printed, diffed, saved as RON and
//! tested without burn, egui or protobuf.

pub mod analyze;
pub mod blocks;
pub mod edit;
mod elementwise;
mod op;
mod op_shapes;
pub mod shape;
mod shape_math;

pub use elementwise::{Binary, Nary, Reduce, Unary};
pub use op::{Conv, Op, PadMode, Pool, ResizeMode};
pub use op_shapes::resized;
pub use shape_math::{broadcast, matmul_shape, norm_axis, reshape_shape, slice_range, window_out};

use serde::{Deserialize, Serialize};

/// A network: one image input, a list of nodes in execution (topological) order, outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub input: Input,
    pub outputs: Vec<String>,
    pub nodes: Vec<Node>,
    pub metadata: Metadata,
}

/// The image input. With `free_batch` (image networks), `shape[0]` is the batch: free at run
/// time, whatever the file said.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Input {
    pub name: String,
    pub shape: Vec<usize>,
    #[serde(default = "yes")]
    pub free_batch: bool,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The name the file gave the node (`/features/features.3/conv/0/Conv`); unique.
    pub name: String,
    pub op: Op,
    /// Value names; an empty string is an absent optional input.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// A frozen node's parameters get no gradient and are never updated.
    #[serde(default)]
    pub frozen: bool,
    /// Multiplies the learning rate for this node's parameters; 0 means frozen.
    #[serde(default = "one")]
    pub lr_factor: f32,
}

fn one() -> f32 {
    1.0
}

impl Node {
    pub fn new(name: impl Into<String>, op: Op, inputs: Vec<String>, outputs: Vec<String>) -> Self {
        Self {
            name: name.into(),
            op,
            inputs,
            outputs,
            frozen: false,
            lr_factor: 1.0,
        }
    }

    /// Frozen, or a learn-rate factor of 0: the two mean the same.
    pub fn is_frozen(&self) -> bool {
        self.frozen || self.lr_factor == 0.0
    }

    /// Present inputs (absent optional inputs skipped).
    pub fn present_inputs(&self) -> impl Iterator<Item = &str> {
        self.inputs
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// What a file says about how to use the network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Class names, index = output position.
    pub labels: Vec<String>,
    pub preprocess: Option<Preprocess>,
    pub producer: String,
    pub opset: i64,
    pub doc: String,
    /// Other `metadata_props`, kept for export.
    pub extra: Vec<(String, String)>,
    /// What import changed about the file that a user should know (float16 computed and
    /// exported as float32, a channels-last input fed channels-first).
    #[serde(default)]
    pub notes: Vec<String>,
    /// The file leaves the image's height and width open (`N×3×?×?`): the network was built
    /// at a chosen side and can be rebuilt at another.
    #[serde(default)]
    pub open_image_size: bool,
}

/// How an image becomes the network's input: resize the shorter side to `resize`, crop the
/// centre `crop` square, scale pixels to [0, 1], subtract `mean`, divide by `std` (both per
/// R, G, B), and feed the channels in B, G, R order when `bgr` (Caffe-era networks).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    pub resize: usize,
    pub crop: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    #[serde(default)]
    pub bgr: bool,
}

impl Preprocess {
    /// torchvision's ImageNet convention, the default when a file says nothing.
    pub fn imagenet(crop: usize) -> Self {
        Self {
            resize: crop * 256 / 224,
            crop,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            bgr: false,
        }
    }
}

impl Network {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The node producing a value, if any (the input and weights have none).
    pub fn producer(&self, value: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.outputs.iter().any(|o| o == value))
    }

    /// Indices of the nodes reading a value.
    pub fn consumers(&self, value: &str) -> Vec<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.inputs.iter().any(|i| i == value))
            .map(|(i, _)| i)
            .collect()
    }

    /// Nodes that cannot run.
    pub fn unsupported(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| !n.op.is_supported())
    }

    /// The preprocessing to apply, from the file or the ImageNet default for the input size.
    pub fn preprocess(&self) -> Preprocess {
        self.metadata.preprocess.clone().unwrap_or_else(|| {
            Preprocess::imagenet(self.input.shape.get(2).copied().unwrap_or(224))
        })
    }

    /// The one preprocessing policy every caller (train, evaluate, predict, verify, the
    /// window) uses: the file's preprocessing (or ImageNet's), with the crop set to the
    /// network's input size and the resize scaled with it, so that a file whose metadata says
    /// "crop 224" but whose input is 260×260 still gets the same framing. Also returns the
    /// input's channels and side; an input that is not a square N×C×H×W image is an error.
    pub fn input_preprocess(&self) -> Result<(Preprocess, [usize; 3]), String> {
        let [c, h, w] = self
            .input_chw()
            .ok_or("this needs an N×C×H×W image network")?;
        if h != w {
            return Err(format!(
                "the network takes {c}×{h}×{w}; Graft feeds square images"
            ));
        }
        let mut p = self.preprocess();
        if p.crop != h {
            p.resize = p.resize * h / p.crop.max(1);
            p.crop = h;
        }
        Ok((p, [c, h, w]))
    }

    /// Whether the first output is a Softmax's, so the network already gives probabilities.
    pub fn ends_in_softmax(&self) -> bool {
        self.outputs
            .first()
            .and_then(|o| self.producer(o))
            .is_some_and(|i| matches!(self.nodes[i].op, Op::Softmax { .. }))
    }

    /// Number of channels, height and width of the image input.
    pub fn input_chw(&self) -> Option<[usize; 3]> {
        match self.input.shape.as_slice() {
            [_, c, h, w] => Some([*c, *h, *w]),
            _ => None,
        }
    }
}
