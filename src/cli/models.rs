//! `graft models list | pull NAME | path NAME`: the gallery from the command line.

use crate::gallery::{self, Catalog, Entry, Place, Progress};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::AtomicBool;

#[derive(clap::Subcommand, Debug)]
pub enum ModelsAction {
    /// The gallery's networks: size, published ImageNet top-1, input, licence, cached or not.
    List,
    /// Download a network into the cache (resuming a partial download), check its sha256,
    /// then measure its parameters, MACs and images/s on this machine (once).
    Pull { name: String },
    /// Print where a downloaded network's file is.
    Path { name: String },
}

pub fn run(action: ModelsAction) -> Result<(), String> {
    let catalog = Catalog::load()?;
    let place = Place::from_env().map_err(|e| e.to_string())?;
    let find = |name: &str| {
        catalog
            .find(name)
            .cloned()
            .ok_or_else(|| format!("no network named {name:?} in the gallery (graft models list)"))
    };
    match action {
        ModelsAction::List => {
            let facts = gallery::facts::load(&place);
            println!(
                "{:<20} {:<20} {:>9} {:>6}  {:<13} {:<13} {:>7} {:>7} {:>8}  cached",
                "name", "network", "size", "top-1", "input", "licence", "params", "GMACs", "img/s"
            );
            for e in &catalog.entries {
                let size = if e.embedded {
                    "embedded".to_string()
                } else {
                    format!("{:.1} MB", e.bytes as f64 / 1e6)
                };
                let (c, h, w) = e.input;
                let f = facts.get(&e.name);
                let or_blank = |v: Option<String>| v.unwrap_or_default();
                println!(
                    "{:<20} {:<20} {:>9} {:>6}  {:<13} {:<13} {:>7} {:>7} {:>8}  {}",
                    e.name,
                    e.title,
                    size,
                    or_blank(e.top1.map(|t| format!("{t:.1}%"))),
                    format!("{c}×{h}×{w} {:?}", e.layout),
                    e.licence,
                    or_blank(f.map(|f| format!("{:.1} M", f.params as f64 / 1e6))),
                    or_blank(f.map(|f| format!("{:.2}", f.macs as f64 / 1e9))),
                    or_blank(f.and_then(|f| f.images_per_s).map(|s| format!("{s:.1}"))),
                    if gallery::cached(e, &place).is_some() {
                        "yes"
                    } else {
                        ""
                    }
                );
            }
            if let Some(d) = facts.values().map(|f| &f.device).find(|d| !d.is_empty()) {
                println!("img/s: batch 8 on {d}, measured once after each download");
            }
            Ok(())
        }
        ModelsAction::Pull { name } => {
            let entry = find(&name)?;
            let path = pull_with_bar(&entry)?;
            if !gallery::facts::load(&place).contains_key(&entry.name) {
                let mut imported =
                    crate::onnx::import(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                gallery::complete(&entry, &mut imported);
                eprintln!("measuring {} on this machine…", entry.title);
                gallery::facts::record(&place, &entry.name, gallery::facts::measure(&imported))?;
            }
            println!("{}", path.display());
            Ok(())
        }
        ModelsAction::Path { name } => {
            let e = find(&name)?;
            match gallery::cached(&e, &place) {
                Some(p) => {
                    println!("{}", p.display());
                    Ok(())
                }
                None => Err(format!(
                    "{} is not downloaded yet: graft models pull {}",
                    e.title, e.name
                )),
            }
        }
    }
}

/// Downloads with a progress bar on stderr (speed and time left).
pub fn pull_with_bar(entry: &Entry) -> Result<std::path::PathBuf, String> {
    let bar = ProgressBar::new(entry.bytes.max(1));
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(entry.file.clone());
    let mut report = |p: &Progress| bar.set_position(p.done);
    let place = Place::from_env().map_err(|e| e.to_string())?;
    let result = gallery::pull(entry, &place, &mut report, &AtomicBool::new(false));
    bar.finish_and_clear();
    result.map_err(|e| e.to_string())
}
