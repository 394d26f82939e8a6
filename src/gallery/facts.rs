//! What Graft measures about a gallery network after importing it — parameters, MACs per
//! image, images/s on this machine and which device that was — kept in the cache folder
//! (`facts.ron`) so it is measured once.

use super::download::Place;
use crate::engine::DeviceChoice;
use crate::onnx::Imported;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub params: u64,
    pub macs: u64,
    /// At batch 8, median of 5 runs.
    pub images_per_s: Option<f64>,
    /// Where images/s was measured (`CPU (flex, 2 threads)`).
    pub device: String,
}

fn path(place: &Place) -> std::path::PathBuf {
    place.cache.join("facts.ron")
}

/// Every network measured so far, by gallery name.
pub fn load(place: &Place) -> BTreeMap<String, Facts> {
    std::fs::read_to_string(path(place))
        .ok()
        .and_then(|t| ron::from_str(&t).ok())
        .unwrap_or_default()
}

pub fn record(place: &Place, name: &str, facts: Facts) -> Result<(), String> {
    let mut all = load(place);
    all.insert(name.to_string(), facts);
    let text = ron::ser::to_string_pretty(&all, Default::default()).map_err(|e| e.to_string())?;
    crate::files::write_atomic(&path(place), text.as_bytes())
}

/// Parameters and MACs from the graph; images/s by running it on the CPU.
pub fn measure(imported: &Imported) -> Facts {
    let analysis = crate::graph::analyze::analyze(&imported.network, &imported.store);
    let speed =
        crate::engine::speed::measure(&imported.network, &imported.store, 8, 5, DeviceChoice::Cpu);
    Facts {
        params: analysis.total_params as u64,
        macs: analysis.total_macs,
        images_per_s: speed.as_ref().ok().map(|s| s.images_per_s),
        device: speed.map(|s| s.device).unwrap_or_default(),
    }
}
