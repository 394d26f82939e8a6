//! The selected node: its attributes (editable where it makes sense), learn-rate factor,
//! freeze state and problems; and the network's problem list.

use super::workspace::Workspace;
use super::{AppCommand, theme};
use crate::graph::Op;
use crate::graph::analyze::Severity;
use crate::graph::edit::Edit;
use crate::graph::shape::format_dims;
use egui::{RichText, Ui};

pub fn inspector_ui(
    ui: &mut Ui,
    ws: &Workspace,
    selected: &Option<String>,
    typical_side: Option<usize>,
    commands: &mut Vec<AppCommand>,
) {
    let Some(name) = selected else {
        network_summary(ui, ws, typical_side, commands);
        return;
    };
    let Some(i) = ws.network.node_index(name) else {
        ui.label("The selected layer no longer exists.");
        return;
    };
    let node = &ws.network.nodes[i];
    let info = ws.analysis.nodes.get(i).cloned().unwrap_or_default();
    ui.heading(RichText::new(node.op.onnx_type()).color(theme::op_color(&node.op)));
    ui.label(RichText::new(&node.name).monospace());
    ui.separator();
    egui::Grid::new("node-facts")
        .num_columns(2)
        .striped(true)
        .show(ui, |ui| {
            ui.label("Output");
            ui.label(
                info.output_shapes
                    .iter()
                    .map(|s| s.as_ref().map_or("?".into(), |d| format_dims(d)))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            ui.end_row();
            ui.label("Parameters");
            ui.label(crate::format::group(info.params as u64));
            ui.end_row();
            ui.label("MACs / image");
            ui.label(crate::format::group(info.macs));
            ui.end_row();
            ui.label("Inputs");
            ui.label(node.present_inputs().collect::<Vec<_>>().join("\n"));
            ui.end_row();
        });
    ui.separator();

    let mut frozen = node.frozen;
    if ui
        .checkbox(&mut frozen, "Frozen (weights do not change)")
        .changed()
    {
        commands.push(AppCommand::Edit(Edit::SetFrozen {
            node: name.clone(),
            frozen,
        }));
    }
    if matches!(node.op, Op::BatchNorm { .. }) && node.is_frozen() {
        ui.label(
            RichText::new("A frozen BatchNorm runs in inference mode (running statistics).")
                .small()
                .italics(),
        );
    }
    ui.horizontal(|ui| {
        ui.label("Learn-rate factor");
        let mut f = node.lr_factor;
        let r = ui.add(egui::DragValue::new(&mut f).range(0.0..=100.0).speed(0.05));
        if r.changed() && f != node.lr_factor {
            commands.push(AppCommand::Edit(Edit::SetLrFactor {
                node: name.clone(),
                factor: f,
            }));
        }
    });
    ui.horizontal(|ui| {
        if ui.button("Freeze up to here").clicked() {
            commands.push(AppCommand::Edit(Edit::FreezeUntil { node: name.clone() }));
        }
        if ui.button("Unfreeze from here").clicked() {
            commands.push(AppCommand::Edit(Edit::UnfreezeFrom { node: name.clone() }));
        }
    });
    ui.separator();
    ui.label(RichText::new("Attributes").strong());
    attributes_ui(ui, name, &node.op, commands);
    let issues: Vec<_> = ws.analysis.issues_for(name).collect();
    if !issues.is_empty() {
        ui.separator();
        for issue in issues {
            let color = if issue.severity == Severity::Error {
                theme::ERROR
            } else {
                theme::WARNING
            };
            ui.label(RichText::new(&issue.message).color(color));
        }
    }
}

/// Editable attributes for the ops where changing them is meaningful; the rest read-only.
fn attributes_ui(ui: &mut Ui, name: &str, op: &Op, commands: &mut Vec<AppCommand>) {
    let mut edited = op.clone();
    let changed = match &mut edited {
        Op::Dropout { ratio } => ui
            .add(egui::Slider::new(ratio, 0.0..=0.95).text("ratio"))
            .changed(),
        Op::LeakyRelu { alpha } | Op::Elu { alpha } => ui
            .add(egui::DragValue::new(alpha).speed(0.01).prefix("alpha "))
            .changed(),
        Op::BatchNorm { epsilon, momentum } => {
            let a = ui
                .add(
                    egui::DragValue::new(epsilon)
                        .speed(1e-5)
                        .range(1e-7..=1.0)
                        .prefix("epsilon "),
                )
                .changed();
            let b = ui
                .add(egui::Slider::new(momentum, 0.0..=1.0).text("momentum (kept fraction)"))
                .changed();
            a || b
        }
        Op::Clip { min, max } => {
            let mut c = false;
            if let Some(v) = min {
                c |= ui
                    .add(egui::DragValue::new(v).speed(0.1).prefix("min "))
                    .changed();
            }
            if let Some(v) = max {
                c |= ui
                    .add(egui::DragValue::new(v).speed(0.1).prefix("max "))
                    .changed();
            }
            c
        }
        Op::Gemm { alpha, beta, .. } => {
            let a = ui
                .add(egui::DragValue::new(alpha).speed(0.01).prefix("alpha "))
                .changed();
            let b = ui
                .add(egui::DragValue::new(beta).speed(0.01).prefix("beta "))
                .changed();
            a || b
        }
        other => {
            ui.label(RichText::new(format!("{other:?}")).monospace().small());
            false
        }
    };
    if changed {
        commands.push(AppCommand::Edit(Edit::SetOp {
            node: name.to_owned(),
            op: edited,
        }));
    }
}

/// Every error and warning of the network; clicking one selects its node.
pub fn problems_ui(ui: &mut Ui, ws: &Workspace, commands: &mut Vec<AppCommand>) {
    let issues = &ws.analysis.issues;
    if issues.is_empty() {
        ui.label(RichText::new("✔ No problems").color(theme::OK));
        return;
    }
    egui::ScrollArea::vertical()
        .max_height(160.0)
        .id_salt("problems")
        .show(ui, |ui| {
            for issue in issues {
                let color = if issue.severity == Severity::Error {
                    theme::ERROR
                } else {
                    theme::WARNING
                };
                let text = RichText::new(issue.to_string()).color(color).small();
                if ui
                    .add(egui::Label::new(text).sense(egui::Sense::click()))
                    .clicked()
                    && let Some(n) = &issue.node
                {
                    commands.push(AppCommand::Select(Some(n.clone())));
                    commands.push(AppCommand::Focus(n.clone()));
                }
            }
        });
}

/// With no layer selected: the network as a whole — input, size, what import changed
/// (`Metadata.notes`) and, for a file that leaves the image size open, the side to build at.
fn network_summary(
    ui: &mut Ui,
    ws: &Workspace,
    typical_side: Option<usize>,
    commands: &mut Vec<AppCommand>,
) {
    let net = &ws.network;
    ui.heading(&net.name);
    ui.label(RichText::new("Select a layer in the graph to see and edit it.").weak());
    ui.add_space(8.0);
    // Wrapped lines and spaces, no grid or separator: in this resizable panel those make its
    // width creep by a pixel over frames, and the graph view beside it with it.
    let fact = |ui: &mut Ui, what: &str, value: String| {
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new(what).weak());
            ui.label(value);
        });
    };
    fact(
        ui,
        "Input",
        format!("{} {}", net.input.name, input_dims(&net.input)),
    );
    fact(
        ui,
        "Parameters",
        crate::format::group(ws.analysis.total_params as u64),
    );
    fact(
        ui,
        "MACs / image",
        crate::format::group(ws.analysis.total_macs),
    );
    fact(ui, "Layers", net.nodes.len().to_string());
    if net.metadata.opset > 0 {
        fact(ui, "Opset", net.metadata.opset.to_string());
    }
    if net.metadata.open_image_size {
        ui.add_space(8.0);
        image_size_ui(ui, ws, typical_side, commands);
    }
    if !net.metadata.notes.is_empty() {
        ui.add_space(8.0);
        ui.label(RichText::new("On import").strong());
        for note in &net.metadata.notes {
            ui.label(RichText::new(format!("ⓘ {note}")).small());
        }
    }
}

/// The side a network whose file leaves it open is built at: a field and a button to
/// rebuild, and the dataset's typical side offered.
fn image_size_ui(
    ui: &mut Ui,
    ws: &Workspace,
    typical_side: Option<usize>,
    commands: &mut Vec<AppCommand>,
) {
    let current = ws.network.input.shape.get(2).copied().unwrap_or(224);
    ui.label(RichText::new("Image size").strong());
    ui.label(
        RichText::new("The file leaves height and width open; Graft builds it at this side.")
            .small(),
    );
    let id = ui.id().with("image-side");
    let mut side = ui.data_mut(|d| *d.get_temp_mut_or(id, current));
    ui.add_enabled_ui(!ws.trained, |ui| {
        ui.horizontal(|ui| {
            ui.add(
                egui::DragValue::new(&mut side)
                    .range(32..=1024)
                    .speed(8)
                    .suffix(" px"),
            );
            if ui
                .add_enabled(side != current, egui::Button::new("Rebuild"))
                .on_hover_text("Read the file again at this size and replay the edits")
                .clicked()
            {
                commands.push(AppCommand::SetImageSize(Some(side)));
            }
        });
        if let Some(t) = typical_side.filter(|&t| t != current)
            && ui
                .button(format!("Use my images' side ({t} px)"))
                .on_hover_text("The median shorter side of the training images, rounded to 32")
                .clicked()
        {
            side = t;
            commands.push(AppCommand::SetImageSize(None));
        }
    })
    .response
    .on_disabled_hover_text(
        "Export or save the trained network first: rebuilding re-reads the file",
    );
    ui.data_mut(|d| d.insert_temp(id, side));
}

/// `N×3×224×224`: the batch shown as N where it is free.
fn input_dims(input: &crate::graph::Input) -> String {
    let dims: Vec<String> = input
        .shape
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if i == 0 && input.free_batch {
                "N".into()
            } else {
                d.to_string()
            }
        })
        .collect();
    dims.join("×")
}
