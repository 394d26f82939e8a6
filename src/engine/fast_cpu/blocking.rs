//! How Graft's matrix kernel (`mm.rs`) blocks its work for the caches: how many values of B
//! are packed at a time (from the L2 size sysfs reports), how many steps of the sum go in one
//! chunk, and how far apart the packed strips lie. The fused expand + depthwise step
//! (`fused.rs`) sizes its buffer by the same block.

use super::mm::NR;

/// Values of B packed at a time: a quarter of the L2 cache, so the block stays there while
/// every panel of filters passes over it (32 K values for 512 KB, the AMD EPYC this was
/// tuned on; 2 MB, as on a Xeon with AVX-512, measured ResNet-18 7 % faster with 96–128 K
/// than with 32 K). Linux's sysfs names the size; elsewhere 512 KB is assumed.
pub fn block_values() -> usize {
    static VALUES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *VALUES.get_or_init(|| {
        let l2 = l2_bytes().unwrap_or(512 << 10);
        (l2 / 4 / 4).clamp(16 << 10, 128 << 10)
    })
}

/// The size of CPU 0's level-2 cache, from `/sys/devices/system/cpu/cpu0/cache/index*/`.
fn l2_bytes() -> Option<usize> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let read = |name: &str| std::fs::read_to_string(entry.path().join(name)).ok();
        if read("level")?.trim() != "2" {
            return None;
        }
        parse_size(&read("size")?)
    })
}

/// A sysfs cache size such as `2048K` or `1M`, in bytes.
fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, unit) = match text.strip_suffix(['K', 'M']) {
        Some(digits) => (
            digits,
            if text.ends_with('K') {
                1 << 10
            } else {
                1 << 20
            },
        ),
        None => (text, 1),
    };
    digits.parse::<usize>().ok().map(|n| n * unit)
}
/// Most columns packed at a time (where each strip lies in C is kept on the stack).
pub const MAX_NC: usize = 1024;
/// Most steps of the sum per chunk.
pub const KC: usize = 512;

/// Steps of the sum per chunk for a sum of `k` (the last chunk takes what is left): [`KC`]
/// where the packed block keeps 256 columns at that height (a 2 MB L2), else 256 (a 512 KB
/// L2, as on the AMD EPYC the 256 was tuned on). On the Xeon, 512 over 256: ResNet-18 b32
/// 1.04× (1.00–1.11, ten alternating rounds), GoogLeNet 1.04×, Lite0 1.00×; chunks of even
/// length (576 as 288 + 288, not 512 + 64) gained nothing (0.99×).
pub fn chunk_steps(k: usize) -> usize {
    (block_values() / 256).clamp(256, KC).min(k.max(1))
}

/// Values from one packed strip of B to the next for a chunk of `kc` steps: the strip's
/// `kc × NR` values and one cache line more. Strips exactly `kc · NR` apart (a multiple of
/// 4 KB) put row i of every strip in the same L1 set, which packing a row of B across its
/// strips writes one after another; spread over the sets, ResNet-18 b32 ran 1.04× (eight
/// alternating rounds, with the masked packing of `gather.rs` on both sides).
pub fn strip_len(kc: usize) -> usize {
    kc * NR + NR
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sysfs cache sizes read as bytes; the block is a quarter of L2 within its bounds.
    #[test]
    fn cache_sizes_parse() {
        assert_eq!(parse_size("2048K\n"), Some(2 << 20));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("lots"), None);
        assert!((16 << 10..=128 << 10).contains(&block_values()));
    }
}
