//! The network as a node graph (egui-snarl) on a layered top-to-bottom layout
//! (`layout`): blocks that open in place, wires routed round the boxes, text that stays
//! readable at every zoom, a minimap, and the state of training on the nodes (frozen tinted,
//! the head in its own colour, the frozen-feature cut marked, unsupported layers red).

use super::layout::{self, Item, NODE, View};
use super::workspace::Workspace;
use super::{AppCommand, theme};
use crate::format::{elide_end, elide_start};
use crate::graph::edit::{Edit, LayerKind, NewLayer};
use crate::graph::shape::format_dims;
use crate::graph::{Network, Op};
use egui::emath::TSTransform;
use egui::{Color32, FontId, Pos2, Rect, RichText, Stroke, Ui, Vec2, pos2, vec2};
use egui_snarl::ui::{
    BackgroundPattern, PinInfo, SnarlStyle, SnarlViewer, SnarlWidget, get_selected_nodes,
};
use egui_snarl::{InPin, NodeId, OutPin, Snarl};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Zoom limits. At `MIN_ZOOM` a compact node's two lines (name, shape) still fit its box in
/// a font `COMPACT_PX` high on screen; below `DETAIL_ZOOM` nodes are compact.
pub const MIN_ZOOM: f32 = 0.4;
const MAX_ZOOM: f32 = 2.0;
const DETAIL_ZOOM: f32 = 0.85;
/// On-screen height of node text when zoomed out (the issue's floor is 11 px).
pub const COMPACT_PX: f32 = 12.0;
/// Title size in graph units when zoomed in (≥ 11.9 px on screen at `DETAIL_ZOOM`).
const TITLE_SIZE: f32 = 14.0;
/// Width inside a node's box left for text (pins and margins take the rest).
const TEXT_WIDTH: f32 = NODE[0] - 44.0;

/// What the next frame should do with the view.
#[derive(Clone, Copy, Debug)]
enum Move {
    /// The whole graph, as large as fits (never below `MIN_ZOOM`: then its start).
    Fit,
    /// Bring this graph rectangle into view at a readable zoom, centred.
    Show(Rect),
    /// Keep the zoom; put this graph point at the centre (minimap clicks).
    Centre(Pos2),
    /// Keep the zoom; keep this graph rectangle's top-left at this screen point, shifted
    /// just enough to show the rectangle (a block opening in place).
    Anchor { rect: Rect, screen: Pos2 },
    /// Back to a remembered view (a block closing).
    Restore(TSTransform),
}

/// The view's state: the laid-out graph, which blocks are open, requests for the next frame.
pub struct GraphPanelState {
    snarl: Snarl<Item>,
    built_for: u64,
    pub open_blocks: HashSet<String>,
    /// Fit the whole graph into view on the next frame.
    pub fit: bool,
    /// Centre this node on the next frame.
    pub focus: Option<String>,
    pub find: String,
    viewport: Rect,
    view: View,
    blocks: BTreeMap<String, Vec<usize>>,
    /// Snarl node per item, and back.
    ids: Vec<NodeId>,
    item_of: HashMap<NodeId, usize>,
    index_of: HashMap<Item, usize>,
    /// For layers shown inside an open block: that block's key.
    open_block_of: HashMap<usize, String>,
    /// The head (new classifier and after) and the last node before the cached-feature cut.
    head: HashSet<usize>,
    cut: Option<usize>,
    /// The search match, outlined until the next search.
    found: Option<usize>,
    /// Each item's box as drawn last frame (wires attach to it).
    rects: Vec<Option<Rect>>,
    transform: TSTransform,
    /// The view before a block was opened, for when it closes.
    saved: HashMap<String, TSTransform>,
    next_move: Option<Move>,
    /// Where the minimap was drawn last frame.
    minimap: Option<Rect>,
    /// Laid out again this frame.
    fresh: bool,
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
            viewport: Rect::NOTHING,
            view: View {
                items: Vec::new(),
                edges: Vec::new(),
                layout: Default::default(),
            },
            blocks: BTreeMap::new(),
            ids: Vec::new(),
            item_of: HashMap::new(),
            index_of: HashMap::new(),
            open_block_of: HashMap::new(),
            head: HashSet::new(),
            cut: None,
            found: None,
            rects: Vec::new(),
            transform: TSTransform::IDENTITY,
            saved: HashMap::new(),
            next_move: None,
            minimap: None,
            fresh: false,
        }
    }
}

impl GraphPanelState {
    fn widget() -> SnarlWidget {
        let mut style = SnarlStyle::new();
        style.collapsible = Some(false);
        style.bg_pattern = None;
        style.min_scale = Some(MIN_ZOOM);
        style.max_scale = Some(MAX_ZOOM);
        // Text is laid out at its final size rather than magnified (the default draws at
        // `max_scale` and scales down, which would make every node's text 2× too wide).
        style.crisp_magnified_text = Some(false);
        SnarlWidget::new()
            .id(egui::Id::new("graft-graph"))
            .style(style)
    }

    /// Lays the network out again when it changed (or the open blocks did).
    fn rebuild(&mut self, ws: &Workspace) {
        if self.built_for == ws.version && !self.ids.is_empty() {
            return;
        }
        let net = &ws.network;
        self.blocks = crate::graph::blocks::blocks(net);
        self.open_blocks.retain(|k| self.blocks.contains_key(k));
        self.open_block_of.clear();
        for key in &self.open_blocks {
            for &m in &self.blocks[key] {
                self.open_block_of.insert(m, key.clone());
            }
        }
        self.view = layout::arrange(net, &self.blocks, &self.open_blocks);
        self.head = crate::graph::edit::head_start(net, &ws.store)
            .map(|h| {
                crate::graph::edit::descendants(net, h)
                    .into_iter()
                    .collect()
            })
            .unwrap_or_default();
        self.cut = crate::train::cache::find_cut(net, &ws.store).map(|c| c.last);
        let mut snarl = Snarl::new();
        self.ids.clear();
        self.item_of.clear();
        for (k, item) in self.view.items.iter().enumerate() {
            let [x, y] = self.view.layout.pos[k];
            let id = snarl.insert_node(pos2(x, y), item.clone());
            self.ids.push(id);
            self.item_of.insert(id, k);
        }
        self.index_of = (self.view.items.iter().cloned())
            .enumerate()
            .map(|(k, item)| (item, k))
            .collect();
        // Wires are drawn by the viewer along the layout's routes; snarl's own pins stay
        // for rewiring by drag.
        self.snarl = snarl;
        self.rects = vec![None; self.view.items.len()];
        self.found = None;
        self.fresh = true;
        self.built_for = ws.version;
    }

    pub fn zoom(&self) -> f32 {
        self.transform.scaling
    }

    pub fn minimap_rect(&self) -> Option<Rect> {
        self.minimap
    }

    pub fn to_screen(&self, r: Rect) -> Rect {
        self.transform * r
    }

    /// Forces a new layout (after opening or closing a block).
    pub fn invalidate(&mut self) {
        self.built_for = u64::MAX;
    }

    /// The item showing node `i`: its layer, or the closed block holding it.
    fn item_showing(&self, i: usize) -> Option<usize> {
        self.view.items.iter().position(|item| match item {
            Item::Layer(j) => *j == i,
            Item::Block { members, .. } => members.contains(&i),
            _ => false,
        })
    }

    fn item_rect(&self, k: usize) -> Rect {
        let [x, y] = self.view.layout.pos[k];
        Rect::from_min_size(pos2(x, y), NODE.into())
    }

    /// The graph rectangle holding these nodes' items.
    fn rect_of_nodes(&self, nodes: &[usize]) -> Rect {
        let mut r = Rect::NOTHING;
        for (k, item) in self.view.items.iter().enumerate() {
            if matches!(item, Item::Layer(i) if nodes.contains(i)) {
                r = r.union(self.item_rect(k));
            }
        }
        r
    }

    /// The drawing, with the wires that leave a band's bottom and enter the next one's top.
    fn bounds(&self) -> Rect {
        let [w, h] = self.view.layout.size;
        let gap = params_gap();
        Rect::from_min_size(pos2(0.0, -gap / 2.0), vec2(w.max(1.0), h.max(1.0) + gap))
    }

    /// The transform for a requested move, from the current one.
    fn transform_for(&self, m: Move) -> Option<TSTransform> {
        let view = self.viewport.shrink(24.0);
        if !view.is_positive() {
            return None;
        }
        let at = |scale: f32, graph: Pos2, screen: Pos2| TSTransform {
            scaling: scale,
            translation: screen.to_vec2() - graph.to_vec2() * scale,
        };
        let fitting = |r: Rect| {
            (view.width() / r.width())
                .min(view.height() / r.height())
                .clamp(MIN_ZOOM, 1.0)
        };
        Some(match m {
            Move::Fit => {
                let b = self.bounds();
                let scale = fitting(b);
                if b.width() * scale > view.width() + 1.0
                    || b.height() * scale > view.height() + 1.0
                {
                    // Too big to read whole: show where the network starts.
                    at(scale, b.min, view.min)
                } else {
                    at(scale, b.center(), view.center())
                }
            }
            Move::Show(r) => {
                let scale = fitting(r).max(DETAIL_ZOOM.min(self.transform.scaling));
                at(scale, r.center(), view.center())
            }
            Move::Centre(p) => at(self.transform.scaling, p, self.viewport.center()),
            Move::Anchor { rect, screen } => {
                let scale = self.transform.scaling.min(fitting(rect));
                let t = at(scale, rect.min, screen);
                // Slide just enough to bring the whole rectangle in.
                let on_screen = t * rect;
                let mut d = Vec2::ZERO;
                if on_screen.max.x > view.max.x {
                    d.x = view.max.x - on_screen.max.x;
                }
                if on_screen.min.x + d.x < view.min.x {
                    d.x = view.min.x - on_screen.min.x;
                }
                if on_screen.max.y > view.max.y {
                    d.y = view.max.y - on_screen.max.y;
                }
                if on_screen.min.y + d.y < view.min.y {
                    d.y = view.min.y - on_screen.min.y;
                }
                TSTransform {
                    translation: t.translation + d,
                    ..t
                }
            }
            Move::Restore(t) => t,
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

    /// Opens or closes a block, keeping it in sight: an opened block grows from where it
    /// was drawn; a closed one brings back the view from before it was opened.
    fn toggle(&mut self, key: String, ws: &Workspace) {
        let Some(members) = self.blocks.get(&key).cloned() else {
            return;
        };
        if self.open_blocks.remove(&key) {
            self.invalidate();
            self.rebuild(ws);
            self.next_move = self.saved.remove(&key).map(Move::Restore);
            return;
        }
        let before = self.item_showing(members[0]).map(|k| self.item_rect(k));
        self.saved.insert(key.clone(), self.transform);
        self.open_blocks.insert(key);
        self.invalidate();
        self.rebuild(ws);
        let rect = self.rect_of_nodes(&members);
        self.next_move = Some(match before {
            Some(b) => Move::Anchor {
                rect,
                screen: self.transform * b.min,
            },
            None => Move::Show(rect),
        });
    }
}

/// The vertical gap between layers, where the cut line is drawn.
fn params_gap() -> f32 {
    layout::params().gap[1]
}

/// Shows the graph.
pub fn graph_ui(
    ui: &mut Ui,
    state: &mut GraphPanelState,
    ws: &Workspace,
    selected: &Option<String>,
    commands: &mut Vec<AppCommand>,
) {
    state.rebuild(ws);
    state.viewport = ui.max_rect();
    // A focused node inside a closed block opens that block, then is centred.
    if let Some(name) = state.focus.take()
        && let Some(i) = ws.network.node_index(&name)
    {
        let closed: Vec<String> = state
            .blocks
            .iter()
            .filter(|(k, m)| m.contains(&i) && !state.open_blocks.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        if !closed.is_empty() {
            state.open_blocks.extend(closed);
            state.invalidate();
            state.rebuild(ws);
        }
        state.found = state.item_showing(i);
        if let Some(k) = state.found {
            state.next_move = Some(Move::Show(state.item_rect(k).expand(60.0)));
        }
    }
    if std::mem::take(&mut state.fit) {
        state.next_move = Some(Move::Fit);
    }
    let transform = state.next_move.take().and_then(|m| state.transform_for(m));
    let mut viewer = NetViewer {
        ws,
        selected,
        commands,
        transform,
        toggled: Vec::new(),
        open_block_of: &state.open_block_of,
        viewport: state.viewport,
        visible: HashSet::new(),
        detailed: HashSet::new(),
        scale: state.transform.scaling,
        current: state.transform,
        view: &state.view,
        item_of: &state.item_of,
        index_of: &state.index_of,
        head: &state.head,
        cut: state.cut,
        found: state.found,
        rects: &mut state.rects,
    };
    GraphPanelState::widget().show(&mut state.snarl, &mut viewer, ui);
    // The first frame after a new layout draws wires to the layout's boxes; nodes report
    // their real size during it, so draw once more with those.
    if std::mem::take(&mut state.fresh) {
        ui.ctx().request_repaint();
    }
    let toggled = std::mem::take(&mut viewer.toggled);
    state.transform = viewer.current;
    for key in toggled {
        state.toggle(key, ws);
    }
    minimap(ui, state);
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

/// A small picture of the whole graph in the panel's corner, with the visible part framed;
/// clicking or dragging in it moves the view there. Shown when the graph does not fit.
fn minimap(ui: &Ui, state: &mut GraphPanelState) {
    let b = state.bounds();
    let t = state.transform;
    let panel = state.viewport;
    let visible = t.inverse() * panel;
    state.minimap = None;
    if !panel.is_positive() || visible.contains_rect(b) {
        return;
    }
    let scale = (200.0 / b.width()).min(150.0 / b.height());
    let size = b.size() * scale;
    let corner = panel.right_bottom() - size - vec2(12.0, 12.0);
    egui::Area::new(egui::Id::new("graft-minimap"))
        .order(egui::Order::Middle)
        .fixed_pos(corner)
        .show(ui.ctx(), |ui| {
            let (resp, painter) = ui.allocate_painter(size, egui::Sense::click_and_drag());
            state.minimap = Some(resp.rect);
            let to_map = |p: Pos2| resp.rect.min + (p - b.min) * scale;
            painter.rect_filled(resp.rect.expand(4.0), 4.0, Color32::from_black_alpha(190));
            for (k, item) in state.view.items.iter().enumerate() {
                let r = state.item_rect(k);
                let r = Rect::from_min_max(to_map(r.min), to_map(r.max));
                painter.rect_filled(r, 0.0, item_colour(item, &state.head));
            }
            let v = Rect::from_min_max(to_map(visible.min), to_map(visible.max))
                .intersect(resp.rect.expand(2.0));
            painter.rect_stroke(
                v,
                0.0,
                Stroke::new(1.5, theme::SELECTED),
                egui::StrokeKind::Outside,
            );
            if (resp.clicked() || resp.dragged())
                && let Some(p) = resp.interact_pointer_pos()
            {
                let graph = b.min + (p - resp.rect.min) / scale;
                state.next_move = Some(Move::Centre(graph));
                ui.ctx().request_repaint();
            }
            resp.on_hover_text("Overview: click to go there");
        });
}

/// An item's colour in the minimap.
fn item_colour(item: &Item, head: &HashSet<usize>) -> Color32 {
    match item {
        Item::Layer(i) if head.contains(i) => theme::HEAD,
        Item::Block { members, .. } if members.iter().any(|m| head.contains(m)) => theme::HEAD,
        Item::Block { .. } => Color32::from_rgb(120, 130, 150),
        _ => theme::PIN,
    }
}

struct NetViewer<'a> {
    ws: &'a Workspace,
    selected: &'a Option<String>,
    commands: &'a mut Vec<AppCommand>,
    /// A transform to apply this frame (fit, focus, a block opening).
    transform: Option<TSTransform>,
    /// Blocks to open or close after this frame.
    toggled: Vec<String>,
    open_block_of: &'a HashMap<usize, String>,
    /// The graph's screen rectangle.
    viewport: Rect,
    /// Items on screen this frame; the rest get an empty header (egui lays out every widget
    /// it is handed, visible or not).
    visible: HashSet<usize>,
    /// Items drawn in full this frame; the rest are compact (name and shape).
    detailed: HashSet<usize>,
    /// This frame's zoom and transform.
    scale: f32,
    current: TSTransform,
    view: &'a View,
    item_of: &'a HashMap<NodeId, usize>,
    index_of: &'a HashMap<Item, usize>,
    head: &'a HashSet<usize>,
    cut: Option<usize>,
    found: Option<usize>,
    rects: &'a mut Vec<Option<Rect>>,
}

/// A layer's name as a node shows it: its module path without the open block's part
/// (the block is drawn around it), the last two parts, the op's own name dropped when a
/// module names the node (`branch2.0/conv`, not `branch2.0/conv/Conv`; the colour and the
/// details say the op).
fn short_name(name: &str, op: &str, block: Option<&str>) -> String {
    let mut parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    if let Some(key) = block {
        let depth = key.split('/').count();
        if parts.len() > depth + 1 && parts[..depth].join("/") == key {
            parts.drain(..depth);
        }
    }
    if parts.len() >= 2 && parts.last().is_some_and(|l| l.starts_with(op)) {
        parts.pop();
    }
    let n = parts.len();
    parts[n.saturating_sub(2)..].join("/")
}

impl NetViewer<'_> {
    fn item(&self, node: NodeId) -> Option<usize> {
        self.item_of.get(&node).copied()
    }

    fn shape_of(&self, i: usize) -> String {
        self.ws.network.nodes[i]
            .outputs
            .first()
            .and_then(|o| self.ws.shapes.get(o))
            .map(|d| format_dims(d))
            .unwrap_or_else(|| "?".into())
    }

    fn params_of(&self, members: &[usize]) -> usize {
        members
            .iter()
            .filter_map(|&m| self.ws.analysis.nodes.get(m))
            .map(|x| x.params)
            .sum()
    }

    fn frozen_count(&self, members: &[usize]) -> usize {
        members
            .iter()
            .filter(|&&i| self.ws.network.nodes[i].is_frozen())
            .count()
    }

    /// Compact text: `COMPACT_PX` on screen whatever the zoom, elided to the box.
    fn compact_font(&self) -> (FontId, usize) {
        let size = (COMPACT_PX / self.scale).max(TITLE_SIZE);
        let chars = (TEXT_WIDTH / (0.56 * size)).floor().max(4.0) as usize;
        (FontId::proportional(size), chars)
    }

    /// Name (or block key) and shape, the two lines every node shows.
    fn name_and_shape(&self, item: &Item) -> (String, String, Color32) {
        let net = &self.ws.network;
        match item {
            Item::Input => (
                "Input".into(),
                self.ws
                    .shapes
                    .get(&net.input.name)
                    .map(|d| format_dims(d))
                    .unwrap_or_default(),
                theme::PIN,
            ),
            Item::Output(o) => (
                "Output".into(),
                net.outputs.get(*o).cloned().unwrap_or_default(),
                theme::PIN,
            ),
            Item::Layer(i) => {
                let n = &net.nodes[*i];
                (
                    short_name(
                        &n.name,
                        n.op.onnx_type(),
                        self.open_block_of.get(i).map(String::as_str),
                    ),
                    self.shape_of(*i),
                    theme::op_color(&n.op),
                )
            }
            Item::Block { key, members } => (
                key.clone(),
                format!(
                    "{} · {} layers",
                    self.shape_of(*members.last().unwrap_or(&0)),
                    members.len()
                ),
                Color32::from_rgb(225, 228, 235),
            ),
        }
    }
}

impl NetViewer<'_> {
    /// A node's fill and outline: the state of training at a glance (unsupported red, the
    /// head in its colour, frozen tinted), then selection and the search match.
    fn look(&self, node: NodeId, snarl: &Snarl<Item>) -> (Color32, Option<Stroke>) {
        let ws = self.ws;
        let k = self.item(node);
        let (frozen, head, selected, error) = match &snarl[node] {
            Item::Layer(i) => {
                let n = &ws.network.nodes[*i];
                (
                    n.is_frozen(),
                    self.head.contains(i),
                    self.selected.as_deref() == Some(n.name.as_str()),
                    !n.op.is_supported()
                        || ws
                            .analysis
                            .issues_for(&n.name)
                            .any(|x| x.severity == crate::graph::analyze::Severity::Error),
                )
            }
            Item::Block { members, .. } => (
                self.frozen_count(members) == members.len(),
                members.iter().any(|m| self.head.contains(m)),
                false,
                members
                    .iter()
                    .any(|&m| !ws.network.nodes[m].op.is_supported()),
            ),
            _ => (false, false, false, false),
        };
        let fill = if error {
            theme::ERROR_FILL
        } else if head {
            theme::HEAD_FILL
        } else if frozen {
            theme::FROZEN_FILL
        } else {
            theme::NODE_FILL
        };
        // Strokes are in graph units: keep them a visible width on screen.
        let w = (2.0 / self.scale).max(2.0);
        let stroke = if selected {
            Some(Stroke::new(w, theme::SELECTED))
        } else if k.is_some() && k == self.found {
            Some(Stroke::new(w, theme::FOUND))
        } else if error {
            Some(Stroke::new(w, theme::ERROR))
        } else if head {
            Some(Stroke::new(w * 0.75, theme::HEAD))
        } else {
            None
        };
        (fill, stroke)
    }

    /// A click on a node's title selects its layer, or opens its block.
    fn header_clicked(&mut self, r: egui::Response, item: &Item) {
        if !r.clicked() {
            return;
        }
        match item {
            Item::Layer(i) => {
                let name = self.ws.network.nodes[*i].name.clone();
                self.commands.push(AppCommand::Select(Some(name)));
            }
            Item::Block { key, .. } => self.toggled.push(key.clone()),
            _ => {}
        }
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
        self.name_and_shape(item).0
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
        let item = &snarl[node];
        if !self.item(node).is_some_and(|k| self.visible.contains(&k)) {
            return;
        }
        let detailed = self.item(node).is_some_and(|k| self.detailed.contains(&k));
        if !detailed {
            // Zoomed out: name and shape in a font that stays readable on screen.
            let (font, chars) = self.compact_font();
            let (name, shape, colour) = self.name_and_shape(item);
            ui.vertical(|ui| {
                // Every box the same width, as the layout assumed; text elided, not wrapped.
                ui.set_width(TEXT_WIDTH);
                ui.style_mut().wrap_mode = Some(egui::TextWrapMode::Truncate);
                ui.spacing_mut().item_spacing.y = 0.0;
                let title = ui.add(
                    egui::Label::new(
                        RichText::new(elide_start(&name, chars))
                            .font(font.clone())
                            .color(colour)
                            .strong(),
                    )
                    .selectable(false)
                    .sense(egui::Sense::click()),
                );
                if !shape.is_empty() {
                    ui.label(RichText::new(elide_end(&shape, chars)).font(font));
                }
                self.header_clicked(title, item);
            });
            return;
        }
        let size = FontId::proportional(TITLE_SIZE);
        ui.set_width(TEXT_WIDTH);
        ui.style_mut().wrap_mode = Some(egui::TextWrapMode::Truncate);
        match item {
            Item::Input => {
                ui.label(RichText::new("Input").font(size).strong());
            }
            Item::Output(_) => {
                ui.label(RichText::new("Output").font(size).strong());
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
                        .font(size)
                        .strong()
                        .color(theme::op_color(&n.op));
                    let r = ui.add(egui::Label::new(title).sense(egui::Sense::click()));
                    self.header_clicked(r, item);
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
                    let r = ui.add(
                        egui::Label::new(RichText::new(elide_start(&key, 18)).font(size).strong())
                            .sense(egui::Sense::click()),
                    );
                    self.header_clicked(r.on_hover_text("Open this block"), item);
                    ui.label(RichText::new(format!("{count} layers")).small().weak());
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
        // Called with the item only: find its index (`detailed` is keyed by index).
        let k = self.index_of.get(item);
        !matches!(item, Item::Output(_)) && k.is_some_and(|k| self.detailed.contains(k))
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
        ui.set_width(TEXT_WIDTH);
        ui.style_mut().wrap_mode = Some(egui::TextWrapMode::Truncate);
        ui.vertical(|ui| match &snarl[node] {
            Item::Input => {
                ui.label(self.name_and_shape(&Item::Input).1);
            }
            Item::Output(_) => {}
            Item::Layer(i) => {
                let n = &ws.network.nodes[*i];
                ui.label(RichText::new(elide_start(&n.name, 34)).small().weak());
                ui.label(self.shape_of(*i));
                let params = self.params_of(&[*i]);
                if params > 0 {
                    ui.label(
                        RichText::new(format!("{} params", crate::format::group(params as u64)))
                            .small(),
                    );
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
                ui.label(self.shape_of(*members.last().unwrap_or(&0)));
                let params = self.params_of(members);
                ui.label(
                    RichText::new(format!("{} params", crate::format::group(params as u64)))
                        .small(),
                );
                let frozen = self.frozen_count(members);
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
        let (fill, stroke) = self.look(node, snarl);
        let f = default.fill(fill);
        match stroke {
            Some(s) => f.stroke(s),
            None => f,
        }
    }

    fn header_frame(
        &mut self,
        default: egui::Frame,
        node: NodeId,
        _inputs: &[InPin],
        _outputs: &[OutPin],
        snarl: &Snarl<Item>,
    ) -> egui::Frame {
        // The header covers most of a compact node: it carries the state's tint too.
        default.fill(self.look(node, snarl).0)
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

    fn final_node_rect(
        &mut self,
        node: NodeId,
        rect: Rect,
        _ui: &mut Ui,
        _snarl: &mut Snarl<Item>,
    ) {
        // Off-screen nodes are drawn empty: keep the size they had when last shown.
        if let Some(k) = self.item(node)
            && self.visible.contains(&k)
            && let Some(slot) = self.rects.get_mut(k)
        {
            *slot = Some(rect);
        }
    }

    fn draw_background(
        &mut self,
        _background: Option<&BackgroundPattern>,
        viewport: &Rect,
        _snarl_style: &SnarlStyle,
        _style: &egui::Style,
        painter: &egui::Painter,
        _snarl: &Snarl<Item>,
    ) {
        // Wires along the layout's routes, from each box's bottom to the next one's top
        // (boxes are drawn where the layout put them; their real height decides the start).
        let width = (1.3 / self.scale).max(1.3);
        let colour = Color32::from_rgb(110, 118, 135);
        let rect_of = |k: usize| {
            self.rects.get(k).copied().flatten().unwrap_or_else(|| {
                let [x, y] = self.view.layout.pos[k];
                Rect::from_min_size(pos2(x, y), NODE.into())
            })
        };
        for route in &self.view.layout.routes {
            let mut pts: Vec<Pos2> = route.points.iter().map(|&[x, y]| pos2(x, y)).collect();
            if pts.len() < 2 {
                continue;
            }
            let last = pts.len() - 1;
            pts[0] = rect_of(route.from).center_bottom();
            pts[last] = rect_of(route.to).center_top();
            let bb = Rect::from_points(&pts);
            if !bb.expand(width).intersects(*viewport) {
                continue;
            }
            let stroke = Stroke::new(width, colour);
            for w in pts.windows(2) {
                let (a, b) = (w[0], w[1]);
                let dy = b.y - a.y;
                if (b.x - a.x).abs() < 0.5 || dy <= 0.0 {
                    painter.line_segment([a, b], stroke);
                } else {
                    painter.add(egui::epaint::CubicBezierShape::from_points_stroke(
                        [a, pos2(a.x, a.y + dy * 0.5), pos2(b.x, b.y - dy * 0.5), b],
                        false,
                        Color32::TRANSPARENT,
                        stroke,
                    ));
                }
            }
            // An arrowhead into the reader.
            let end = pts[last];
            let s = 5.0 * width;
            painter.add(egui::Shape::convex_polygon(
                vec![end, end + vec2(-s * 0.6, -s), end + vec2(s * 0.6, -s)],
                colour,
                Stroke::NONE,
            ));
        }
        // The frozen-feature cut: a dashed line under the last cached layer.
        if let Some(cut) = self.cut
            && let Some(k) = self.view.items.iter().position(|it| {
                matches!(it, Item::Layer(i) if *i == cut)
                    || matches!(it, Item::Block { members, .. } if members.last() == Some(&cut))
            })
        {
            let r = rect_of(k);
            let y = r.bottom() + params_gap() / 2.0;
            let stroke = Stroke::new(width * 1.5, theme::HEAD);
            painter.extend(egui::Shape::dashed_line(
                &[pos2(r.left() - 30.0, y), pos2(r.right() + 30.0, y)],
                stroke,
                8.0 * width,
                5.0 * width,
            ));
            // The label sits on the line, right of the wire, on the background colour.
            let font = FontId::proportional((COMPACT_PX / self.scale).max(12.0));
            let text = painter.layout_no_wrap("✂ cached features".into(), font, theme::HEAD);
            let at = pos2(r.center().x + 12.0, y - text.size().y / 2.0);
            painter.rect_filled(
                Rect::from_min_size(at, text.size()).expand(2.0),
                2.0,
                Color32::from_rgb(10, 10, 10),
            );
            painter.galley(at, text, theme::HEAD);
        }
    }

    fn current_transform(&mut self, to_global: &mut TSTransform, _snarl: &mut Snarl<Item>) {
        if let Some(t) = self.transform.take() {
            *to_global = t;
        }
        self.scale = to_global.scaling;
        self.current = *to_global;
        // Level of detail: off screen, nodes are empty; zoomed out, compact; zoomed in, full.
        self.visible.clear();
        self.detailed.clear();
        let view = (to_global.inverse() * self.viewport).expand(40.0);
        for (k, &[x, y]) in self.view.layout.pos.iter().enumerate() {
            if Rect::from_min_size(pos2(x, y), NODE.into()).intersects(view) {
                self.visible.insert(k);
            }
        }
        if self.scale >= DETAIL_ZOOM {
            self.detailed.clone_from(&self.visible);
        }
    }
}
