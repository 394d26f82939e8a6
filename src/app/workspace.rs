//! The open network and everything derived from it: analysis, shapes, and the undo stack.

use crate::graph::Network;
use crate::graph::analyze::{Analysis, analyze};
use crate::graph::edit::{Change, Edit, apply};
use crate::graph::shape::{self, Dim};
use crate::project::ModelSource;
use crate::weights::Store;
use std::collections::HashMap;

pub struct Workspace {
    pub source: ModelSource,
    pub network: Network,
    pub store: Store,
    pub analysis: Analysis,
    pub shapes: HashMap<String, Vec<Dim>>,
    /// Edits since `source` was read, for the project file.
    pub edits: Vec<Edit>,
    undo: Vec<Change>,
    redo: Vec<Change>,
    /// Bumped on every change, so views know to rebuild.
    pub version: u64,
    /// Trained weights not yet in any file.
    pub trained: bool,
}

impl Workspace {
    pub fn new(source: ModelSource, network: Network, store: Store) -> Self {
        let mut ws = Workspace {
            source,
            network,
            store,
            analysis: Analysis::default(),
            shapes: HashMap::new(),
            edits: Vec::new(),
            undo: Vec::new(),
            redo: Vec::new(),
            version: 0,
            trained: false,
        };
        ws.refresh();
        ws
    }

    fn refresh(&mut self) {
        self.analysis = analyze(&self.network, &self.store);
        self.shapes = shape::symbolic(&self.network, &self.store).0;
        self.version += 1;
    }

    pub fn apply(&mut self, edit: Edit) -> Result<(), String> {
        let change = apply(&mut self.network, &mut self.store, &edit).map_err(|e| e.to_string())?;
        self.edits.push(edit);
        self.undo.push(change);
        self.redo.clear();
        self.refresh();
        Ok(())
    }

    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    pub fn undo(&mut self) -> Option<String> {
        let c = self.undo.pop()?;
        c.undo(&mut self.network, &mut self.store);
        self.edits.pop();
        let what = describe(&c.edit);
        self.redo.push(c);
        self.refresh();
        Some(what)
    }

    pub fn redo(&mut self) -> Option<String> {
        let c = self.redo.pop()?;
        c.redo(&mut self.network, &mut self.store);
        self.edits.push(c.edit.clone());
        let what = describe(&c.edit);
        self.undo.push(c);
        self.refresh();
        Some(what)
    }

    /// Replaces the weights (after training); edits so far are baked in.
    pub fn set_trained(&mut self, network: Network, store: Store) {
        self.network = network;
        self.store = store;
        self.trained = true;
        self.undo.clear();
        self.redo.clear();
        self.refresh();
    }

    pub fn trainable_params(&self) -> usize {
        self.analysis.trainable_params
    }
}

/// A short description of an edit, for the status line and the undo menu.
pub fn describe(e: &Edit) -> String {
    match e {
        Edit::SetFrozen { node, frozen } => {
            format!("{} {node}", if *frozen { "freeze" } else { "unfreeze" })
        }
        Edit::FreezeUntil { node } => format!("freeze up to {node}"),
        Edit::UnfreezeFrom { node } => format!("unfreeze from {node}"),
        Edit::SetLrFactor { node, factor } => format!("learn-rate factor {factor} on {node}"),
        Edit::AdaptHead { classes, .. } => format!("new head for {} classes", classes.len()),
        Edit::AddDetectionHead {
            node,
            classes,
            coarse_anchors,
            ..
        } => format!(
            "detection head for {} classes on {node}{}",
            classes.len(),
            if coarse_anchors.is_empty() {
                ""
            } else {
                " (two scales)"
            }
        ),
        Edit::CutAfter { node } => format!("cut after {node}"),
        Edit::RemoveNode { node } => format!("delete {node}"),
        Edit::SetOp { node, .. } => format!("edit {node}"),
        Edit::InsertAfter { node, layer } => format!("insert {} after {node}", layer.kind.label()),
        Edit::Replace { node, layer } => format!("replace {node} by {}", layer.kind.label()),
        Edit::Rewire { node, value, .. } => format!("wire {value} into {node}"),
    }
}
