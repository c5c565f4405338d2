//! AVIF through `edge serve`, end to end: the real binary over HTTP, outputs decoded by an
//! independent decoder (Pillow's libavif) and checked for size, alpha and SSIM against
//! imgedge's own lossless PNG of the same variant; `fmt=auto` with the `Accept` headers real
//! browsers send.

mod common;

use common::*;
use image::{DynamicImage, GenericImageView, ImageFormat};
use imgedge_tests::{pillow, ssim};

fn store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), "rgb.png", &gradient(400, 300, ImageFormat::Png));
    put(
        dir.path(),
        "photo.jpg",
        &gradient(300, 400, ImageFormat::Jpeg),
    );
    put(dir.path(), "rgba.png", &half_transparent_png(200, 100));
    dir
}

fn is_avif(b: &[u8]) -> bool {
    b.get(4..12) == Some(b"ftypavif")
}

/// Every fit on RGB and RGBA masters: the sizes of the PNG of the same request, alpha
/// kept exactly where the master has it, and close to that lossless PNG.
#[test]
fn fmt_avif_for_rgb_and_rgba_in_every_fit() {
    let dir = store();
    let edge = EdgeServer::start(dir.path(), &[]);
    let shapes = [
        "w=150",
        "h=90",
        "w=120&h=120",
        "w=120&h=120&fit=contain&bg=1e90ff",
        "w=120&h=120&fit=fill",
        "w=120&h=120&fit=inside",
        "w=120&h=120&fit=outside",
        "w=900",
    ];
    for master in ["/rgb.png", "/photo.jpg", "/rgba.png"] {
        for shape in shapes {
            let what = format!("{master}?{shape}");
            let avif = edge.get(&format!("{master}?{shape}&fmt=avif"));
            assert_eq!(avif.status, 200, "{what}");
            assert_eq!(avif.header("content-type"), Some("image/avif"), "{what}");
            assert!(is_avif(&avif.body), "{what}: not an AVIF file");
            let png = edge.get(&format!("{master}?{shape}&fmt=png"));
            assert_eq!(png.status, 200, "{what} png");
            let want = image::load_from_memory(&png.body).unwrap();
            let seen = pillow::decode(&avif.body);
            assert_eq!(seen.format, "AVIF", "{what}");
            assert_eq!(seen.size, want.dimensions(), "{what}: size");
            assert!(!seen.icc, "{what}: a colour profile");
            let alpha = want.color().has_alpha();
            assert_eq!(seen.mode == "RGBA", alpha, "{what}: alpha is {}", seen.mode);
            if alpha {
                // Transparent stays transparent and opaque stays opaque (lossy alpha may
                // ring a little at the hard edge).
                let (a, b) = (seen.image.to_rgba8(), want.to_rgba8());
                let diffs: Vec<u8> = a
                    .pixels()
                    .zip(b.pixels())
                    .map(|(p, q)| p[3].abs_diff(q[3]))
                    .collect();
                let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
                let far = diffs.iter().filter(|&&d| d > 16).count() as f64 / diffs.len() as f64;
                assert!(
                    mean <= 2.0 && far <= 0.03,
                    "{what}: alpha mean error {mean:.2}, {far:.3} off by > 16"
                );
            }
            let s = ssim(&seen.image, &DynamicImage::ImageRgba8(want.to_rgba8()));
            assert!(
                s >= 0.93,
                "{what}: SSIM {s:.4} against the lossless variant"
            );
        }
    }
}

/// The `Accept` headers of image requests in real browsers (MDN's list and browsers' own).
const BROWSERS: [(&str, &str, &str); 5] = [
    ("Chrome", "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", "image/avif"),
    ("Firefox", "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5", "image/avif"),
    (
        "Safari 16.4+",
        "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5",
        "image/avif",
    ),
    (
        "Safari 14-16.3",
        "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5",
        "image/webp",
    ),
    ("curl", "*/*", "image/png"),
];

#[test]
fn fmt_auto_follows_real_browser_accept_headers() {
    let dir = store();
    let edge = EdgeServer::start(dir.path(), &[]);
    for (browser, accept, want) in BROWSERS {
        let reply = edge.get_with("/rgb.png?w=160&fmt=auto", &[("accept", accept)]);
        assert_eq!(reply.status, 200, "{browser}");
        assert_eq!(reply.header("content-type"), Some(want), "{browser}");
        assert_eq!(reply.header("vary"), Some("Accept"), "{browser}");
        let seen = pillow::decode(&reply.body);
        assert_eq!(seen.size, (160, 120), "{browser}");
        let fmt = want.trim_start_matches("image/");
        assert_eq!(seen.format.to_lowercase(), fmt, "{browser}");
        // The same object as the explicit format (one variant per output).
        let explicit = edge.get(&format!("/rgb.png?w=160&fmt={fmt}"));
        assert_eq!(explicit.body, reply.body, "{browser}");
    }
    let keys: Vec<String> = edge
        .variant_objects()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for key in ["w=160,fmt=avif.avif", "w=160,fmt=webp.webp", "w=160.png"] {
        assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
    }
}
