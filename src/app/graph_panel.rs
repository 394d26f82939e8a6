//! The network as a node graph (egui-snarl) on a layered top-to-bottom layout
//! (`layout`): the view's state, blocks that open in place, fit/focus/anchor moves, zoom
//! limits and the minimap. How each node, wire and menu is drawn is `graph_viewer`.

use super::graph_viewer::NetViewer;
use super::layout::{self, Item, NODE, View};
use super::workspace::Workspace;
use super::{AppCommand, theme};
use crate::graph::Network;
use egui::emath::TSTransform;
use egui::{Color32, Pos2, Rect, Stroke, Ui, Vec2, pos2, vec2};
use egui_snarl::ui::{SnarlStyle, SnarlWidget, get_selected_nodes};
use egui_snarl::{NodeId, Snarl};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Zoom limits. At `MIN_ZOOM` a compact node's two lines (name, shape) still fit its box in
/// a font `COMPACT_PX` high on screen; below `DETAIL_ZOOM` nodes are compact.
pub const MIN_ZOOM: f32 = 0.4;
const MAX_ZOOM: f32 = 2.0;
pub(super) const DETAIL_ZOOM: f32 = 0.85;
/// On-screen height of node text when zoomed out (the floor is 11 px).
pub const COMPACT_PX: f32 = 12.0;
/// Title size in graph units when zoomed in (≥ 11.9 px on screen at `DETAIL_ZOOM`).
pub(super) const TITLE_SIZE: f32 = 14.0;
/// Width inside a node's box left for text (pins and margins take the rest).
pub(super) const TEXT_WIDTH: f32 = NODE[0] - 44.0;

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
        self.head = crate::graph::edit::head_nodes(net, &ws.store).unwrap_or_default();
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
pub(super) fn params_gap() -> f32 {
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
