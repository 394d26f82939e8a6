//! Checkpoints: the weights, optimizer state and progress at an epoch's end, written
//! atomically so that a killed process leaves the previous checkpoint intact.
//!
//! Format: `GRAFTCK1`, a little-endian u64 header length, a JSON header, then the raw data
//! (f32 tensors little-endian, then the optimizer state bytes).

use super::events::History;
use crate::weights::{Store, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;

const MAGIC: &[u8; 8] = b"GRAFTCK1";

#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Identifies the network, dataset and options the checkpoint belongs to.
    pub fingerprint: String,
    pub epochs_done: usize,
    pub iteration: usize,
    pub history: History,
    /// All weights of the network being trained.
    pub store: Store,
    /// The trained layers' weights at the best validation so far.
    pub best: Option<Store>,
    pub best_val_loss: Option<f64>,
    pub validations_since_best: usize,
    /// burn's optimizer record.
    pub optimizer: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    fingerprint: String,
    epochs_done: usize,
    iteration: usize,
    history: History,
    tensors: Vec<Entry>,
    best: Option<Vec<Entry>>,
    best_val_loss: Option<f64>,
    validations_since_best: usize,
    optimizer_len: usize,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    name: String,
    shape: Vec<usize>,
}

fn entries(store: &Store, payload: &mut Vec<u8>) -> Vec<Entry> {
    store
        .iter()
        .map(|(name, t)| {
            for v in &t.data {
                payload.extend_from_slice(&v.to_le_bytes());
            }
            Entry {
                name: name.clone(),
                shape: t.shape.clone(),
            }
        })
        .collect()
}

pub fn save(path: &Path, c: &Checkpoint) -> Result<(), String> {
    let mut payload = Vec::new();
    let tensors = entries(&c.store, &mut payload);
    let best = c.best.as_ref().map(|b| entries(b, &mut payload));
    payload.extend_from_slice(&c.optimizer);
    let header = Header {
        fingerprint: c.fingerprint.clone(),
        epochs_done: c.epochs_done,
        iteration: c.iteration,
        history: c.history.clone(),
        tensors,
        best,
        best_val_loss: c.best_val_loss,
        validations_since_best: c.validations_since_best,
        optimizer_len: c.optimizer.len(),
    };
    let json = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    let mut bytes = Vec::with_capacity(16 + json.len() + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&json);
    bytes.extend_from_slice(&payload);
    crate::files::write_atomic(path, &bytes)
}

pub fn load(path: &Path) -> Result<Checkpoint, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bad = || {
        format!(
            "{} is not a Graft checkpoint (or is damaged)",
            path.display()
        )
    };
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(bad());
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().map_err(|_| bad())?) as usize;
    let json = bytes
        .get(16..16usize.checked_add(len).ok_or_else(bad)?)
        .ok_or_else(bad)?;
    let header: Header = serde_json::from_slice(json).map_err(|_| bad())?;
    let mut at = 16 + len;
    let mut read_store = |list: &[Entry]| -> Result<Store, String> {
        let mut store = Store::new();
        for e in list {
            let n = crate::weights::numel(&e.shape).ok_or_else(bad)?;
            let raw = bytes.get(at..at + 4 * n).ok_or_else(bad)?;
            at += 4 * n;
            let data = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            store.insert(
                e.name.clone(),
                Tensor {
                    shape: e.shape.clone(),
                    data,
                },
            );
        }
        Ok(store)
    };
    let store = read_store(&header.tensors)?;
    let best = header.best.as_deref().map(&mut read_store).transpose()?;
    let optimizer = bytes
        .get(at..at + header.optimizer_len)
        .ok_or_else(bad)?
        .to_vec();
    Ok(Checkpoint {
        fingerprint: header.fingerprint,
        epochs_done: header.epochs_done,
        iteration: header.iteration,
        history: header.history,
        store,
        best,
        best_val_loss: header.best_val_loss,
        validations_since_best: header.validations_since_best,
        optimizer,
    })
}

/// FNV-1a, for fingerprints.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_reads_back_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.ckpt");
        let mut store = Store::new();
        store.insert(
            "w",
            Tensor::new(vec![2, 2], vec![1.0, -2.0, 3.5, 0.25]).unwrap(),
        );
        let mut best = Store::new();
        best.insert("w", Tensor::new(vec![1], vec![9.0]).unwrap());
        let c = Checkpoint {
            fingerprint: fingerprint(&["a", "b"]),
            epochs_done: 3,
            iteration: 42,
            history: History::default(),
            store,
            best: Some(best),
            best_val_loss: Some(0.5),
            validations_since_best: 1,
            optimizer: vec![1, 2, 3],
        };
        save(&path, &c).unwrap();
        assert_eq!(load(&path).unwrap(), c);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 10);
        std::fs::write(&path, bytes).unwrap();
        assert!(load(&path).unwrap_err().contains("not a Graft checkpoint"));
    }
}
