//! How each item of the graph view is drawn (the egui-snarl viewer): compact or detailed
//! nodes by zoom, their look (training state, selection, search match), the context menu
//! and the layer library, rewiring by pin drag, and the wires and cache cut behind the
//! nodes. `graph_panel` owns the state and the view; this draws one frame of it.

use super::graph_panel::{COMPACT_PX, DETAIL_ZOOM, TEXT_WIDTH, TITLE_SIZE, params_gap};
use super::layout::{Item, NODE, View};
use super::workspace::Workspace;
use super::{AppCommand, theme};
use crate::format::{elide_end, elide_start};
use crate::graph::edit::{Edit, LayerKind, NewLayer};
use crate::graph::shape::format_dims;
use crate::graph::{Network, Op};
use egui::emath::TSTransform;
use egui::{Color32, FontId, Pos2, Rect, RichText, Stroke, Ui, pos2, vec2};
use egui_snarl::ui::{BackgroundPattern, PinInfo, SnarlStyle, SnarlViewer};
use egui_snarl::{InPin, NodeId, OutPin, Snarl};
use std::collections::{HashMap, HashSet};

pub(super) struct NetViewer<'a> {
    pub(super) ws: &'a Workspace,
    pub(super) selected: &'a Option<String>,
    pub(super) commands: &'a mut Vec<AppCommand>,
    /// A transform to apply this frame (fit, focus, a block opening).
    pub(super) transform: Option<TSTransform>,
    /// Blocks to open or close after this frame.
    pub(super) toggled: Vec<String>,
    pub(super) open_block_of: &'a HashMap<usize, String>,
    /// The graph's screen rectangle.
    pub(super) viewport: Rect,
    /// Items on screen this frame; the rest get an empty header (egui lays out every widget
    /// it is handed, visible or not).
    pub(super) visible: HashSet<usize>,
    /// Items drawn in full this frame; the rest are compact (name and shape).
    pub(super) detailed: HashSet<usize>,
    /// This frame's zoom and transform.
    pub(super) scale: f32,
    pub(super) current: TSTransform,
    pub(super) view: &'a View,
    pub(super) item_of: &'a HashMap<NodeId, usize>,
    pub(super) index_of: &'a HashMap<Item, usize>,
    pub(super) head: &'a HashSet<usize>,
    pub(super) cut: Option<usize>,
    pub(super) found: Option<usize>,
    pub(super) rects: &'a mut Vec<Option<Rect>>,
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
                if ui
                    .button("Add detection head here")
                    .on_hover_text("Replace everything after this feature map by a detection head for the box dataset")
                    .clicked()
                {
                    self.commands.push(AppCommand::Select(Some(name.clone())));
                    self.commands.push(AppCommand::AddDetectionHead);
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
