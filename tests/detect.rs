//! A detector end to end through files: a detection head on the embedded backbone, set by
//! hand so that its answer is known (one 30×30 box of class "dog" at every cell centre),
//! exported, then `graft detect` on an image twice as wide as high: letterboxed in, boxes
//! mapped back into the image's own pixels, those that fall in the padding dropped, written
//! as JSON and drawn.

use graft::graph::edit::{Edit, apply, default_feature};
use graft::onnx;
use graft::weights::Tensor;

#[test]
fn graft_detect_maps_boxes_back_into_each_image() {
    let imported = onnx::import_bytes(graft::DEFAULT_MODEL).unwrap();
    let (mut net, mut store) = (imported.network, imported.store);
    let node = default_feature(&net, &store).unwrap();
    apply(
        &mut net,
        &mut store,
        &Edit::AddDetectionHead {
            node,
            classes: vec!["cat".into(), "dog".into()],
            anchors: vec![(30.0, 30.0), (90.0, 90.0)],
            seed: 1,
        },
    )
    .unwrap();
    // Weights 0; biases: anchor 0 at the cell centre (σ(0) = ½), its own size (e⁰), sure
    // (obj +10) of "dog" (+10, "cat" −10); anchor 1 sure of nothing.
    let w = store.get("detect.predict.weight").unwrap().clone();
    store.insert(
        "detect.predict.weight",
        Tensor {
            data: vec![0.0; w.data.len()],
            shape: w.shape,
        },
    );
    let bias = vec![
        0.0, 0.0, 0.0, 0.0, 10.0, -10.0, 10.0, // anchor 0
        0.0, 0.0, 0.0, 0.0, -10.0, -10.0, -10.0, // anchor 1
    ];
    store.insert(
        "detect.predict.bias",
        Tensor {
            shape: vec![14],
            data: bias,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("detector.onnx");
    onnx::export_file(&net, &store, &model).unwrap();
    let image = dir.path().join("wide.png");
    image::RgbImage::from_pixel(448, 224, image::Rgb([90, 120, 150]))
        .save(&image)
        .unwrap();
    let json = dir.path().join("boxes.json");
    let drawn = dir.path().join("drawn");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .arg("detect")
        .arg(&model)
        .arg(&image)
        .arg("--json")
        .arg(&json)
        .arg("--draw")
        .arg(&drawn)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let boxes = v[0]["boxes"].as_array().unwrap();
    // 448×224 goes in at scale ½ with 56 rows of padding above and below: of the 7×7 cells,
    // rows 0 and 6 lie in the padding, rows 1..5 reach into the image. 5 × 7 = 35.
    assert_eq!(boxes.len(), 35, "{v}");
    for b in boxes {
        assert_eq!(b["class"], "dog");
        assert!(b["score"].as_f64().unwrap() > 0.999);
        let c: Vec<f64> = b["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert!(
            c[0] >= 0.0 && c[1] >= 0.0 && c[2] <= 448.0 && c[3] <= 224.0,
            "{c:?}"
        );
    }
    // The middle row (input rows 97..127) is wholly inside: source rows 82..142, 60 px high,
    // and the first column's box spans source x 2..62.
    let full = boxes
        .iter()
        .map(|b| {
            b["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect::<Vec<_>>()
        })
        .find(|c| (c[1] - 82.0).abs() < 0.5 && c[0] < 5.0)
        .unwrap();
    for (g, w) in full.iter().zip([2.0, 82.0, 62.0, 142.0]) {
        assert!((g - w).abs() < 0.5, "{full:?}");
    }
    let picture = image::open(drawn.join("wide.png")).unwrap().to_rgb8();
    assert_eq!(picture.dimensions(), (448, 224));
    assert_ne!(
        picture.get_pixel(2, 100).0,
        [90, 120, 150],
        "a box edge is drawn"
    );

    // A classifier is not a detector: a clear error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["detect", "default"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no detection head"));
}
