//! Decode with limits, then the whole render: any bytes as a master give an encoded
//! variant or a typed 415 (`unsupported_image`) / 422 (`image_too_large`), never a panic
//! (a contained one aborts here: libFuzzer's panic hook runs first) and never more heap
//! than the ceiling. PNG (incl. the streaming row decoder and its box pre-shrink), JPEG
//! and WebP, each through the decoder the origin uses.
//!
//! Input: 3 bytes of spec, then the master's bytes. Byte 0: output format (bits 0–1: png,
//! jpeg, webp, webp) and fit (bits 2–4: cover, contain, fill, inside, outside, none…);
//! bytes 1 and 2: width and height of the box (0 = not given).
#![no_main]

use edge::spec::{Fit, Format, VariantSpec};
use edge::transform::{master_size, render, Limits};
use edge::ErrorKind;
use imgedge_fuzz::{expect_kind, limit_heap, report_peak};
use libfuzzer_sys::fuzz_target;

/// Small limits, so that no input can make the fuzzer itself run out of memory: 1 MiP
/// masters (the decoders' allocation guard is then 4 MiB of pixels + 16 MiB).
const LIMITS: Limits = Limits {
    max_pixels: 1 << 20,
    max_bytes: 1 << 20,
    inline_max_bytes: 0,
};
/// The heap ceiling: the guard above, a full-size RGBA copy and the encoder's buffers,
/// with room to spare; docs/reliability.md reports the peak measured.
const HEAP_LIMIT: usize = 64 << 20;

fn spec(selector: [u8; 3]) -> VariantSpec {
    let [choice, w, h] = selector;
    let format = ["png", "jpeg", "webp", "webp"][usize::from(choice & 3)];
    let fit = ["cover", "contain", "fill", "inside", "outside"].get(usize::from(choice >> 2 & 7));
    let mut query = format!("fmt={format}");
    if w > 0 {
        query.push_str(&format!("&w={w}"));
    }
    if h > 0 {
        query.push_str(&format!("&h={h}"));
    }
    if let (Some(fit), true) = (fit, w > 0 && h > 0) {
        query.push_str(&format!("&fit={fit}"));
    }
    VariantSpec::parse(&query, Format::Png, None).expect("a valid query")
}

fuzz_target!(|data: &[u8]| {
    limit_heap(HEAP_LIMIT);
    let Some((selector, master)) = data.split_first_chunk::<3>() else {
        return;
    };
    let spec = spec(*selector);
    let _ = master_size(master);
    match render(master, &spec, &LIMITS) {
        Ok(variant) => {
            assert!(!variant.bytes.is_empty());
            let sniffed = image::guess_format(&variant.bytes).expect("the variant sniffs");
            let want = match spec.format {
                Format::Png => image::ImageFormat::Png,
                Format::Jpeg => image::ImageFormat::Jpeg,
                _ => image::ImageFormat::WebP,
            };
            assert_eq!(sniffed, want);
            assert_eq!(
                master_size(&variant.bytes),
                Some((variant.width, variant.height))
            );
            if spec.fit != Some(Fit::Outside) {
                assert!(spec.width.is_none_or(|w| variant.width <= w), "{spec:?}");
                assert!(spec.height.is_none_or(|h| variant.height <= h), "{spec:?}");
            }
        }
        Err(e) => expect_kind(
            &e,
            &[ErrorKind::UnsupportedImage, ErrorKind::ImageTooLarge],
            "render",
        ),
    }
    report_peak();
});
