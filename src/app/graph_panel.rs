//! The network as a node graph (egui-snarl): blocks and layers on a layered layout, frozen
//! layers locked and muted, a context menu per node, wires that rewire inputs.

use super::layout::{self, Item};
use super::workspace::Workspace;
use super::{AppCommand, theme};
use crate::format::{elide_end, elide_start};
use crate::graph::edit::{Edit, LayerKind, NewLayer};
use crate::graph::shape::format_dims;
use crate::graph::{Network, Op};
use egui::emath::TSTransform;
use egui::{RichText, Ui};
use egui_snarl::ui::{PinInfo, SnarlStyle, SnarlViewer, SnarlWidget, get_selected_nodes};
use egui_snarl::{InPin, InPinId, NodeId, OutPin, OutPinId, Snarl};
use std::collections::{HashMap, HashSet};

const COL: f32 = 260.0;
const ROW: f32 = 130.0;

/// The view's state: which blocks are open, and requests for the next frame.
pub struct GraphPanelState {
    snarl: Snarl<Item>,
    built_for: u64,
    pub open_blocks: HashSet<String>,
    /// Fit the whole graph into view on the next frame.
    pub fit: bool,
    /// Centre this node on the next frame.
    pub focus: Option<String>,
    pub find: String,
    viewport: egui::Rect,
    positions: HashMap<NodeId, egui::Pos2>,
    /// For layers shown inside an open block: that block's key.
    open_block_of: HashMap<usize, String>,
}

impl Default for GraphPanelState {
    fn default() -> Self {
        Self {
            snarl: Snarl::new(),
            built_for: 0,
            open_blocks: HashSet::new(),
            fit: false,
            focus: None,
            find: String::new(),
            viewport: egui::Rect::NOTHING,
            positions: HashMap::new(),
            open_block_of: HashMap::new(),
        }
    }
}

impl GraphPanelState {
    fn widget() -> SnarlWidget {
        let mut style = SnarlStyle::new();
        style.collapsible = Some(false);
        style.bg_pattern = None;
        SnarlWidget::new()
            .id(egui::Id::new("graft-graph"))
            .style(style)
    }

    /// Rebuilds the snarl from the network when it changed (or the open blocks did).
    fn rebuild(&mut self, net: &Network, version: u64) {
        if self.built_for == version && self.snarl.nodes().next().is_some() {
            return;
        }
        self.open_block_of.clear();
        for (key, members) in layout::blocks(net) {
            if self.open_blocks.contains(&key) {
                for m in members {
                    self.open_block_of.insert(m, key.clone());
                }
            }
        }
        let items = layout::items(net, &self.open_blocks);
        let edges = layout::edges(net, &items);
        let pos = layout::positions(&items, &edges, COL, ROW);
        let mut snarl = Snarl::new();
        let mut ids = Vec::with_capacity(items.len());
        self.positions.clear();
        for (item, (x, y)) in items.into_iter().zip(pos) {
            let p = egui::pos2(x, y);
            let id = snarl.insert_node(p, item);
            self.positions.insert(id, p);
            ids.push(id);
        }
        for (a, b) in edges {
            snarl.connect(
                OutPinId {
                    node: ids[a],
                    output: 0,
                },
                InPinId {
                    node: ids[b],
                    input: 0,
                },
            );
        }
        self.snarl = snarl;
        self.built_for = version;
    }

    /// Forces a rebuild (after opening or closing a block).
    pub fn invalidate(&mut self) {
        self.built_for = u64::MAX;
    }

    fn transform_for(&self, target: Option<egui::Rect>) -> Option<TSTransform> {
        let view = self.viewport;
        if !view.is_positive() {
            return None;
        }
        let bounds = match target {
            Some(r) => r,
            None => {
                let mut r = egui::Rect::NOTHING;
                for p in self.positions.values() {
                    r = r.union(egui::Rect::from_min_size(*p, egui::vec2(220.0, 100.0)));
                }
                r
            }
        };
        if !bounds.is_positive() {
            return None;
        }
        let scale = (view.width() / (bounds.width() + 80.0))
            .min(view.height() / (bounds.height() + 80.0))
            .clamp(0.1, 1.2);
        let translation = view.center().to_vec2() - bounds.center().to_vec2() * scale;
        Some(TSTransform {
            scaling: scale,
            translation,
        })
    }

    pub fn find_node(&mut self, net: &Network) -> Option<String> {
        let q = self.find.trim().to_lowercase();
        if q.is_empty() {
            return None;
        }
        net.nodes
            .iter()
            .find(|n| n.name.to_lowercase().contains(&q))
            .map(|n| n.name.clone())
    }
}

/// Shows the graph.
pub fn graph_ui(
    ui: &mut Ui,
    state: &mut GraphPanelState,
    ws: &Workspace,
    selected: &Option<String>,
    commands: &mut Vec<AppCommand>,
) {
    // A focused node inside a closed block opens that block.
    if let Some(name) = &state.focus {
        let blocks = layout::blocks(&ws.network);
        if let Some(i) = ws.network.node_index(name) {
            for (key, members) in &blocks {
                if members.contains(&i) && state.open_blocks.insert(key.clone()) {
                    state.invalidate();
                }
            }
        }
    }
    state.rebuild(&ws.network, ws.version);
    state.viewport = ui.max_rect();
    let target = match state.focus.take() {
        Some(name) => {
            let id = state
                .snarl
                .node_ids()
                .find(
                    |(_, item)| matches!(item, Item::Layer(i) if ws.network.nodes[*i].name == name),
                )
                .map(|(id, _)| id);
            id.and_then(|id| state.positions.get(&id)).map(|p| {
                egui::Rect::from_min_size(*p - egui::vec2(300.0, 200.0), egui::vec2(820.0, 500.0))
            })
        }
        None => None,
    };
    let new_transform = if state.fit || target.is_some() {
        state.transform_for(target)
    } else {
        None
    };
    state.fit = false;
    let mut viewer = NetViewer {
        ws,
        selected,
        commands,
        transform: new_transform,
        toggled: Vec::new(),
        open_block_of: &state.open_block_of,
        viewport: state.viewport,
        detailed: HashSet::new(),
    };
    let widget = GraphPanelState::widget();
    widget.show(&mut state.snarl, &mut viewer, ui);
    let toggled = std::mem::take(&mut viewer.toggled);
    for key in toggled {
        if !state.open_blocks.remove(&key) {
            state.open_blocks.insert(key);
        }
        state.invalidate();
    }
    // Selecting in the graph selects in the inspector.
    let chosen = get_selected_nodes(egui::Id::new("graft-graph"), ui.ctx());
    if let [one] = chosen.as_slice()
        && let Some(Item::Layer(i)) = state.snarl.get_node(*one)
    {
        let name = &ws.network.nodes[*i].name;
        if selected.as_deref() != Some(name) {
            commands.push(AppCommand::Select(Some(name.clone())));
        }
    }
}

struct NetViewer<'a> {
    ws: &'a Workspace,
    selected: &'a Option<String>,
    commands: &'a mut Vec<AppCommand>,
    transform: Option<TSTransform>,
    /// Blocks to open or close after this frame.
    toggled: Vec<String>,
    open_block_of: &'a HashMap<usize, String>,
    /// The graph's screen rectangle.
    viewport: egui::Rect,
    /// Items drawn in full this frame (see `current_transform`); the rest show their header.
    detailed: HashSet<usize>,
}

/// With more than `CROWDED` nodes on screen below this zoom, bodies are too small to read and
/// too many to lay out every frame: nodes show only their header.
const DETAIL_ZOOM: f32 = 0.6;
const CROWDED: usize = 120;

/// Identifies a layer or block for `NetViewer::detailed`.
fn item_id(item: &Item) -> Option<usize> {
    match item {
        Item::Layer(i) => Some(*i),
        Item::Block { members, .. } => members.first().copied(),
        _ => None,
    }
}

impl NetViewer<'_> {
    fn node_summary(&self, i: usize) -> (String, String) {
        let n = &self.ws.network.nodes[i];
        let info = self.ws.analysis.nodes.get(i);
        let shape = n
            .outputs
            .first()
            .and_then(|o| self.ws.shapes.get(o))
            .map(|d| format_dims(d))
            .unwrap_or_else(|| "?".into());
        let params = info.map_or(0, |x| x.params);
        (
            shape,
            if params > 0 {
                format!("{} params", crate::format::group(params as u64))
            } else {
                String::new()
            },
        )
    }

    fn frozen_count(&self, members: &[usize]) -> usize {
        members
            .iter()
            .filter(|&&i| self.ws.network.nodes[i].is_frozen())
            .count()
    }
}

/// A unique name for a new layer of `kind`.
fn fresh_name(net: &Network, kind: &LayerKind) -> String {
    let base = kind
        .label()
        .split_whitespace()
        .next()
        .unwrap_or("layer")
        .to_lowercase();
    (1..)
        .map(|i| format!("new/{base}{i}"))
        .find(|n| net.node(n).is_none())
        .unwrap_or_default()
}

pub fn library_menu(
    ui: &mut Ui,
    net: &Network,
    node: &str,
    replace: bool,
    commands: &mut Vec<AppCommand>,
) {
    for kind in LayerKind::library() {
        if ui.button(kind.label()).clicked() {
            let layer = NewLayer {
                name: fresh_name(net, &kind),
                kind,
                seed: net.nodes.len() as u64,
            };
            let edit = if replace {
                Edit::Replace {
                    node: node.to_owned(),
                    layer,
                }
            } else {
                Edit::InsertAfter {
                    node: node.to_owned(),
                    layer,
                }
            };
            commands.push(AppCommand::Edit(edit));
            ui.close();
        }
    }
}

impl SnarlViewer<Item> for NetViewer<'_> {
    fn title(&mut self, item: &Item) -> String {
        match item {
            Item::Input => format!("Input {}", self.ws.network.input.name),
            Item::Output(o) => format!(
                "Output {}",
                self.ws.network.outputs.get(*o).cloned().unwrap_or_default()
            ),
            Item::Layer(i) => self.ws.network.nodes[*i].name.clone(),
            Item::Block { key, .. } => key.clone(),
        }
    }

    fn show_header(
        &mut self,
        node: NodeId,
        _inputs: &[InPin],
        _outputs: &[OutPin],
        ui: &mut Ui,
        snarl: &mut Snarl<Item>,
    ) {
        let ws = self.ws;
        match &snarl[node] {
            Item::Input => {
                ui.label(RichText::new("Input").strong());
            }
            Item::Output(_) => {
                ui.label(RichText::new("Output").strong());
            }
            Item::Layer(i) => {
                let n = &ws.network.nodes[*i];
                let frozen = n.is_frozen();
                let has_params = !n.op.learnable_inputs().is_empty()
                    && n.inputs.iter().skip(1).any(|v| ws.store.contains(v));
                ui.horizontal(|ui| {
                    if has_params {
                        let icon = if frozen { "🔒" } else { "🔓" };
                        let r =
                            ui.add(egui::Button::new(icon).frame(false))
                                .on_hover_text(if frozen {
                                    "Frozen: click to unfreeze"
                                } else {
                                    "Trainable: click to freeze"
                                });
                        if r.clicked() {
                            self.commands.push(AppCommand::Edit(Edit::SetFrozen {
                                node: n.name.clone(),
                                frozen: !frozen,
                            }));
                        }
                    }
                    let title = RichText::new(n.op.onnx_type())
                        .strong()
                        .color(theme::op_color(&n.op));
                    if ui
                        .add(egui::Label::new(title).sense(egui::Sense::click()))
                        .clicked()
                    {
                        self.commands.push(AppCommand::Select(Some(n.name.clone())));
                    }
                });
            }
            Item::Block { key, members } => {
                let (key, count) = (key.clone(), members.len());
                ui.horizontal(|ui| {
                    if ui
                        .add(egui::Button::new("▶").frame(false))
                        .on_hover_text("Open this block")
                        .clicked()
                    {
                        self.toggled.push(key.clone());
                    }
                    ui.label(RichText::new(format!("{key}  ·  {count} layers")).strong());
                });
            }
        }
    }

    fn inputs(&mut self, item: &Item) -> usize {
        usize::from(!matches!(item, Item::Input))
    }

    fn outputs(&mut self, item: &Item) -> usize {
        usize::from(!matches!(item, Item::Output(_)))
    }

    #[allow(refining_impl_trait)]
    fn show_input(&mut self, _pin: &InPin, _ui: &mut Ui, _snarl: &mut Snarl<Item>) -> PinInfo {
        PinInfo::circle().with_fill(theme::PIN)
    }

    #[allow(refining_impl_trait)]
    fn show_output(&mut self, _pin: &OutPin, _ui: &mut Ui, _snarl: &mut Snarl<Item>) -> PinInfo {
        PinInfo::circle().with_fill(theme::PIN)
    }

    fn has_body(&mut self, item: &Item) -> bool {
        match item {
            Item::Output(_) => false,
            Item::Input => true,
            _ => item_id(item).is_some_and(|id| self.detailed.contains(&id)),
        }
    }

    fn show_body(
        &mut self,
        node: NodeId,
        _inputs: &[InPin],
        _outputs: &[OutPin],
        ui: &mut Ui,
        snarl: &mut Snarl<Item>,
    ) {
        let ws = self.ws;
        ui.vertical(|ui| match &snarl[node] {
            Item::Input => {
                let dims = ws
                    .shapes
                    .get(&ws.network.input.name)
                    .map(|d| format_dims(d))
                    .unwrap_or_default();
                ui.label(dims);
            }
            Item::Output(_) => {}
            Item::Layer(i) => {
                let n = &ws.network.nodes[*i];
                ui.label(RichText::new(elide_start(&n.name, 34)).small().weak());
                let (shape, params) = self.node_summary(*i);
                ui.label(shape);
                if !params.is_empty() {
                    ui.label(RichText::new(params).small());
                }
                if n.is_frozen() && matches!(n.op, Op::BatchNorm { .. }) {
                    ui.label(RichText::new("inference mode").small().italics());
                }
                if !n.op.is_supported() {
                    ui.label(RichText::new("not supported").color(theme::ERROR));
                }
                for issue in ws
                    .analysis
                    .issues_for(&n.name)
                    .filter(|i| i.severity == crate::graph::analyze::Severity::Error)
                {
                    ui.label(
                        RichText::new(elide_end(&issue.message, 40))
                            .small()
                            .color(theme::ERROR),
                    );
                }
            }
            Item::Block { members, .. } => {
                let last = *members.last().unwrap_or(&0);
                let (shape, _) = self.node_summary(last);
                let params: usize = members
                    .iter()
                    .filter_map(|&m| ws.analysis.nodes.get(m))
                    .map(|x| x.params)
                    .sum();
                let frozen = self.frozen_count(members);
                ui.label(shape);
                ui.label(
                    RichText::new(format!("{} params", crate::format::group(params as u64)))
                        .small(),
                );
                if frozen > 0 {
                    ui.label(
                        RichText::new(format!("🔒 {frozen}/{} frozen", members.len())).small(),
                    );
                }
            }
        });
    }

    fn node_frame(
        &mut self,
        default: egui::Frame,
        node: NodeId,
        _inputs: &[InPin],
        _outputs: &[OutPin],
        snarl: &Snarl<Item>,
    ) -> egui::Frame {
        let ws = self.ws;
        let (frozen, selected, error) = match &snarl[node] {
            Item::Layer(i) => {
                let n = &ws.network.nodes[*i];
                (
                    n.is_frozen(),
                    self.selected.as_deref() == Some(n.name.as_str()),
                    ws.analysis
                        .issues_for(&n.name)
                        .any(|x| x.severity == crate::graph::analyze::Severity::Error),
                )
            }
            Item::Block { members, .. } => {
                (self.frozen_count(members) == members.len(), false, false)
            }
            _ => (false, false, false),
        };
        let mut f = default.fill(if frozen {
            theme::FROZEN_FILL
        } else {
            theme::NODE_FILL
        });
        if error {
            f = f.stroke(egui::Stroke::new(2.0, theme::ERROR));
        } else if selected {
            f = f.stroke(egui::Stroke::new(2.0, theme::SELECTED));
        }
        f
    }

    fn has_node_menu(&mut self, item: &Item) -> bool {
        matches!(item, Item::Layer(_) | Item::Block { .. })
    }

    fn show_node_menu(
        &mut self,
        node: NodeId,
        _inputs: &[InPin],
        _outputs: &[OutPin],
        ui: &mut Ui,
        snarl: &mut Snarl<Item>,
    ) {
        let ws = self.ws;
        match &snarl[node] {
            Item::Layer(i) => {
                let name = ws.network.nodes[*i].name.clone();
                if ui.button("Freeze up to here").clicked() {
                    self.commands
                        .push(AppCommand::Edit(Edit::FreezeUntil { node: name.clone() }));
                    ui.close();
                }
                if ui.button("Unfreeze from here").clicked() {
                    self.commands
                        .push(AppCommand::Edit(Edit::UnfreezeFrom { node: name.clone() }));
                    ui.close();
                }
                ui.menu_button("Insert after", |ui| {
                    library_menu(ui, &ws.network, &name, false, self.commands)
                });
                ui.menu_button("Replace with", |ui| {
                    library_menu(ui, &ws.network, &name, true, self.commands)
                });
                if ui.button("Cut the network after this").clicked() {
                    self.commands
                        .push(AppCommand::Edit(Edit::CutAfter { node: name.clone() }));
                    ui.close();
                }
                if ui.button("Delete").clicked() {
                    self.commands
                        .push(AppCommand::Edit(Edit::RemoveNode { node: name }));
                    ui.close();
                }
                if let Some(key) = self.open_block_of.get(i) {
                    ui.separator();
                    if ui.button(format!("Collapse block {key}")).clicked() {
                        self.toggled.push(key.clone());
                        ui.close();
                    }
                }
            }
            Item::Block { key, members } => {
                if ui.button("Open block").clicked() {
                    self.toggled.push(key.clone());
                    ui.close();
                }
                let last = ws.network.nodes[*members.last().unwrap_or(&0)].name.clone();
                if ui.button("Freeze up to the end of this block").clicked() {
                    self.commands
                        .push(AppCommand::Edit(Edit::FreezeUntil { node: last }));
                    ui.close();
                }
                let first = ws.network.nodes[members[0]].name.clone();
                if ui.button("Unfreeze from this block").clicked() {
                    self.commands
                        .push(AppCommand::Edit(Edit::UnfreezeFrom { node: first }));
                    ui.close();
                }
            }
            _ => {}
        }
    }

    fn connect(&mut self, from: &OutPin, to: &InPin, snarl: &mut Snarl<Item>) {
        // A wire means: the target layer reads the source's output.
        let ws = self.ws;
        let value = match &snarl[from.id.node] {
            Item::Input => Some(ws.network.input.name.clone()),
            Item::Layer(i) => ws.network.nodes[*i].outputs.first().cloned(),
            Item::Block { members, .. } => members
                .last()
                .and_then(|&i| ws.network.nodes[i].outputs.first().cloned()),
            Item::Output(_) => None,
        };
        if let (Some(value), Item::Layer(j)) = (value, &snarl[to.id.node]) {
            self.commands.push(AppCommand::Edit(Edit::Rewire {
                node: ws.network.nodes[*j].name.clone(),
                index: 0,
                value,
            }));
        }
    }

    fn disconnect(&mut self, _from: &OutPin, _to: &InPin, _snarl: &mut Snarl<Item>) {
        // Every layer needs its input: wires are changed by connecting elsewhere, not removed.
    }

    fn drop_inputs(&mut self, _pin: &InPin, _snarl: &mut Snarl<Item>) {}

    fn drop_outputs(&mut self, _pin: &OutPin, _snarl: &mut Snarl<Item>) {}

    fn current_transform(&mut self, to_global: &mut TSTransform, snarl: &mut Snarl<Item>) {
        if let Some(t) = self.transform.take() {
            *to_global = t;
        }
        // Level of detail: egui lays out every widget it is given, visible or not, so node
        // bodies are built only for nodes on screen, and not at all for a crowded, zoomed-out
        // view. This keeps a frame of a 400-node graph cheap while training shares the CPU
        // (docs/BENCHMARKS.md).
        self.detailed.clear();
        let view = to_global.inverse() * self.viewport;
        for (_, pos, item) in snarl.nodes_pos_ids() {
            let rect = egui::Rect::from_min_size(pos, egui::vec2(260.0, 160.0));
            if rect.intersects(view)
                && let Some(id) = item_id(item)
            {
                self.detailed.insert(id);
            }
        }
        if self.detailed.len() > CROWDED && to_global.scaling < DETAIL_ZOOM {
            self.detailed.clear();
        }
    }
}
