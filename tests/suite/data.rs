//! Image folders: scanning, skipped files with reasons, clear errors for unusable datasets,
//! stratified seeded splits, and every image kind decoded to RGB.

use crate::common;

use graft::data::{DataError, Dataset, scan};
use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};
use std::path::Path;
use std::sync::atomic::AtomicBool;

fn scan_dir(p: &Path) -> Result<Dataset, DataError> {
    scan(p, &|_, _| {}, &AtomicBool::new(false))
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn skipped_files_are_listed_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    common::write_dataset(dir.path(), 3, 16, 1);
    std::fs::write(dir.path().join("red/notes.txt"), "not an image").unwrap();
    std::fs::write(
        dir.path().join("red/broken.png"),
        b"\x89PNG\r\n\x1a\n garbage",
    )
    .unwrap();
    std::fs::write(dir.path().join("dark/fake.jpg"), b"hello").unwrap();
    // A PNG header claiming 100000 x 100000 pixels: a decompression bomb.
    let mut bomb = image::RgbImage::new(1, 1);
    bomb.put_pixel(0, 0, Rgb([1, 2, 3]));
    let mut bytes = Vec::new();
    bomb.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .unwrap();
    bytes[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    // IHDR's CRC covers its type and data (bytes 12..29).
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(dir.path().join("bright/bomb.png"), &bytes).unwrap();

    let d = scan_dir(dir.path()).unwrap();
    assert_eq!(d.classes, vec!["bright", "dark", "red"]);
    assert_eq!(d.counts(), vec![3, 3, 3]);
    let reason = |name: &str| {
        d.skipped
            .iter()
            .find(|s| s.path.ends_with(name))
            .map(|s| s.reason.clone())
            .unwrap_or_default()
    };
    assert!(
        reason("notes.txt").contains("not an image"),
        "{:?}",
        d.skipped
    );
    assert!(reason("broken.png").contains("corrupt"), "{:?}", d.skipped);
    assert!(
        reason("fake.jpg").contains("not an image") || reason("fake.jpg").contains("corrupt"),
        "{:?}",
        d.skipped
    );
    assert!(reason("bomb.png").contains("too large"), "{:?}", d.skipped);
    assert!(d.validate().is_ok());
}

#[test]
fn unusable_datasets_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        scan_dir(dir.path()).unwrap_err(),
        DataError::NoClasses(dir.path().to_owned())
    );

    std::fs::create_dir(dir.path().join("cats")).unwrap();
    std::fs::create_dir(dir.path().join("dogs")).unwrap();
    assert_eq!(
        scan_dir(dir.path()).unwrap().validate().unwrap_err(),
        DataError::NoImages(dir.path().to_owned())
    );

    image::RgbImage::new(8, 8)
        .save(dir.path().join("cats/a.png"))
        .unwrap();
    let err = scan_dir(dir.path()).unwrap().validate().unwrap_err();
    assert_eq!(err, DataError::EmptyClass("dogs".into()));
    assert!(err.to_string().contains("'dogs' has no usable images"));

    std::fs::remove_dir(dir.path().join("dogs")).unwrap();
    assert_eq!(
        scan_dir(dir.path()).unwrap().validate().unwrap_err(),
        DataError::OneClass("cats".into())
    );

    let (ok, _, err) = {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
            .args([
                "train",
                "--model",
                "default",
                "--data",
                dir.path().to_str().unwrap(),
                "--export",
                dir.path().join("x.onnx").to_str().unwrap(),
            ])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert!(!ok && err.contains("only one class ('cats')"), "{err}");
    assert!(!dir.path().join("x.onnx").exists());
}

#[test]
fn splits_are_stratified_and_repeatable() {
    let dir = tempfile::tempdir().unwrap();
    common::write_dataset(dir.path(), 10, 8, 2);
    let d = scan_dir(dir.path()).unwrap();
    let (t1, v1) = d.split(0.2, 42).unwrap();
    let (_, v2) = d.split(0.2, 42).unwrap();
    let (_, v3) = d.split(0.2, 43).unwrap();
    assert_eq!((t1.counts(), v1.counts()), (vec![8, 8, 8], vec![2, 2, 2]));
    assert_eq!(v1, v2, "same seed, same split");
    assert_ne!(v1.samples, v3.samples, "another seed, another split");
    assert!(
        v1.samples.iter().all(|s| !t1.samples.contains(s)),
        "no image in both"
    );
    assert!(d.split(1.5, 0).is_err());
}

#[test]
fn every_image_kind_becomes_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    ImageBuffer::from_pixel(4, 4, Luma([200u8]))
        .save(p("gray.png"))
        .unwrap();
    ImageBuffer::from_pixel(4, 4, Luma([50000u16]))
        .save(p("gray16.png"))
        .unwrap();
    ImageBuffer::from_pixel(4, 4, LumaA([100u8, 128]))
        .save(p("graya.png"))
        .unwrap();
    ImageBuffer::from_pixel(4, 4, Rgba([10u8, 20, 30, 0]))
        .save(p("rgba.png"))
        .unwrap();
    ImageBuffer::from_pixel(4, 4, Rgb([65535u16, 0, 0]))
        .save(p("rgb16.png"))
        .unwrap();
    ImageBuffer::from_pixel(4, 4, Rgb([1u8, 2, 3]))
        .save(p("rgb.bmp"))
        .unwrap();
    ImageBuffer::from_pixel(4, 4, Rgb([9u8, 9, 9]))
        .save(p("rgb.jpg"))
        .unwrap();
    // A palette GIF.
    ImageBuffer::from_pixel(4, 4, Rgba([0u8, 255, 0, 255]))
        .save(p("palette.gif"))
        .unwrap();
    let expect = [
        ("gray.png", [200, 200, 200]),
        ("gray16.png", [195, 195, 195]),
        ("graya.png", [100, 100, 100]),
        ("rgba.png", [10, 20, 30]),
        ("rgb16.png", [255, 0, 0]),
        ("rgb.bmp", [1, 2, 3]),
        ("palette.gif", [0, 255, 0]),
    ];
    for (name, rgb) in expect {
        let img =
            graft::data::preprocess::load_rgb(&p(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(img.get_pixel(1, 1).0, rgb, "{name}");
    }
    let jpg = graft::data::preprocess::load_rgb(&p("rgb.jpg")).unwrap();
    assert!(
        jpg.get_pixel(1, 1)
            .0
            .iter()
            .all(|&v| (v as i32 - 9).abs() <= 2)
    );
}
