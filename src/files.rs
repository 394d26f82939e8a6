//! Writing files so that a failure never leaves a half-written file in place of a good one;
//! listing the files under a folder.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Every file under `dir` (any depth) that `keep` accepts, sorted. A folder below it that
/// cannot be read is passed over; `dir` itself that cannot be read is the error.
pub fn under(dir: &Path, keep: impl Fn(&Path) -> bool) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut first = true;
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if first => return Err(e),
            Err(_) => continue,
        };
        first = false;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if keep(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes `bytes` to a temporary file next to `path`, syncs it, then renames it over `path`.
/// On any error the old file (if any) is untouched and the error says what failed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".graft-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| format!("cannot create a file in {}: {e}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    // Temporary files are private (0600); the result gets the old file's permissions, or the
    // usual ones for a new file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let permissions = std::fs::metadata(path)
            .map(|m| m.permissions())
            .unwrap_or_else(|_| std::fs::Permissions::from_mode(0o644));
        let _ = tmp.as_file().set_permissions(permissions);
    }
    tmp.persist(path)
        .map_err(|e| format!("cannot replace {}: {}", path.display(), e.error))?;
    Ok(())
}

/// Encodes 8-bit pixels (`Rgb8` or `Rgba8`, row after row) as PNG and writes them with
/// [`write_atomic`]. Through the PNG encoder itself: `image`'s `save` and `write_to` choose
/// the encoder at run time, which compiled every format's encoder into Graft (~100,000 lines
/// of LLVM IR, 2.7 % of the library) for the one Graft writes.
pub fn write_png(
    path: &Path,
    pixels: &[u8],
    [width, height]: [u32; 2],
    color: image::ExtendedColorType,
) -> Result<(), String> {
    use image::ImageEncoder;
    // The encoder panics on a buffer of the wrong length: an error here instead.
    let want = u64::from(width) * u64::from(height) * u64::from(color.bits_per_pixel()) / 8;
    if pixels.len() as u64 != want {
        return Err(format!(
            "cannot encode {}: {} bytes for {width}×{height} pixels of {color:?}, not {want}",
            path.display(),
            pixels.len()
        ));
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(pixels, width, height, color)
        .map_err(|e| format!("cannot encode {}: {e}", path.display()))?;
    write_atomic(path, &png)
}
