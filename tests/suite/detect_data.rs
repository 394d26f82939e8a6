//! Box datasets in the YOLO, COCO and Pascal VOC layouts, written by the test from the same
//! scenes: each reads back to the same classes and boxes, the layout is found without being
//! named, and what is wrong (a box outside the image, a box without area, an image without
//! boxes, an image that does not decode, an undeclared class) is reported, never a panic.

use graft::detect::BBox;
use graft::detect::dataset::{BoxError, BoxFormat, Finding, detect_format, load};
use std::path::Path;

/// A scene: image name, size, and (class, box in pixels).
type Scene = (&'static str, (u32, u32), Vec<(usize, BBox)>);

fn scenes() -> Vec<Scene> {
    vec![
        (
            "a",
            (64, 48),
            vec![
                (0, BBox::new(4.0, 4.0, 20.0, 30.0)),
                (1, BBox::new(30.0, 10.0, 60.0, 40.0)),
            ],
        ),
        // Reaches 6 px past the right edge: clipped.
        ("b", (64, 48), vec![(1, BBox::new(40.0, 8.0, 70.0, 24.0))]),
        // No boxes.
        ("c", (32, 32), vec![]),
        // A box of no area: dropped, leaving no boxes.
        ("d", (32, 32), vec![(0, BBox::new(10.0, 10.0, 10.0, 20.0))]),
    ]
}

const CLASSES: [&str; 2] = ["cat", "dog"];

fn write_image(path: &Path, (w, h): (u32, u32)) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 99]))
        .save(path)
        .unwrap();
}

fn write_yolo(root: &Path) {
    std::fs::write(
        root.join("data.yaml"),
        "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: cat\n  1: dog\n",
    )
    .unwrap();
    for (name, size, boxes) in scenes() {
        write_image(&root.join(format!("images/train/{name}.png")), size);
        let (w, h) = (size.0 as f32, size.1 as f32);
        let lines: Vec<String> = boxes
            .iter()
            .map(|(c, b)| {
                let cx = (b.x0 + b.x1) / 2.0 / w;
                let cy = (b.y0 + b.y1) / 2.0 / h;
                format!("{c} {cx} {cy} {} {}", (b.x1 - b.x0) / w, (b.y1 - b.y0) / h)
            })
            .collect();
        let label = root.join(format!("labels/train/{name}.txt"));
        std::fs::create_dir_all(label.parent().unwrap()).unwrap();
        if !lines.is_empty() {
            std::fs::write(label, lines.join("\n")).unwrap();
        }
    }
}

fn write_coco(root: &Path) {
    let mut images = Vec::new();
    let mut annotations = Vec::new();
    for (i, (name, size, boxes)) in scenes().into_iter().enumerate() {
        write_image(&root.join(format!("images/{name}.png")), size);
        images.push(serde_json::json!({
            "id": i + 10, "file_name": format!("{name}.png"), "width": size.0, "height": size.1
        }));
        for (c, b) in boxes {
            annotations.push(serde_json::json!({
                "id": annotations.len(), "image_id": i + 10, "category_id": c + 1,
                "bbox": [b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0], "iscrowd": 0, "area": b.area()
            }));
        }
    }
    let doc = serde_json::json!({
        "images": images, "annotations": annotations,
        "categories": [{"id": 2, "name": "dog"}, {"id": 1, "name": "cat"}]
    });
    std::fs::create_dir_all(root.join("annotations")).unwrap();
    std::fs::write(
        root.join("annotations/instances_train.json"),
        doc.to_string(),
    )
    .unwrap();
}

fn write_voc(root: &Path) {
    std::fs::create_dir_all(root.join("Annotations")).unwrap();
    for (name, size, boxes) in scenes() {
        write_image(&root.join(format!("JPEGImages/{name}.png")), size);
        let objects: String = boxes
            .iter()
            .map(|(c, b)| {
                format!(
                    "<object><name>{}</name><difficult>0</difficult><bndbox><xmin>{}</xmin>\
                     <ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>",
                    CLASSES[*c], b.x0, b.y0, b.x1, b.y1
                )
            })
            .collect();
        std::fs::write(
            root.join(format!("Annotations/{name}.xml")),
            format!(
                "<annotation><filename>{name}.png</filename><size><width>{}</width>\
                 <height>{}</height></size>{objects}</annotation>",
                size.0, size.1
            ),
        )
        .unwrap();
    }
}

#[test]
fn the_three_layouts_read_back_to_the_same_boxes_with_a_report() {
    for (format, write) in [
        (BoxFormat::Yolo, write_yolo as fn(&Path)),
        (BoxFormat::Coco, write_coco),
        (BoxFormat::Voc, write_voc),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path());
        assert_eq!(detect_format(dir.path()), Some(format));
        use graft::project::Layout;
        assert_eq!(Layout::Automatic.resolve(dir.path()), Layout::Boxes(format));
        // The window's progress: every image counted, the last as the total.
        let seen = std::sync::Mutex::new((0, 0));
        let never = std::sync::atomic::AtomicBool::new(false);
        let note = |d: usize, t: usize| *seen.lock().unwrap() = (d, t);
        let reading = graft::detect::dataset::Reading {
            progress: &note,
            cancel: &never,
        };
        graft::detect::dataset::read(dir.path(), None, reading).unwrap();
        let (done, total) = *seen.lock().unwrap();
        assert!(
            total >= 4 && done + 1 == total,
            "{format:?}: {done}/{total}"
        );
        let stop = std::sync::atomic::AtomicBool::new(true);
        let cancelled = graft::detect::dataset::Reading {
            progress: &note,
            cancel: &stop,
        };
        assert_eq!(
            graft::detect::dataset::read(dir.path(), None, cancelled).unwrap_err(),
            BoxError::Cancelled
        );
        let ds = load(dir.path(), None).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(ds.classes, CLASSES, "{format:?}");
        assert_eq!(ds.images.len(), 4, "{format:?}");
        let by_name = |n: &str| {
            ds.images
                .iter()
                .find(|i| i.path.file_stem().unwrap() == n)
                .unwrap()
        };
        let a = by_name("a");
        assert_eq!((a.width, a.height), (64, 48));
        let want = scenes()[0].2.clone();
        assert_eq!(a.objects.len(), 2, "{format:?}");
        for (o, (c, b)) in a.objects.iter().zip(&want) {
            assert_eq!(o.class, *c, "{format:?}");
            for (g, w) in [
                (o.bbox.x0, b.x0),
                (o.bbox.y0, b.y0),
                (o.bbox.x1, b.x1),
                (o.bbox.y1, b.y1),
            ] {
                assert!((g - w).abs() < 1e-3, "{format:?}: {:?} vs {b:?}", o.bbox);
            }
        }
        assert_eq!(by_name("b").objects[0].bbox.x1, 64.0, "{format:?}: clipped");
        assert!(by_name("c").objects.is_empty() && by_name("d").objects.is_empty());
        let f = &ds.findings;
        let has = |p: &dyn Fn(&Finding) -> bool| f.iter().any(p);
        assert!(has(
            &|x| matches!(x, Finding::Clipped { path, .. } if path.ends_with("b.png"))
        ));
        assert!(has(
            &|x| matches!(x, Finding::ZeroArea { path, .. } if path.ends_with("d.png"))
        ));
        assert!(has(
            &|x| matches!(x, Finding::NoObjects { path } if path.ends_with("c.png"))
        ));
        assert_eq!(ds.counts(), vec![1, 2], "{format:?}");
        if format == BoxFormat::Yolo {
            assert!(ds.validation_dir.as_ref().unwrap().ends_with("images/val"));
        }
    }
}

#[test]
fn undecodable_images_are_skipped_and_unknown_classes_name_their_files() {
    let dir = tempfile::tempdir().unwrap();
    write_yolo(dir.path());
    std::fs::write(dir.path().join("images/train/broken.png"), b"not a png").unwrap();
    let ds = load(dir.path(), Some(BoxFormat::Yolo)).unwrap();
    assert_eq!(ds.images.len(), 4);
    assert!(
        ds.findings
            .iter()
            .any(|x| matches!(x, Finding::Unreadable { path, .. } if path.ends_with("broken.png")))
    );
    std::fs::write(dir.path().join("labels/train/a.txt"), "7 0.5 0.5 0.1 0.1\n").unwrap();
    let err = load(dir.path(), None).unwrap_err();
    assert!(
        matches!(&err, BoxError::UnknownClass { class, files, .. }
        if class == "7" && files[0].ends_with("a.txt")),
        "{err}"
    );
    assert!(err.to_string().contains("a.txt"), "{err}");
    // A malformed line names the file and the line.
    std::fs::write(
        dir.path().join("labels/train/a.txt"),
        "0 0.5 oops 0.1 0.1\n",
    )
    .unwrap();
    let err = load(dir.path(), None).unwrap_err().to_string();
    assert!(err.contains("a.txt") && err.contains("line 1"), "{err}");

    let voc = tempfile::tempdir().unwrap();
    write_voc(voc.path());
    std::fs::write(voc.path().join("classes.txt"), "cat\n").unwrap();
    let err = load(voc.path(), None).unwrap_err();
    assert!(
        matches!(&err, BoxError::UnknownClass { class, .. } if class == "'dog'"),
        "{err}"
    );

    let coco = tempfile::tempdir().unwrap();
    write_coco(coco.path());
    std::fs::write(
        coco.path().join("annotations/instances_train.json"),
        "{ not json",
    )
    .unwrap();
    let err = load(coco.path(), None).unwrap_err().to_string();
    assert!(err.contains("instances_train.json"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        load(empty.path(), None),
        Err(BoxError::Unrecognised(_))
    ));
}

/// `graft boxes DIR` reports the layout, boxes per class, findings and anchors (in the
/// detector's input pixels), as text and JSON; a folder that is no box dataset is one clear
/// error.
#[test]
fn the_command_line_checks_a_box_dataset() {
    let dir = tempfile::tempdir().unwrap();
    write_coco(dir.path());
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
            .arg("boxes")
            .args(args)
            .output()
            .unwrap()
    };
    let root = dir.path().to_str().unwrap();
    let out = run(&[root, "--json", "--anchors", "3", "--side", "128"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format"], "COCO");
    assert_eq!(v["images"], 4);
    assert_eq!(v["classes"][1]["name"], "dog");
    assert_eq!(v["classes"][1]["boxes"], 2);
    assert_eq!(v["findings"].as_array().unwrap().len(), 4, "{v}");
    // Three boxes, three anchors: the boxes themselves, in the 128 px input (images a and b
    // are 64 px wide: scale 2), smallest area first — b's clipped 24×16 dog, a's 16×26 cat,
    // a's 30×30 dog.
    let anchors: Vec<(f64, f64)> = v["anchors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a[0].as_f64().unwrap(), a[1].as_f64().unwrap()))
        .collect();
    assert_eq!(
        anchors,
        vec![(48.0, 32.0), (32.0, 52.0), (60.0, 60.0)],
        "{v}"
    );
    assert_eq!(v["anchor_mean_iou"], 1.0);

    let text = run(&[root, "--anchors", "2"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        run(&[root]).status.success(),
        "too few boxes for anchors is a line, not a failure"
    );
    assert!(
        text.contains("COCO layout, 4 images, 3 boxes") && text.contains("anchors for a 416×416"),
        "{text}"
    );

    let empty = tempfile::tempdir().unwrap();
    let out = run(&[empty.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a box dataset"));
}
