//! The frozen-prefix cache: when every node up to a cut is frozen (and no augmentation
//! changes the images), the activations at the cut are the same every epoch, so they are
//! computed once per image and later epochs run only the trainable rest.

use crate::data::folder::{Sample, Skipped};
use crate::data::loader::{Framed, Transform, spawn_batches};
use crate::engine::{Mode, Model, Value, optimize};
use crate::graph::{Input, Network, Node, Op};
use crate::weights::Store;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Disk space a spill file leaves free, so the system and other programs can still write.
/// Not more: a spill is usually tens to hundreds of MB, and a disk with a few GB free (seen on
/// our own CI machines) must still take it rather than train uncached at a tenth of the speed.
const DISK_MARGIN_BYTES: u64 = 256 << 20;

/// At most this many activations may cross a cut: a two-scale detection head reads two (its
/// fine map, and the backbone's stride-32 map); a cut inside a dense block could read many,
/// each a full copy per image.
pub const MAX_CUT_VALUES: usize = 2;

/// Where the network splits: nodes `..=last` form the frozen prefix, `values` are the
/// activations that cross the cut (most often one), in the order a cached row holds them.
#[derive(Clone, Debug, PartialEq)]
pub struct Cut {
    pub last: usize,
    pub values: Vec<String>,
}

/// The input of a head network that reads several cached activations: each row is their
/// values one after another, sliced apart again by the head's first nodes.
pub const CUT_ROWS: &str = "graft_cut/rows";

/// A node whose output does not depend on training: frozen, or without learnable weights,
/// and not random (Dropout).
fn is_fixed(net: &Network, store: &Store, i: usize) -> bool {
    let node = &net.nodes[i];
    if matches!(&node.op, Op::Dropout { ratio } if *ratio > 0.0) {
        return false;
    }
    node.is_frozen()
        || node
            .op
            .learnable_inputs()
            .iter()
            .all(|&k| node.inputs.get(k).is_none_or(|v| !store.contains(v)))
            && !matches!(node.op, Op::BatchNorm { .. })
}

/// The latest cut whose prefix is fixed and holds at least one weighted layer, crossed by at
/// most [`MAX_CUT_VALUES`] activations (none of them an output).
pub fn find_cut(net: &Network, store: &Store) -> Option<Cut> {
    let outputs: HashSet<&str> = net.outputs.iter().map(String::as_str).collect();
    let mut best = None;
    let mut weighted = false;
    for i in 0..net.nodes.len() {
        if !is_fixed(net, store, i) {
            break;
        }
        weighted |= !net.nodes[i].op.learnable_inputs().is_empty();
        // Activations produced so far that later nodes (or outputs) still read.
        let later: HashSet<&str> = net.nodes[i + 1..]
            .iter()
            .flat_map(|n| n.present_inputs())
            .collect();
        let live: Vec<&str> = std::iter::once(net.input.name.as_str())
            .chain(
                net.nodes[..=i]
                    .iter()
                    .flat_map(|n| n.outputs.iter().map(String::as_str)),
            )
            .filter(|v| later.contains(v) || outputs.contains(v))
            .collect();
        if (1..=MAX_CUT_VALUES).contains(&live.len())
            && live.iter().all(|v| !outputs.contains(v))
            && weighted
        {
            best = Some(Cut {
                last: i,
                values: live.iter().map(|v| v.to_string()).collect(),
            });
        }
    }
    best
}

/// The network after the cut, reading the cut activation as its input (`dims`: each cut
/// value's dimensions after the batch). Several values arrive as one row per image
/// ([`CUT_ROWS`]) that Slice and Reshape nodes part again.
pub fn head_network(net: &Network, cut: &Cut, dims: &[Vec<usize>]) -> Network {
    let mut nodes = Vec::new();
    let input = match (cut.values.as_slice(), dims) {
        ([value], [d]) => (value.clone(), d.clone()),
        _ => {
            let mut start = 0i64;
            for (k, (value, d)) in cut.values.iter().zip(dims).enumerate() {
                let len = d.iter().product::<usize>() as i64;
                let flat = format!("graft_cut/flat_{k}");
                nodes.push(Node::new(
                    format!("graft_cut/slice_{k}"),
                    Op::Slice {
                        starts: vec![start],
                        ends: vec![start + len],
                        axes: vec![1],
                        steps: vec![1],
                    },
                    vec![CUT_ROWS.into()],
                    vec![flat.clone()],
                ));
                nodes.push(Node::new(
                    format!("graft_cut/reshape_{k}"),
                    Op::Reshape {
                        shape: std::iter::once(-1)
                            .chain(d.iter().map(|&n| n as i64))
                            .collect(),
                        allowzero: false,
                    },
                    vec![flat],
                    vec![value.clone()],
                ));
                start += len;
            }
            (CUT_ROWS.to_string(), vec![start as usize])
        }
    };
    let mut shape = vec![1];
    shape.extend_from_slice(&input.1);
    nodes.extend_from_slice(&net.nodes[cut.last + 1..]);
    Network {
        name: format!("{} (head)", net.name),
        input: Input {
            name: input.0,
            shape,
            free_batch: true,
        },
        outputs: net.outputs.clone(),
        nodes,
        metadata: net.metadata.clone(),
    }
}

/// The network up to the cut, rewritten for inference (it is frozen, so BatchNorm folding is
/// exact).
pub fn prefix_network(net: &Network, store: &Store, cut: &Cut) -> (Network, Store) {
    let mut prefix = net.clone();
    prefix.nodes.truncate(cut.last + 1);
    prefix.outputs = cut.values.clone();
    optimize::for_inference(&prefix, store)
}

/// Where cached activations are kept: in memory, or in a spill file on disk when they would
/// not fit the memory budget (`TrainingOptions::cache_memory_mb`).
#[derive(Clone, Debug, PartialEq)]
pub enum Keep {
    Memory,
    /// A file in this folder, unnamed (`tempfile`: removed by the OS when closed, also after a
    /// crash), read back a row at a time. Positional reads, not a memory map: mapped pages
    /// count as the process's resident memory until the kernel evicts them, and the budget is
    /// about resident memory.
    Spill(PathBuf),
}

impl Keep {
    /// Decides where `bytes` of activations go: memory under `budget`, else a spill file in
    /// [`spill_dir`] when its disk has room, else nowhere (`Err` says why; train uncached).
    pub fn choose(bytes: u64, budget: u64) -> Result<Keep, String> {
        if bytes <= budget {
            return Ok(Keep::Memory);
        }
        let dir = spill_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        match free_bytes(&dir) {
            Some(free) if free < bytes + DISK_MARGIN_BYTES => Err(format!(
                "{} MB would not fit the memory budget ({} MB) nor the free disk space in {} ({} MB)",
                bytes >> 20,
                budget >> 20,
                dir.display(),
                free >> 20
            )),
            _ => Ok(Keep::Spill(dir)),
        }
    }
}

/// Where spill files go: `GRAFT_SPILL_DIR`, else `graft/spill` in the platform's cache folder
/// (on disk; the temp folder is RAM on some systems), else the temp folder.
pub fn spill_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("GRAFT_SPILL_DIR") {
        return PathBuf::from(d);
    }
    dirs::cache_dir().map_or_else(std::env::temp_dir, |c| c.join("graft").join("spill"))
}

/// Free bytes on the disk holding `dir`, where the system says.
fn free_bytes(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: a NUL-terminated path and a buffer statvfs fills on success.
        let ok = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } == 0;
        // SAFETY: initialised by the successful call.
        let st = ok.then(|| unsafe { st.assume_init() })?;
        // The fields' widths differ between platforms (u32 on some).
        #[allow(clippy::unnecessary_cast)]
        Some(st.f_bavail as u64 * st.f_frsize as u64)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None // A full disk then shows as a failed write, and training goes on uncached.
    }
}

/// The values, `per` to a sample, where [`Keep`] put them.
#[derive(Debug)]
enum Rows {
    Memory(Vec<f32>),
    File(std::fs::File),
}

impl Default for Rows {
    fn default() -> Self {
        Rows::Memory(Vec::new())
    }
}

/// Cached activations of a set of samples.
#[derive(Debug, Default)]
pub struct Features {
    rows: Rows,
    /// Values per sample.
    per: usize,
    pub labels: Vec<usize>,
    /// A box dataset's boxes as framed, in `kept` order (else empty).
    pub framed: Vec<Framed>,
    /// Indices into the sample list of the images that decoded.
    pub kept: Vec<usize>,
    pub failed: Vec<Skipped>,
}

impl Features {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Whether the values are in a spill file.
    pub fn spilled(&self) -> bool {
        matches!(self.rows, Rows::File(_))
    }

    /// The values of samples `rows` (positions in `kept` order), one after another.
    pub fn gather(&self, rows: &[usize]) -> Result<Vec<f32>, String> {
        let per = self.per;
        let mut out = Vec::with_capacity(rows.len() * per);
        match &self.rows {
            Rows::Memory(data) => {
                for &i in rows {
                    out.extend_from_slice(&data[i * per..(i + 1) * per]);
                }
            }
            Rows::File(file) => {
                let mut bytes = vec![0u8; per * 4];
                for &i in rows {
                    read_at(file, &mut bytes, (i * per * 4) as u64)
                        .map_err(|e| format!("reading the spilled frozen-layer features: {e}"))?;
                    out.extend(
                        bytes
                            .chunks_exact(4)
                            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    );
                }
            }
        }
        Ok(out)
    }
}

#[cfg(unix)]
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &std::fs::File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// Runs the prefix over every sample once, keeping the activations where `keep` says.
#[allow(clippy::too_many_arguments)]
pub fn compute(
    prefix: &Model,
    samples: Arc<Vec<Sample>>,
    transform: Arc<Transform>,
    batch: usize,
    keep: &Keep,
    cancel: Arc<AtomicBool>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Features, String> {
    let total = samples.len();
    let order: Vec<usize> = (0..total).collect();
    let rx = spawn_batches(
        samples,
        order,
        batch,
        transform.clone(),
        0,
        0,
        2,
        cancel.clone(),
    )?;
    let mut out = Features::default();
    let mut memory = Vec::new();
    let mut spill = match keep {
        Keep::Memory => None,
        Keep::Spill(dir) => Some(std::io::BufWriter::with_capacity(
            1 << 20,
            tempfile::tempfile_in(dir)
                .map_err(|e| format!("a spill file in {}: {e}", dir.display()))?,
        )),
    };
    let spill_error = |e: std::io::Error| format!("writing the frozen-layer features to disk: {e}");
    let mut done = 0;
    let input_dims = prefix.plan.input_dims().to_vec();
    for b in rx {
        done += b.indices.len() + b.failed.len();
        out.failed.extend(b.failed);
        if !b.indices.is_empty() {
            let mut shape = vec![b.indices.len()];
            shape.extend_from_slice(&input_dims);
            let x = Value::from_data(&shape, b.data, prefix.device());
            let y = prefix
                .forward(x, Mode::Inference)
                .map_err(|e| e.to_string())?;
            let values = rows_of(&y, b.indices.len())?;
            out.per = values.len() / b.indices.len();
            match &mut spill {
                None => memory.extend(values),
                Some(w) => {
                    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                    w.write_all(&bytes).map_err(spill_error)?;
                }
            }
            out.labels.extend(b.labels);
            out.framed.extend(b.framed);
            out.kept.extend(b.indices);
        }
        progress(done, total);
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err("cancelled".into());
        }
    }
    out.rows = match spill {
        None => Rows::Memory(memory),
        Some(w) => Rows::File(w.into_inner().map_err(|e| spill_error(e.into_error()))?),
    };
    Ok(out)
}

/// A batch's cut values as rows: per image, each value's part one after another.
fn rows_of(values: &[Value], images: usize) -> Result<Vec<f32>, String> {
    let host = values
        .iter()
        .map(Value::to_vec)
        .collect::<Result<Vec<_>, String>>()?;
    if let [one] = host.as_slice() {
        return Ok(one.clone());
    }
    let per: Vec<usize> = host.iter().map(|v| v.len() / images.max(1)).collect();
    let mut rows = Vec::with_capacity(per.iter().sum::<usize>() * images);
    for j in 0..images {
        for (v, &n) in host.iter().zip(&per) {
            rows.extend_from_slice(&v[j * n..(j + 1) * n]);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_stay_in_memory_under_the_budget_and_spill_over_it() {
        assert_eq!(Keep::choose(10 << 20, 1 << 30), Ok(Keep::Memory));
        match Keep::choose(2 << 30, 1 << 30) {
            Ok(Keep::Spill(dir)) => assert_eq!(dir, spill_dir()),
            // A machine whose cache disk has under 2.25 GB free says so.
            Err(e) => assert!(e.contains("free disk space"), "{e}"),
            Ok(Keep::Memory) => panic!("over the budget"),
        }
        // More than any disk holds: not cached, with the reason.
        let e = Keep::choose(u64::MAX / 4, 1 << 30).unwrap_err();
        assert!(e.contains("memory budget (1024 MB)"), "{e}");
    }

    #[test]
    fn spilled_rows_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let per = 5;
        let values: Vec<f32> = (0..4 * per).map(|i| i as f32 * 0.25 - 1.0).collect();
        let mut file = tempfile::tempfile_in(dir.path()).unwrap();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        file.write_all(&bytes).unwrap();
        let on_disk = Features {
            rows: Rows::File(file),
            per,
            labels: vec![0; 4],
            ..Default::default()
        };
        let in_memory = Features {
            rows: Rows::Memory(values.clone()),
            per,
            labels: vec![0; 4],
            ..Default::default()
        };
        assert!(on_disk.spilled() && !in_memory.spilled());
        let rows = [3, 0, 2];
        assert_eq!(on_disk.gather(&rows), in_memory.gather(&rows));
        assert_eq!(on_disk.gather(&[1]).unwrap(), values[per..2 * per].to_vec());
        assert!(
            on_disk.gather(&[9]).is_err(),
            "a row past the end is an error"
        );
    }
}
