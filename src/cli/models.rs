//! `graft models list | pull NAME | path NAME`: the gallery from the command line.

use crate::gallery::{self, Catalog, Entry, Place, Progress};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::AtomicBool;

#[derive(clap::Subcommand, Debug)]
pub enum ModelsAction {
    /// The gallery's networks: size, published ImageNet top-1, input, licence, cached or not.
    List,
    /// Download a network into the cache (resuming a partial download), check its sha256.
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
            println!(
                "{:<20} {:<20} {:>9} {:>6}  {:<13} {:<13} cached",
                "name", "network", "size", "top-1", "input", "licence"
            );
            for e in &catalog.entries {
                let size = if e.embedded {
                    "embedded".to_string()
                } else {
                    format!("{:.1} MB", e.bytes as f64 / 1e6)
                };
                let (c, h, w) = e.input;
                println!(
                    "{:<20} {:<20} {:>9} {:>6}  {:<13} {:<13} {}",
                    e.name,
                    e.title,
                    size,
                    e.top1.map(|t| format!("{t:.1}%")).unwrap_or_default(),
                    format!("{c}×{h}×{w} {:?}", e.layout),
                    e.licence,
                    if gallery::cached(e, &place).is_some() {
                        "yes"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
        ModelsAction::Pull { name } => {
            let path = pull_with_bar(&find(&name)?)?;
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
