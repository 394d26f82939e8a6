//! Before the first step: checking the job, choosing the device, caching the frozen prefix's
//! activations, and finding the checkpoint to resume from.

use super::cache;
use super::checkpoint;
use super::events::{History, TrainEvent};
use super::passes::Source;
use super::session::{Control, Reporter, TrainJob};
use crate::audio::clips::SoundFraming;
use crate::audio::front::{AudioAugmentation, FrontEnd};
use crate::data::Task;
use crate::data::folder::Media;
use crate::data::folder::Sample;
use crate::data::loader::{BoxFraming, Transform};
use crate::engine::{Model, select_device};
use crate::graph::Network;
use crate::graph::analyze::analyze;
use crate::graph::edit::DetectionSpec;
use crate::weights::Store;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// How many training clips the spectrogram statistics are measured on.
const FRONT_END_CLIPS: usize = 256;

/// The network the loss sees: the output without its final softmax.
pub(super) fn logits_network(net: &Network) -> Network {
    let mut net = net.clone();
    if net.ends_in_softmax()
        && let Some(i) = net.outputs.first().and_then(|o| net.producer(o))
    {
        net.outputs = vec![net.nodes[i].inputs[0].clone()];
        net.nodes.remove(i);
    }
    net
}

/// What the run learns from its job before touching data: the network the loss sees, the
/// classes, the input framing and the device.
pub(super) struct Prepared {
    pub(super) logits_net: Network,
    pub(super) shapes: crate::graph::shape::Shapes,
    pub(super) classes: Vec<String>,
    pub(super) preprocess: crate::graph::Preprocess,
    pub(super) channels: usize,
    pub(super) dev: crate::engine::DeviceInfo,
    /// What a detector's head predicts (box datasets).
    pub(super) detection: Option<DetectionSpec>,
    /// How clips become input (sound datasets): the network's own front end when it was
    /// trained on sound with these settings, else one measured on the training clips.
    pub(super) audio: Option<FrontEnd>,
}

/// Checks the job (options, data, network, head size, input) and picks the device.
pub(super) fn prepare(job: &TrainJob, reporter: &Reporter) -> Result<Prepared, String> {
    let TrainJob {
        network,
        store,
        train,
        validation,
        options,
        ..
    } = job;
    options.validate()?;
    train.validate().map_err(|e| e.to_string())?;
    if let Some(v) = validation {
        train.same_classes(v).map_err(|e| e.to_string())?;
    }
    let analysis = analyze(network, store);
    if let Some(e) = analysis.errors().next() {
        return Err(format!("the network is not valid: {e}"));
    }
    let classes = train.classes.clone();
    let detection = match train.task {
        Task::Classify => None,
        Task::Detect => Some(detection_spec(network, &classes)?),
    };
    let logits_net = if detection.is_some() {
        network.clone()
    } else {
        logits_network(network)
    };
    let (shapes, _) = crate::graph::shape::infer(&logits_net, store, 1);
    let out_shape = logits_net.outputs.first().and_then(|o| shapes.get(o));
    match &detection {
        Some(spec) => check_maps(&logits_net, &shapes, spec)?,
        None => {
            let out_len = out_shape.map(|s| s.iter().skip(1).product::<usize>());
            if out_len != Some(classes.len()) {
                return Err(format!(
                    "the network has {} outputs but the dataset has {} classes; adapt the head to the dataset first",
                    out_len.unwrap_or(0),
                    classes.len()
                ));
            }
        }
    }
    let audio = match &train.media {
        Media::Images => None,
        Media::Sounds(settings) => {
            settings.validate()?;
            Some(
                match FrontEnd::of(network).filter(|f| f.settings == *settings) {
                    Some(f) => f,
                    None => crate::audio::clips::fit_front_end(train, settings, FRONT_END_CLIPS)?,
                },
            )
        }
    };
    let (preprocess, [channels, h, w]) = network.input_preprocess()?;
    if channels != 1 && channels != 3 {
        return Err(format!(
            "the network takes {channels}×{h}×{w}; Graft trains on 1- or 3-channel images"
        ));
    }
    if (detection.is_some() || audio.is_some()) && h != w {
        return Err(format!(
            "{} takes square images; this network takes {h}×{w}",
            if audio.is_some() {
                "a spectrogram network"
            } else {
                "a detector"
            }
        ));
    }
    let dev = select_device(options.device)?;
    if let Some(reason) = &dev.fallback_reason {
        reporter.message(format!("Training on the CPU: {reason}."));
    }
    dev.device.seed(options.seed);
    Ok(Prepared {
        logits_net,
        shapes,
        classes,
        preprocess,
        channels,
        dev,
        detection,
        audio,
    })
}

/// A detector's outputs are its prediction maps, one per scale of its spec, each
/// N×(anchors·(5 + classes))×H×W.
fn check_maps(
    net: &Network,
    shapes: &crate::graph::shape::Shapes,
    spec: &DetectionSpec,
) -> Result<(), String> {
    if net.outputs.len() != spec.scales.len() {
        return Err(format!(
            "the detection head has {} outputs for {} scales",
            net.outputs.len(),
            spec.scales.len()
        ));
    }
    for (o, scale) in net.outputs.iter().zip(&spec.scales) {
        let want = scale.anchors.len() * spec.per_anchor();
        let got = shapes.get(o);
        if !matches!(got.map(Vec::as_slice), Some([_, c, _, _]) if *c == want) {
            return Err(format!(
                "the detection output '{o}' is {got:?}, not N×{want}×H×W ({} anchors × (5 + {} classes))",
                scale.anchors.len(),
                spec.classes.len()
            ));
        }
    }
    Ok(())
}

/// A box dataset's detector: the head's spec, for the dataset's classes.
fn detection_spec(network: &Network, classes: &[String]) -> Result<DetectionSpec, String> {
    let spec = DetectionSpec::of(network).ok_or(
        "the dataset has boxes but the network has no detection head; add one (Network → Add detection head, or graft train --task detect)",
    )?;
    if spec.classes != classes {
        return Err(format!(
            "the detection head predicts {:?} but the dataset's classes are {:?}; add the head again for this dataset",
            spec.classes, classes
        ));
    }
    Ok(spec)
}

/// Where training and validation batches come from, and the network that trains on them.
pub(super) struct Sources {
    /// The frozen prefix's cut, when its activations are cached.
    pub(super) cut: Option<(cache::Cut, Vec<Vec<usize>>)>,
    /// The whole logits network, or the head after the cut.
    pub(super) train_net: Network,
    pub(super) train: Source,
    pub(super) val: Source,
}

/// Decides whether the frozen prefix is cached and, if so, computes its activations once.
pub(super) fn build_sources(
    job: &TrainJob,
    p: &Prepared,
    reporter: &Reporter,
    control: &Control,
) -> Result<Sources, String> {
    let (options, store) = (&job.options, &job.store);
    let d = &options.detection;
    let framing = |augment| {
        p.detection.as_ref().map(|_| BoxFraming {
            fit: d.fit,
            augment,
        })
    };
    // A sound dataset's framing; training's with the augmentation's background noise loaded.
    let sound = |augment: Option<AudioAugmentation>| -> Result<Option<SoundFraming>, String> {
        let Some(front) = &p.audio else {
            return Ok(None);
        };
        Ok(Some(match augment {
            Some(a) => SoundFraming::augmented(front.clone(), a)?,
            None => SoundFraming::plain(front.clone()),
        }))
    };
    let eval_transform = Arc::new(Transform {
        preprocess: p.preprocess.clone(),
        channels: p.channels,
        augment: None,
        boxes: framing(None),
        sound: sound(None)?,
    });
    let augmenting = match (&p.detection, &p.audio) {
        (Some(_), _) => d.augmentation.is_some(),
        (None, Some(_)) => options.sound_augmentation.is_some(),
        (None, None) => options.augmentation.as_ref().is_some_and(|a| a.is_active()),
    };
    let train_transform = Arc::new(Transform {
        preprocess: p.preprocess.clone(),
        channels: p.channels,
        augment: options.augmentation.clone(),
        boxes: framing(d.augmentation.clone()),
        sound: sound(options.sound_augmentation.clone())?,
    });
    let cut = if options.cache_features && !augmenting {
        cache::find_cut(&p.logits_net, store)
    } else {
        None
    };
    let cut = cut.and_then(|c| {
        let dims: Vec<Vec<usize>> = c
            .values
            .iter()
            .map(|v| Some(p.shapes.get(v)?.iter().skip(1).copied().collect()))
            .collect::<Option<_>>()?;
        let images =
            job.train.samples.len() + job.validation.as_ref().map_or(0, |v| v.samples.len());
        let per: usize = dims.iter().map(|d| d.iter().product::<usize>()).sum();
        let bytes = (per * 4 * images) as u64;
        match cache::Keep::choose(bytes, (options.cache_memory_mb as u64) << 20) {
            Ok(keep) => {
                if let cache::Keep::Spill(dir) = &keep {
                    reporter.message(format!(
                        "The frozen layers' features ({} MB) exceed the {} MB memory budget: \
                         kept in a file in {} while training (removed after).",
                        bytes >> 20,
                        options.cache_memory_mb,
                        dir.display()
                    ));
                }
                Some((c, dims, keep))
            }
            Err(why) => {
                reporter.message(format!("Not caching the frozen layers: {why}."));
                None
            }
        }
    });
    let train_samples = Arc::new(job.train.samples.clone());
    let val_samples = Arc::new(
        job.validation
            .as_ref()
            .map(|v| v.samples.clone())
            .unwrap_or_default(),
    );
    let uncached = |train_samples, val_samples| Sources {
        train_net: p.logits_net.clone(),
        train: Source::Images {
            samples: train_samples,
            transform: train_transform.clone(),
        },
        val: Source::Images {
            samples: val_samples,
            transform: eval_transform.clone(),
        },
        cut: None,
    };
    let Some((c, dims, keep)) = cut else {
        return Ok(uncached(train_samples, val_samples));
    };
    let (prefix, prefix_store) = cache::prefix_network(&p.logits_net, store, &c);
    let prefix_model =
        Model::build(&prefix, &prefix_store, &p.dev.device).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let compute = |samples: &Arc<Vec<Sample>>, stage: &str| {
        cache::compute(
            &prefix_model,
            samples.clone(),
            eval_transform.clone(),
            32,
            &keep,
            stop.clone(),
            |done, total| {
                reporter.send(TrainEvent::Progress {
                    stage: stage.into(),
                    done,
                    total,
                });
                if control.is_stopped() {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            },
        )
    };
    let computed = compute(
        &train_samples,
        "Computing frozen-layer features (training images)",
    )
    .and_then(|t| {
        let v = compute(
            &val_samples,
            "Computing frozen-layer features (validation images)",
        )?;
        Ok((t, v))
    });
    let (t, v) = match computed {
        Ok(tv) => tv,
        // A spill that failed (a full disk) costs the cache, not the run.
        Err(e) if matches!(keep, cache::Keep::Spill(_)) && !control.is_stopped() => {
            reporter.message(format!("Not caching the frozen layers: {e}."));
            return Ok(uncached(train_samples, val_samples));
        }
        Err(e) => return Err(e),
    };
    for s in t.failed.iter().chain(&v.failed) {
        reporter.message(format!("skipped {}: {}", s.path.display(), s.reason));
    }
    Ok(Sources {
        train_net: cache::head_network(&p.logits_net, &c, &dims),
        train: Source::Cached(t),
        val: Source::Cached(v),
        cut: Some((c, dims)),
    })
}

/// Identifies the network, dataset and options a checkpoint belongs to.
pub(super) fn fingerprint(job: &TrainJob) -> String {
    let options = &job.options;
    checkpoint::fingerprint(&[
        &job.network
            .nodes
            .iter()
            .map(|n| format!("{}:{}:{}", n.name, n.frozen, n.lr_factor))
            .collect::<Vec<_>>()
            .join(","),
        &job.train
            .samples
            .iter()
            .map(|s| s.path.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(","),
        &format!(
            "{:?}{}{:?}{}{:?}",
            options.solver,
            options.batch_size,
            options.augmentation,
            options.seed,
            options.detection
        ),
    ])
}

/// Where the run stands: fresh, or as a checkpoint left it.
#[derive(Default)]
pub(super) struct Progress {
    pub(super) start_epoch: usize,
    pub(super) iteration: usize,
    pub(super) history: History,
    pub(super) best_val_loss: Option<f64>,
    pub(super) since_best: usize,
    pub(super) best_store: Option<Store>,
    pub(super) optimizer: Option<Vec<u8>>,
}

/// Loads the checkpoint to resume from (its weights go into `store`), or starts fresh.
pub(super) fn resume_from(
    job: &TrainJob,
    fingerprint: &str,
    store: &mut Store,
    reporter: &Reporter,
) -> Result<Progress, String> {
    let Some(path) = job.checkpoint.as_ref().filter(|p| job.resume && p.exists()) else {
        return Ok(Progress::default());
    };
    let c = checkpoint::load(path)?;
    if c.fingerprint != fingerprint {
        return Err(format!(
            "{} belongs to another network, dataset or options; remove it or train without --resume",
            path.display()
        ));
    }
    for (name, t) in c.store.iter() {
        store.insert(name.clone(), t.clone());
    }
    reporter.message(format!(
        "Resuming after epoch {} from {}.",
        c.epochs_done,
        path.display()
    ));
    Ok(Progress {
        start_epoch: c.epochs_done,
        iteration: c.iteration,
        history: c.history,
        best_val_loss: c.best_val_loss,
        since_best: c.validations_since_best,
        best_store: c.best,
        optimizer: Some(c.optimizer),
    })
}
