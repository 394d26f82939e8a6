//! `graft data DIR`: a class folder scanned as training would scan it — classes, images (or
//! sound clips) per class, the files skipped and why — and how long the scan took.

use super::sound::SoundArgs;
use super::train::scan_with_bar;
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct DataArgs {
    /// A folder with one sub-folder per class.
    pub dir: PathBuf,
    /// Also write the report (classes, counts, every skipped file, scan seconds) as JSON.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub sound: SoundArgs,
}

#[derive(Serialize)]
struct Report<'a> {
    root: &'a std::path::Path,
    media: &'static str,
    classes: Vec<(&'a str, usize)>,
    samples: usize,
    files_checked: usize,
    skipped: &'a [crate::data::Skipped],
    scan_seconds: f64,
}

pub fn run(args: &DataArgs) -> Result<(), String> {
    let audio = args.sound.settings()?;
    let start = Instant::now();
    let d = scan_with_bar(&args.dir, &audio)?;
    let seconds = start.elapsed().as_secs_f64();
    let files = match d.media {
        crate::data::Media::Images => d.samples.len(),
        crate::data::Media::Sounds(_) => d.sounds.len(),
    } + d.skipped.len();
    eprintln!(
        "{files} files checked in {seconds:.2} s; {} skipped",
        d.skipped.len()
    );
    if let Some(path) = &args.json {
        let counts = d.counts();
        let report = Report {
            root: &d.root,
            media: d.samples_noun(),
            classes: d.classes.iter().map(String::as_str).zip(counts).collect(),
            samples: d.samples.len(),
            files_checked: files,
            skipped: &d.skipped,
            scan_seconds: seconds,
        };
        super::write_json(path, &report)?;
    }
    Ok(())
}
