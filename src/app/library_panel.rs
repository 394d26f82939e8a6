//! The Network tab: the graph in the middle, the inspector on the right, and on the left the
//! head/freeze buttons, layer search, the layer library and the problem list.

use super::{AppCommand, GraftApp, graph_panel, graph_viewer, inspector_panel, theme};
use crate::format::elide_start;
use egui::{Key, RichText};

impl GraftApp {
    pub(super) fn network_tab(&mut self, ui: &mut egui::Ui) {
        let Some(ws) = self.ws.as_ref() else {
            ui.centered_and_justified(|ui| ui.spinner());
            return;
        };
        egui::Panel::right("inspector")
            .resizable(true)
            .default_size(300.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("inspector")
                    .show(ui, |ui| {
                        inspector_panel::inspector_ui(
                            ui,
                            ws,
                            &self.selected,
                            self.data.typical_side,
                            &mut self.commands,
                        );
                    });
            });
        let mut not_found = false;
        egui::Panel::left("library")
            .resizable(true)
            .default_size(210.0)
            .show(ui, |ui| {
                ui.heading("Network");
                if ui
                    .button("📚 Pretrained networks…")
                    .on_hover_text("The gallery: size, accuracy and speed of each network")
                    .clicked()
                {
                    self.commands.push(AppCommand::ShowGallery);
                }
                let matches_data = self
                    .data
                    .train
                    .as_ref()
                    .is_some_and(|d| d.classes == ws.network.metadata.labels);
                if self.data.boxes.is_some() {
                    let add = ui.add(egui::Button::new(
                        RichText::new("✚ Add detection head").strong(),
                    ));
                    if add
                        .on_hover_text(
                            "Replace the layers after the deepest stride-16 feature map (or the \
                             selected node) by a YOLO-style detection head for the box dataset",
                        )
                        .clicked()
                    {
                        self.commands.push(AppCommand::AddDetectionHead);
                    }
                } else {
                    let adapt = ui.add_enabled(
                        self.data.train.is_some(),
                        egui::Button::new(RichText::new("✚ Adapt to dataset").strong()),
                    );
                    if adapt
                        .on_hover_text(
                            "Replace the final classifier with a new one for the dataset's classes",
                        )
                        .clicked()
                    {
                        self.commands.push(AppCommand::AdaptHead);
                    }
                }
                if matches_data {
                    ui.label(
                        RichText::new(format!(
                            "✔ head matches the {} classes",
                            ws.network.metadata.labels.len()
                        ))
                        .small()
                        .color(theme::OK),
                    );
                }
                if ui
                    .button("🔒 Freeze backbone")
                    .on_hover_text("Freeze every layer before the head")
                    .clicked()
                {
                    self.commands.push(AppCommand::FreezeBackbone);
                }
                ui.horizontal(|ui| {
                    let r = ui.add(
                        egui::TextEdit::singleline(&mut self.graph.find)
                            .hint_text("find a layer…")
                            .desired_width(130.0),
                    );
                    if (r.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter)))
                        || ui.button("🔍").clicked()
                    {
                        match self.graph.find_node(&ws.network) {
                            Some(n) => {
                                self.commands.push(AppCommand::Select(Some(n.clone())));
                                self.commands.push(AppCommand::Focus(n));
                            }
                            None => not_found = true,
                        }
                    }
                });
                if ui.button("⛶ Fit to view").clicked() {
                    self.commands.push(AppCommand::FitView);
                }
                ui.separator();
                ui.label(RichText::new("Layer library").strong());
                match &self.selected {
                    Some(n) => {
                        ui.label(
                            RichText::new(format!("click to insert after {}", elide_start(n, 22)))
                                .small()
                                .weak(),
                        );
                        egui::ScrollArea::vertical()
                            .id_salt("library")
                            .max_height(260.0)
                            .show(ui, |ui| {
                                graph_viewer::library_menu(
                                    ui,
                                    &ws.network,
                                    n,
                                    false,
                                    &mut self.commands,
                                );
                            });
                    }
                    None => {
                        ui.label(
                            RichText::new("Select a layer to insert after it.")
                                .small()
                                .weak(),
                        );
                    }
                }
                ui.separator();
                ui.label(RichText::new("Problems").strong());
                inspector_panel::problems_ui(ui, ws, &mut self.commands);
            });
        egui::CentralPanel::default().show(ui, |ui| {
            graph_panel::graph_ui(ui, &mut self.graph, ws, &self.selected, &mut self.commands);
        });
        if not_found {
            self.set_info("no layer matches");
        }
    }
}
