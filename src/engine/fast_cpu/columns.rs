//! Where the columns of a matrix product's output lie when they are the pixels of a batch of
//! images (`Span`), and how a batch's pixels are split into runs for parallel tasks
//! (`Columns`): Graft's matrix kernel (`mm.rs`) writes a run that may go on from one image
//! into the next.

use super::mm::NR;

/// Where the columns of an output block lie: column `j` is pixel `(first + j) % pixels` of
/// image `(first + j) / pixels`, and each image's row 0 starts `image_stride` values after the
/// previous one's. A block that runs over several small images (7x7 maps deep in a network)
/// fills whole strips of [`NR`] columns where one image alone would leave a strip part empty
/// (49 pixels fill 3 strips and 1 column of a fourth), and reuses the filters across images.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub first: usize,
    pub pixels: usize,
    pub image_stride: usize,
}

impl Span {
    /// Columns within one image, from its pixel 0.
    pub const ONE: Span = Span {
        first: 0,
        pixels: usize::MAX,
        image_stride: 0,
    };

    /// Offset in C (from row 0 of the first image) of column `j`'s row 0.
    #[inline(always)]
    pub(super) fn offset(&self, j: usize) -> usize {
        let g = self.first + j;
        (g / self.pixels) * self.image_stride + g % self.pixels
    }

    /// Whether columns `j..j + w` are consecutive in C (within one image).
    #[inline(always)]
    pub(super) fn consecutive(&self, j: usize, w: usize) -> bool {
        let g = self.first + j;
        g % self.pixels + w <= self.pixels
    }
}

/// Where a convolution writes its `[n, co, ohw]` output: image b's first channel at
/// `ptr + b · image_stride`, its planes `ohw` apart. Its own buffer (`image_stride = co ·
/// ohw`), or its channels of a buffer joined along the channels (`Joined`: a Concat's parts
/// written in place).
#[derive(Clone, Copy)]
pub struct Dst {
    ptr: *mut f32,
    pub image_stride: usize,
}

// SAFETY: parallel tasks write disjoint elements through it (each kernel's contract).
unsafe impl Send for Dst {}
unsafe impl Sync for Dst {}

impl Dst {
    /// # Safety
    /// `ptr` is valid for writes of every output value at the offsets above until the
    /// kernel that is handed this returns, and nothing else touches those values meanwhile.
    pub unsafe fn new(ptr: *mut f32, image_stride: usize) -> Self {
        Dst { ptr, image_stride }
    }

    /// A method (not field access) so closures capture the whole `Send` wrapper.
    pub fn ptr(self) -> *mut f32 {
        self.ptr
    }
}

/// `len` values written by `fill` through a [`Dst`] of `image_stride`: a kernel's own output
/// buffer.
///
/// # Safety
/// `fill` writes every one of the `len` values.
pub unsafe fn filled(len: usize, image_stride: usize, fill: impl FnOnce(Dst)) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(len);
    // SAFETY: the buffer holds `len` values; only `fill` writes them.
    fill(unsafe { Dst::new(out.as_mut_ptr(), image_stride) });
    // SAFETY: `fill` wrote all of them, as the caller promises.
    unsafe { out.set_len(len) };
    out
}

/// Output columns of `n` images of `hw` pixels each, split into runs for a parallel loop's
/// tasks: a whole number of strips per run (the last may be shorter), at least two tasks
/// per thread and a multiple of the threads (for balance), about 2,048 columns each at most,
/// 128 at least.
/// Small maps' runs go on from one image into the next (see [`Span`]); large maps' stay
/// within an image, where their planes can be read in place (a run across images is
/// gathered through a buffer first, which costs as much as the product for a 1x1
/// convolution with few output channels).
#[derive(Clone, Copy, Debug)]
pub struct Columns {
    pub tasks: usize,
    tile: usize,
    hw: usize,
    total: usize,
    /// Runs per image when runs stay within images.
    per_image: Option<usize>,
}

impl Columns {
    /// Maps of at least this many pixels are split per image (28x28 is 49 whole strips).
    pub const WHOLE_IMAGES_FROM: usize = 256;

    pub fn new(n: usize, hw: usize) -> Self {
        let threads = rayon::current_num_threads().max(1);
        let total = n * hw;
        let tasks = (2 * threads)
            .max(total.div_ceil(2048))
            .next_multiple_of(threads);
        if hw >= Self::WHOLE_IMAGES_FROM {
            let per_image = tasks.div_ceil(n.max(1));
            let tile = hw.div_ceil(per_image).next_multiple_of(NR);
            let per_image = hw.div_ceil(tile);
            return Columns {
                tasks: n * per_image,
                tile,
                hw,
                total,
                per_image: Some(per_image),
            };
        }
        // Not under 8 strips: every task streams all the filters through cache, which for
        // a batch of one 7x7 image costs more than the sum (callers split the filters'
        // rows instead, `pointwise::row_blocks`).
        let tile = total.div_ceil(tasks).next_multiple_of(NR).max(8 * NR);
        Columns {
            tasks: total.div_ceil(tile).max(1),
            tile,
            hw,
            total,
            per_image: None,
        }
    }

    /// Task `t`'s run: its first column (counted over the batch) and its length.
    pub fn task(&self, t: usize) -> (usize, usize) {
        match self.per_image {
            Some(per) => {
                let (b, j0) = (t / per, (t % per) * self.tile);
                (b * self.hw + j0, self.tile.min(self.hw - j0))
            }
            None => {
                let first = t * self.tile;
                (first, self.tile.min(self.total - first))
            }
        }
    }
}
