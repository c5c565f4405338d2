//! Render tests: formats, limits, bad masters, pixel formats, and golden-quality checks
//! against independent references (image's own Lanczos3, a float area average, image's
//! `apply_orientation`) measured with SSIM and channel deltas.

use std::time::{Duration, Instant};

use image::codecs::png::PngEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, GenericImageView, ImageDecoder, ImageEncoder, RgbImage, RgbaImage};

use super::*;
use crate::error::ErrorKind;
use crate::spec::{Fit, Rgb};

const WHITE: Rgb = Rgb {
    r: 255,
    g: 255,
    b: 255,
};

fn spec(width: Option<u32>, height: Option<u32>, fit: Option<Fit>, format: Format) -> VariantSpec {
    VariantSpec {
        width,
        height,
        fit,
        format,
        quality: 80,
        background: WHITE,
        master_format: Format::Png,
    }
}

fn w(width: u32, format: Format) -> VariantSpec {
    spec(Some(width), None, None, format)
}

/// A smooth, photo-like image: colour gradients, low-frequency waves and soft blobs, and
/// nothing symmetric, so a wrong rotation or flip is visible.
fn photo(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let fx = x as f32 / width as f32;
        let fy = y as f32 / height as f32;
        let wave = ((x as f32) / 9.0).sin() * ((y as f32) / 13.0 + fx * 3.0).cos();
        let blob = (-((fx - 0.3).powi(2) + (fy - 0.25).powi(2)) * 30.0).exp();
        let r = 40.0 + 150.0 * fx + 30.0 * wave + 30.0 * blob;
        let g = 30.0 + 170.0 * fy * fy - 25.0 * wave;
        let b = 200.0 - 120.0 * fx * fy + 50.0 * blob + 10.0 * wave;
        image::Rgb([r, g, b].map(|v| v.clamp(0.0, 255.0) as u8))
    })
}

fn png_of(img: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A PNG written with the png crate, for pixel formats `image` does not write
/// (palette) and for extra chunks (`eXIf`).
fn png_raw(
    width: u32,
    height: u32,
    colour: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
    setup: impl FnOnce(&mut png::Encoder<&mut Vec<u8>>),
    chunks: &[(&[u8; 4], &[u8])],
) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(colour);
        enc.set_depth(depth);
        setup(&mut enc);
        let mut writer = enc.write_header().unwrap();
        for (name, payload) in chunks {
            writer
                .write_chunk(png::chunk::ChunkType(**name), payload)
                .unwrap();
        }
        writer.write_image_data(data).unwrap();
    }
    out
}

fn jpeg_of(img: &RgbImage, app1: Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 95);
    if let Some(segment) = app1 {
        enc.add_app_segment(1, segment).unwrap();
    }
    enc.encode(
        img.as_raw(),
        img.width() as u16,
        img.height() as u16,
        jpeg_encoder::ColorType::Rgb,
    )
    .unwrap();
    out
}

/// A big-endian TIFF block with one IFD entry: Orientation = `value`.
fn tiff_orientation(value: u8) -> Vec<u8> {
    let mut t = b"MM\0\x2a\0\0\0\x08".to_vec();
    t.extend_from_slice(&[0, 1]); // one entry
    t.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, value, 0, 0]);
    t.extend_from_slice(&[0, 0, 0, 0]); // no next IFD
    t
}

fn exif_app1(value: u8) -> Vec<u8> {
    let mut seg = b"Exif\0\0".to_vec();
    seg.extend_from_slice(&tiff_orientation(value));
    seg
}

/// Decode an output for checking. JPEG goes through jpeg-decoder: image's zune-jpeg
/// 0.5.15 mis-decodes the non-interleaved scans jpeg-encoder writes with optimised Huffman
/// tables (libjpeg-turbo, i.e. browsers, and jpeg-decoder read them correctly).
fn decoded(bytes: &[u8]) -> DynamicImage {
    if bytes.starts_with(&[0xff, 0xd8]) {
        let mut d = jpeg_decoder::Decoder::new(bytes);
        let data = d.decode().expect("JPEG output decodes");
        let info = d.info().unwrap();
        let (w, h) = (u32::from(info.width), u32::from(info.height));
        return match info.pixel_format {
            jpeg_decoder::PixelFormat::L8 => {
                DynamicImage::ImageLuma8(image::GrayImage::from_raw(w, h, data).unwrap())
            }
            jpeg_decoder::PixelFormat::RGB24 => {
                DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, data).unwrap())
            }
            other => panic!("unexpected JPEG output {other:?}"),
        };
    }
    image::load_from_memory(bytes).expect("output decodes")
}

fn render_ok(master: &[u8], spec: &VariantSpec) -> Rendered {
    render(master, spec, &Limits::default()).expect("renders")
}

fn render_err(master: &[u8], spec: &VariantSpec, limits: &Limits) -> crate::Error {
    render(master, spec, limits).expect_err("must fail")
}

/// Mean SSIM on luma over 8×8 windows with stride 4 (Wang et al. constants).
fn ssim(a: &DynamicImage, b: &DynamicImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions(), "SSIM needs equal sizes");
    let (a, b) = (a.to_luma8(), b.to_luma8());
    let (w, h) = a.dimensions();
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let (mut total, mut count) = (0.0, 0);
    let win = 8u32.min(w).min(h);
    let mut y = 0;
    while y + win <= h {
        let mut x = 0;
        while x + win <= w {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for j in y..y + win {
                for i in x..x + win {
                    let pa = f64::from(a.get_pixel(i, j)[0]);
                    let pb = f64::from(b.get_pixel(i, j)[0]);
                    sa += pa;
                    sb += pb;
                    saa += pa * pa;
                    sbb += pb * pb;
                    sab += pa * pb;
                }
            }
            let n = f64::from(win * win);
            let (ma, mb) = (sa / n, sb / n);
            let (va, vb, cov) = (saa / n - ma * ma, sbb / n - mb * mb, sab / n - ma * mb);
            total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2))
                / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            count += 1;
            x += 4;
        }
        y += 4;
    }
    total / f64::from(count)
}

/// Mean and max absolute difference over all RGB channels.
fn deltas(a: &DynamicImage, b: &DynamicImage) -> (f64, u8) {
    let (a, b) = (a.to_rgb8(), b.to_rgb8());
    assert_eq!(a.dimensions(), b.dimensions());
    let (mut sum, mut max) = (0u64, 0u8);
    for (pa, pb) in a.as_raw().iter().zip(b.as_raw()) {
        let d = pa.abs_diff(*pb);
        sum += u64::from(d);
        max = max.max(d);
    }
    (sum as f64 / a.as_raw().len() as f64, max)
}

fn lanczos(img: &DynamicImage, width: u32, height: u32) -> DynamicImage {
    img.resize_exact(width, height, image::imageops::FilterType::Lanczos3)
}

// ---------------------------------------------------------------- formats and sizes

#[test]
fn each_format_has_its_magic_bytes_and_the_planned_size() {
    let master = png_of(&DynamicImage::ImageRgb8(photo(300, 200)));
    for format in ALL_FORMATS {
        let out = render_ok(&master, &w(150, format));
        let magic_ok = match format {
            Format::Png => out.bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            Format::Jpeg => out.bytes.starts_with(&[0xff, 0xd8, 0xff]),
            Format::Webp => &out.bytes[0..4] == b"RIFF" && &out.bytes[8..12] == b"WEBP",
            Format::Avif => &out.bytes[4..12] == b"ftypavif",
        };
        assert!(magic_ok, "{format:?} magic");
        assert_eq!((out.width, out.height), (150, 100), "{format:?}");
        assert_eq!(out.format, format);
        assert_eq!(dimensions(&out.bytes), (150, 100), "{format:?}");
    }
}

const ALL_FORMATS: [Format; 4] = [Format::Png, Format::Jpeg, Format::Webp, Format::Avif];

/// An AVIF's item properties: the size (`ispe`) and whether an alpha item exists
/// (`auxC` with the alpha URN). Pixels are checked by an independent decoder (Pillow's
/// libavif) in the end-to-end tests.
fn avif_props(bytes: &[u8]) -> ((u32, u32), bool) {
    let at = bytes
        .windows(4)
        .position(|b| b == b"ispe")
        .expect("an ispe box");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    let alpha = bytes
        .windows(b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha".len())
        .any(|b| b == b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha");
    ((be(at + 8), be(at + 12)), alpha)
}

/// The size of an output in any format.
fn dimensions(bytes: &[u8]) -> (u32, u32) {
    if bytes.get(4..12) == Some(b"ftypavif") {
        return avif_props(bytes).0;
    }
    decoded(bytes).dimensions()
}

#[test]
fn fit_modes_give_their_sizes() {
    let master = png_of(&DynamicImage::ImageRgb8(photo(300, 200)));
    let cases = [
        (Fit::Cover, (100, 100)),
        (Fit::Contain, (100, 100)),
        (Fit::Fill, (100, 100)),
        (Fit::Inside, (100, 67)),
        (Fit::Outside, (150, 100)),
    ];
    for (fit, size) in cases {
        let out = render_ok(
            &master,
            &spec(Some(100), Some(100), Some(fit), Format::Webp),
        );
        assert_eq!(decoded(&out.bytes).dimensions(), size, "{fit:?}");
        let avif = render_ok(
            &master,
            &spec(Some(100), Some(100), Some(fit), Format::Avif),
        );
        assert_eq!(dimensions(&avif.bytes), size, "{fit:?} avif");
    }
    // No upscaling: a box bigger than the master.
    let out = render_ok(
        &master,
        &spec(Some(900), Some(900), Some(Fit::Cover), Format::Png),
    );
    assert_eq!(decoded(&out.bytes).dimensions(), (200, 200));
    let out = render_ok(&master, &w(1000, Format::Png));
    assert_eq!(decoded(&out.bytes).dimensions(), (300, 200));
}

#[test]
fn format_only_conversion_keeps_size_and_pixels() {
    let img = DynamicImage::ImageRgb8(photo(64, 48));
    let out = render_ok(&png_of(&img), &spec(None, None, None, Format::Png));
    let back = decoded(&out.bytes);
    assert_eq!(
        back.to_rgb8(),
        img.to_rgb8(),
        "PNG → PNG is lossless and unresampled"
    );
}

#[test]
fn output_is_deterministic_and_quality_matters() {
    let master = png_of(&DynamicImage::ImageRgb8(photo(320, 240)));
    for format in ALL_FORMATS {
        let s = spec(Some(160), Some(100), Some(Fit::Cover), format);
        let a = render_ok(&master, &s).bytes;
        let b = render_ok(&master, &s).bytes;
        assert_eq!(a, b, "{format:?} bytes differ between runs");
    }
    for format in [Format::Jpeg, Format::Webp, Format::Avif] {
        let mut low = w(160, format);
        low.quality = 20;
        let high = w(160, format);
        let (lo, hi) = (
            render_ok(&master, &low).bytes,
            render_ok(&master, &high).bytes,
        );
        assert!(
            lo.len() < hi.len(),
            "{format:?}: q=20 {} ≥ q=80 {}",
            lo.len(),
            hi.len()
        );
    }
}

#[test]
fn avif_keeps_alpha_only_where_there_is_some() {
    let rgba = png_of(&DynamicImage::ImageRgba8(half_transparent(64, 48)));
    let (size, alpha) = avif_props(&render_ok(&rgba, &w(32, Format::Avif)).bytes);
    assert_eq!((size, alpha), ((32, 24), true));
    // Opaque RGBA, RGB and grey masters: colour only.
    let opaque = png_of(&DynamicImage::ImageRgba8(
        DynamicImage::ImageRgb8(photo(64, 48)).to_rgba8(),
    ));
    let grey = png_of(&DynamicImage::ImageLuma8(
        DynamicImage::ImageRgb8(photo(64, 48)).to_luma8(),
    ));
    for master in [opaque, grey] {
        let (size, alpha) = avif_props(&render_ok(&master, &w(32, Format::Avif)).bytes);
        assert_eq!((size, alpha), ((32, 24), false));
    }
}

// ---------------------------------------------------------------- limits and bad masters

/// A PNG whose header claims 100000×100000 pixels, with no image data: a few dozen bytes.
fn png_bomb() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let enc = png::Encoder::new(&mut out, 100_000, 100_000);
        let writer = enc.write_header().unwrap();
        drop(writer);
    }
    out
}

#[test]
fn decompression_bomb_is_refused_from_the_header_fast() {
    let bomb = png_bomb();
    assert!(bomb.len() < 100, "bomb is {} bytes", bomb.len());
    let started = Instant::now();
    let e = render_err(&bomb, &w(100, Format::Webp), &Limits::default());
    let took = started.elapsed();
    assert_eq!(e.kind, ErrorKind::ImageTooLarge, "{e}");
    assert_eq!(e.status(), 422);
    assert!(e.message.contains("100000×100000"), "{}", e.message);
    assert!(e.message.contains("50000000"), "{}", e.message);
    // Header-only: microseconds in practice; the bound leaves room for a loaded machine.
    assert!(took < Duration::from_millis(50), "took {took:?}");
}

#[test]
fn pixel_and_byte_limits_are_configuration() {
    let master = png_of(&DynamicImage::ImageRgb8(photo(100, 80)));
    let tight = Limits {
        max_pixels: 7_999,
        max_bytes: 1 << 20,
        ..Limits::default()
    };
    let e = render_err(&master, &w(10, Format::Png), &tight);
    assert_eq!(e.kind, ErrorKind::ImageTooLarge);
    assert!(
        e.message.contains("100×80") && e.message.contains("7999"),
        "{}",
        e.message
    );
    let exact = Limits {
        max_pixels: 8_000,
        ..tight
    };
    assert!(render(&master, &w(10, Format::Png), &exact).is_ok());

    let small = Limits {
        max_pixels: 1 << 20,
        max_bytes: 100,
        ..Limits::default()
    };
    let e = render_err(&master, &w(10, Format::Png), &small);
    assert_eq!(e.kind, ErrorKind::ImageTooLarge);
    assert!(
        e.message.contains(&master.len().to_string()) && e.message.contains("100 bytes"),
        "{}",
        e.message
    );
    // The JPEG path checks pixels from its header too.
    let jpeg = jpeg_of(&photo(100, 80), None);
    let e = render_err(&jpeg, &w(10, Format::Png), &tight);
    assert_eq!(e.kind, ErrorKind::ImageTooLarge);
}

#[test]
fn unreadable_masters_are_415_with_a_clear_message() {
    let png = png_of(&DynamicImage::ImageRgb8(photo(64, 64)));
    let jpeg = jpeg_of(&photo(64, 64), None);
    let mut corrupt_png = png.clone();
    let mid = corrupt_png.len() / 2;
    for b in &mut corrupt_png[mid..mid + 16] {
        *b ^= 0x5a;
    }
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("zero bytes", vec![], "empty"),
        (
            "text",
            b"hello, this is not an image".to_vec(),
            "not a recognisable image",
        ),
        (
            "gif",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
            "GIF",
        ),
        ("truncated png", png[..png.len() / 2].to_vec(), "PNG"),
        ("corrupt png", corrupt_png, "PNG"),
        ("png signature only", png[..8].to_vec(), "PNG"),
        ("truncated jpeg header", jpeg[..20].to_vec(), "JPEG"),
        (
            "riff but not webp body",
            b"RIFF\x20\0\0\0WEBPVP8 \x10\0\0\0garbage!".to_vec(),
            "WebP",
        ),
    ];
    for (name, bytes, needle) in cases {
        let e = render_err(&bytes, &w(32, Format::Png), &Limits::default());
        assert_eq!(e.kind, ErrorKind::UnsupportedImage, "{name}: {e}");
        assert_eq!(e.status(), 415, "{name}");
        assert!(e.message.contains(needle), "{name}: {}", e.message);
    }
}

// ---------------------------------------------------------------- pixel formats

#[test]
fn sixteen_bit_png_matches_its_eight_bit_version() {
    let img = photo(200, 150);
    let wide: Vec<u8> = img
        .as_raw()
        .iter()
        .flat_map(|&v| (u16::from(v) * 257).to_be_bytes())
        .collect();
    let master16 = png_raw(
        200,
        150,
        png::ColorType::Rgb,
        png::BitDepth::Sixteen,
        &wide,
        |_| {},
        &[],
    );
    let master8 = png_of(&DynamicImage::ImageRgb8(img));
    let a = render_ok(&master16, &w(100, Format::Png));
    let b = render_ok(&master8, &w(100, Format::Png));
    assert_eq!(
        a.bytes, b.bytes,
        "16-bit v·257 strips to exactly the 8-bit image"
    );
}

#[test]
fn palette_png_with_transparency_keeps_alpha() {
    // Left half palette entry 0 (opaque red), right half entry 1 (fully transparent).
    let (width, height) = (64u32, 32u32);
    let idx: Vec<u8> = (0..height)
        .flat_map(|_| (0..width).map(|x| u8::from(x >= 32)))
        .collect();
    let master = png_raw(
        width,
        height,
        png::ColorType::Indexed,
        png::BitDepth::Eight,
        &idx,
        |e| {
            e.set_palette(vec![255, 0, 0, 0, 0, 255]);
            e.set_trns(vec![255, 0]);
        },
        &[],
    );
    let out = decoded(&render_ok(&master, &w(32, Format::Png)).bytes).to_rgba8();
    assert_eq!(out.dimensions(), (32, 16));
    assert_eq!(out.get_pixel(2, 8).0, [255, 0, 0, 255]);
    assert_eq!(out.get_pixel(30, 8)[3], 0);
    // WebP keeps it too.
    let webp = decoded(&render_ok(&master, &w(32, Format::Webp)).bytes);
    assert!(webp.color().has_alpha());
    assert_eq!(webp.to_rgba8().get_pixel(30, 8)[3], 0);
}

#[test]
fn grey_masters_work_for_every_output() {
    let grey = DynamicImage::ImageRgb8(photo(120, 90)).to_luma8();
    let master = png_of(&DynamicImage::ImageLuma8(grey.clone()));
    let reference = lanczos(&DynamicImage::ImageLuma8(grey), 60, 45);
    for format in [Format::Png, Format::Jpeg, Format::Webp] {
        let out = decoded(&render_ok(&master, &w(60, format)).bytes);
        assert_eq!(out.dimensions(), (60, 45));
        let s = ssim(&out, &reference);
        assert!(s > 0.97, "{format:?} SSIM {s}");
    }
    let png = decoded(&render_ok(&master, &w(60, Format::Png)).bytes);
    assert_eq!(png.color(), image::ColorType::L8, "grey stays grey in PNG");

    let la: Vec<u8> = (0..40 * 20)
        .flat_map(|i| [(i % 251) as u8, if i % 40 < 20 { 255 } else { 0 }])
        .collect();
    let master = png_raw(
        40,
        20,
        png::ColorType::GrayscaleAlpha,
        png::BitDepth::Eight,
        &la,
        |_| {},
        &[],
    );
    let out = decoded(&render_ok(&master, &w(20, Format::Png)).bytes);
    assert_eq!(out.color(), image::ColorType::La8);
    let mut s = w(20, Format::Jpeg);
    s.background = Rgb { r: 0, g: 200, b: 0 };
    let jpeg = decoded(&render_ok(&master, &s).bytes).to_rgb8();
    let p = jpeg.get_pixel(18, 5).0;
    assert!(
        p[1] > 170 && p[0] < 40 && p[2] < 40,
        "transparent grey flattened onto green: {p:?}"
    );
}

fn half_transparent(width: u32, height: u32) -> RgbaImage {
    // Left half opaque blue; right half fully transparent but with bright green colour
    // values, which must never bleed into visible pixels.
    RgbaImage::from_fn(width, height, |x, _| {
        if x < width / 2 {
            image::Rgba([0, 0, 255, 255])
        } else {
            image::Rgba([0, 255, 0, 0])
        }
    })
}

#[test]
fn real_alpha_is_kept_for_png_and_webp_and_flattened_for_jpeg() {
    let master = png_of(&DynamicImage::ImageRgba8(half_transparent(100, 40)));
    for format in [Format::Png, Format::Webp] {
        let out = decoded(&render_ok(&master, &w(50, format)).bytes);
        assert!(out.color().has_alpha(), "{format:?}");
        let rgba = out.to_rgba8();
        assert_eq!(rgba.get_pixel(49, 10)[3], 0, "{format:?}");
        assert_eq!(rgba.get_pixel(2, 10)[3], 255, "{format:?}");
    }
    let mut s = w(50, Format::Jpeg);
    s.background = Rgb { r: 255, g: 0, b: 0 };
    let jpeg = decoded(&render_ok(&master, &s).bytes).to_rgb8();
    let p = jpeg.get_pixel(45, 10).0;
    assert!(
        p[0] > 230 && p[1] < 25 && p[2] < 25,
        "flattened onto red: {p:?}"
    );
    let p = jpeg.get_pixel(5, 10).0;
    assert!(p[2] > 230 && p[0] < 25, "opaque blue kept: {p:?}");
}

#[test]
fn premultiplied_resize_does_not_bleed_hidden_colour() {
    let master = png_of(&DynamicImage::ImageRgba8(half_transparent(101, 31)));
    for (width, format) in [(37, Format::Png), (7, Format::Png), (37, Format::Webp)] {
        let out = decoded(&render_ok(&master, &w(width, format)).bytes).to_rgba8();
        for p in out.pixels() {
            if p[3] > 8 {
                assert!(p[1] < 24, "{format:?} w={width}: green bled into {p:?}");
            }
        }
    }
}

#[test]
fn opaque_alpha_is_dropped() {
    let rgba = DynamicImage::ImageRgb8(photo(80, 60)).to_rgba8();
    let master = png_of(&DynamicImage::ImageRgba8(rgba));
    let out = decoded(&render_ok(&master, &w(40, Format::Png)).bytes);
    assert_eq!(out.color(), image::ColorType::Rgb8);
}

#[test]
fn contain_pads_with_the_background_colour() {
    let master = png_of(&DynamicImage::ImageRgb8(photo(200, 100)));
    let mut s = spec(Some(100), Some(100), Some(Fit::Contain), Format::Png);
    s.background = Rgb {
        r: 10,
        g: 20,
        b: 30,
    };
    let out = decoded(&render_ok(&master, &s).bytes).to_rgb8();
    assert_eq!(out.dimensions(), (100, 100));
    assert_eq!(out.get_pixel(0, 0).0, [10, 20, 30]);
    assert_eq!(out.get_pixel(99, 99).0, [10, 20, 30]);
    assert_eq!(out.get_pixel(50, 24).0, [10, 20, 30]);
    assert_ne!(out.get_pixel(50, 50).0, [10, 20, 30]);
    // The image band is rows 25..75 and matches a plain resize of the master.
    let band = DynamicImage::ImageRgb8(image::imageops::crop_imm(&out, 0, 25, 100, 50).to_image());
    let reference = lanczos(&decoded(&master), 100, 50);
    assert!(ssim(&band, &reference) > 0.98);
}

// ---------------------------------------------------------------- golden quality

#[test]
fn golden_resize_matches_image_lanczos3() {
    let img = DynamicImage::ImageRgb8(photo(800, 600));
    let master = png_of(&img);
    for (width, height) in [(400, 300), (533, 400), (250, 188)] {
        let out = decoded(&render_ok(&master, &w(width, Format::Png)).bytes);
        let reference = lanczos(&img, width, height);
        let s = ssim(&out, &reference);
        let (mean, max) = deltas(&out, &reference);
        assert!(s > 0.99, "{width}: SSIM {s}");
        assert!(
            mean < 1.5 && max < 40,
            "{width}: mean Δ {mean}, max Δ {max}"
        );
    }
    // And lossy outputs stay close to the same reference.
    for format in [Format::Jpeg, Format::Webp] {
        let out = decoded(&render_ok(&master, &w(400, format)).bytes);
        let s = ssim(&out, &lanczos(&img, 400, 300));
        assert!(s > 0.93, "{format:?}: SSIM {s}");
    }
}

/// Exact area average with float accumulation: the reference for large shrink factors.
fn area_average(img: &RgbImage, k: u32) -> DynamicImage {
    let (ow, oh) = (img.width() / k, img.height() / k);
    DynamicImage::ImageRgb8(RgbImage::from_fn(ow, oh, |x, y| {
        let mut acc = [0f64; 3];
        for j in 0..k {
            for i in 0..k {
                let p = img.get_pixel(x * k + i, y * k + j);
                for c in 0..3 {
                    acc[c] += f64::from(p[c]);
                }
            }
        }
        image::Rgb(acc.map(|v| (v / f64::from(k * k)).round() as u8))
    }))
}

#[test]
fn golden_large_shrink_uses_box_then_lanczos_and_matches_area_average() {
    let img = photo(1600, 1200);
    let master = png_of(&DynamicImage::ImageRgb8(img.clone()));
    let out = decoded(&render_ok(&master, &w(100, Format::Png)).bytes);
    assert_eq!(out.dimensions(), (100, 75));
    let reference = area_average(&img, 16);
    let s = ssim(&out, &reference);
    let (mean, _) = deltas(&out, &reference);
    assert!(s > 0.97, "SSIM {s}");
    assert!(mean < 3.0, "mean Δ {mean}");
}

#[test]
fn golden_cover_crops_the_centre() {
    let img = DynamicImage::ImageRgb8(photo(800, 400));
    let master = png_of(&img);
    let out = decoded(
        &render_ok(
            &master,
            &spec(Some(200), Some(200), Some(Fit::Cover), Format::Png),
        )
        .bytes,
    );
    let centre = img.crop_imm(200, 0, 400, 400);
    let reference = lanczos(&centre, 200, 200);
    assert!(ssim(&out, &reference) > 0.99);
    // A left-aligned crop is clearly different: the test can tell.
    let left = lanczos(&img.crop_imm(0, 0, 400, 400), 200, 200);
    assert!(ssim(&out, &left) < 0.9);
}

fn oriented(img: &DynamicImage, o: Orientation) -> DynamicImage {
    let mut img = img.clone();
    img.apply_orientation(o);
    img
}

#[test]
fn golden_exif_orientation_in_jpeg() {
    let stored = photo(320, 240);
    for exif in [6u8, 3, 8] {
        let master = jpeg_of(&stored, Some(exif_app1(exif)));
        // The reference decodes the same JPEG, so only the orientation can differ.
        let raw = decoded(&master);
        let o = Orientation::from_exif(exif).unwrap();
        let out = decoded(&render_ok(&master, &w(120, Format::Png)).bytes);
        let want = oriented(&raw, o);
        let (rw, rh) = (120, (want.height() * 120).div_ceil(want.width()));
        assert_eq!(out.dimensions(), (rw, rh), "exif {exif}");
        let s = ssim(&out, &lanczos(&want, rw, rh));
        assert!(s > 0.98, "exif {exif}: SSIM {s}");
        // Negative control: the opposite rotation (or none) is far off.
        let wrong = match exif {
            6 => Orientation::Rotate270,
            8 => Orientation::Rotate90,
            _ => Orientation::NoTransforms,
        };
        let s_wrong = ssim(&out, &lanczos(&oriented(&raw, wrong), rw, rh));
        assert!(
            s_wrong < 0.85,
            "exif {exif}: wrong orientation SSIM {s_wrong}"
        );
    }
}

#[test]
fn golden_exif_orientation_in_png_all_eight_with_cover_crop() {
    let stored = DynamicImage::ImageRgb8(photo(320, 240));
    for exif in 1..=8u8 {
        let tiff = tiff_orientation(exif);
        let master = png_raw(
            320,
            240,
            png::ColorType::Rgb,
            png::BitDepth::Eight,
            stored.as_bytes(),
            |_| {},
            &[(b"eXIf", &tiff)],
        );
        let o = Orientation::from_exif(exif).unwrap();
        let want = oriented(&stored, o);
        // Cover 100×50: oriented 320×240 keeps rows 40..200; 240×320 keeps rows 100..220.
        let out = decoded(
            &render_ok(
                &master,
                &spec(Some(100), Some(50), Some(Fit::Cover), Format::Png),
            )
            .bytes,
        );
        assert_eq!(out.dimensions(), (100, 50));
        let (cw, ch) = (want.width(), want.width() / 2);
        let centre = want.crop_imm(0, (want.height() - ch) / 2, cw, ch);
        let s = ssim(&out, &lanczos(&centre, 100, 50));
        assert!(s > 0.98, "exif {exif}: SSIM {s}");
    }
}

// ---------------------------------------------------------------- colour profiles

fn png_with_icc(img: &DynamicImage, icc: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = PngEncoder::new(&mut out);
    enc.set_icc_profile(icc.to_vec()).unwrap();
    enc.write_image(
        img.as_bytes(),
        img.width(),
        img.height(),
        img.color().into(),
    )
    .unwrap();
    out
}

fn icc_of(bytes: &[u8]) -> Option<Vec<u8>> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .unwrap();
    let mut decoder = reader.into_decoder().unwrap();
    decoder.icc_profile().unwrap()
}

/// No profile in any container: every ICC profile starts its header with a size and has
/// `acsp` at byte 36, and no output carries those bytes (AVIF's `colr` is the `nclx` kind).
fn assert_no_profile(bytes: &[u8], what: &str) {
    if bytes.get(4..12) != Some(b"ftypavif") {
        assert_eq!(icc_of(bytes), None, "{what}");
    }
    assert!(
        !bytes.windows(4).any(|w| w == b"acsp"),
        "{what}: an ICC profile is embedded"
    );
    assert!(
        !bytes.windows(4).any(|w| w == b"prof"),
        "{what}: a colr prof box"
    );
}

fn srgb_profile() -> Vec<u8> {
    moxcms::ColorProfile::new_srgb().encode().unwrap()
}

fn p3_profile() -> Vec<u8> {
    moxcms::ColorProfile::new_display_p3().encode().unwrap()
}

#[test]
fn an_srgb_tagged_master_gives_untagged_outputs_with_the_same_pixels() {
    for img in [
        DynamicImage::ImageRgb8(photo(64, 48)),
        DynamicImage::ImageRgba8(half_transparent(64, 48)),
    ] {
        let tagged = png_with_icc(&img, &srgb_profile());
        let plain = png_of(&img);
        for format in ALL_FORMATS {
            let out = render_ok(&tagged, &w(32, format)).bytes;
            assert_no_profile(&out, &format!("{format:?}"));
            // The profile changes nothing: byte for byte the untagged master's variant.
            assert!(out == render_ok(&plain, &w(32, format)).bytes, "{format:?}");
        }
    }
}

#[test]
fn a_display_p3_master_is_converted_to_srgb_and_untagged() {
    // Left half P3's pure red, right half a mid P3 green.
    let img = RgbImage::from_fn(16, 8, |x, _| {
        image::Rgb(if x < 8 { [255, 0, 0] } else { [60, 170, 60] })
    });
    let master = png_with_icc(&DynamicImage::ImageRgb8(img), &p3_profile());
    for format in ALL_FORMATS {
        assert_no_profile(
            &render_ok(&master, &w(16, format)).bytes,
            &format!("{format:?}"),
        );
    }
    let out = decoded(&render_ok(&master, &spec(None, None, None, Format::Png)).bytes).to_rgb8();
    // Red is outside sRGB: clipped to sRGB's red. The mid green is inside, and in sRGB it
    // takes a stronger green and less red and blue than in P3 (by the matrices: 0, 173, 35;
    // the end-to-end test compares whole images with Little CMS).
    assert_eq!(out.get_pixel(2, 2).0, [255, 0, 0]);
    let [r, g, b] = out.get_pixel(12, 2).0;
    assert!(
        r <= 3 && (171..=175).contains(&g) && (32..=38).contains(&b),
        "{:?}",
        [r, g, b]
    );
}

#[test]
fn a_grey_profile_converts_grey_and_a_profile_for_other_pixels_is_ignored() {
    let grey = DynamicImage::ImageLuma8(image::GrayImage::from_fn(32, 4, |x, _| {
        image::Luma([(x * 8) as u8])
    }));
    let g18 = moxcms::ColorProfile::new_gray_with_gamma(1.8)
        .encode()
        .unwrap();
    let out = render_ok(
        &png_with_icc(&grey, &g18),
        &spec(None, None, None, Format::Png),
    )
    .bytes;
    assert_no_profile(&out, "grey png");
    let back = decoded(&out);
    assert_eq!(back.color(), image::ColorType::L8, "grey stays grey");
    // Gamma 1.8 → sRGB lightens the mid-tones and keeps black and white.
    let (src, dst) = (grey.to_luma8(), back.to_luma8());
    assert_eq!(dst.get_pixel(0, 0).0, [0]);
    assert!(dst.get_pixel(16, 0).0[0] > src.get_pixel(16, 0).0[0] + 4);
    // An RGB profile on a grey master cannot describe it: pixels as they are, no profile.
    let out = render_ok(
        &png_with_icc(&grey, &p3_profile()),
        &spec(None, None, None, Format::Png),
    )
    .bytes;
    assert_no_profile(&out, "grey with an RGB profile");
    assert_eq!(decoded(&out).to_luma8(), grey.to_luma8());
}

// ---------------------------------------------------------------- JPEG and WebP masters

#[test]
fn our_own_jpeg_output_reads_back_as_a_master() {
    // jpeg-encoder's optimised-Huffman output uses non-interleaved scans, which image's
    // zune-jpeg 0.5.15 turns into stripes; the master decoder must read it correctly.
    let img = DynamicImage::ImageRgb8(photo(320, 240));
    let jpeg = render_ok(&png_of(&img), &spec(None, None, None, Format::Jpeg)).bytes;
    let again = decoded(&render_ok(&jpeg, &spec(None, None, None, Format::Png)).bytes);
    let s = ssim(&again, &img);
    assert!(s > 0.95, "JPEG variant read back as a master: SSIM {s}");
}

fn jpeg_with_size(width: u16, height: u16) -> Vec<u8> {
    let mut jpeg = jpeg_of(&photo(16, 16), None);
    let sof = jpeg
        .windows(2)
        .position(|m| m == [0xff, 0xc0])
        .expect("baseline SOF0");
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
}

#[test]
fn jpeg_bomb_is_refused_from_the_header_fast() {
    let bomb = jpeg_with_size(65000, 65000);
    let started = Instant::now();
    let e = render_err(&bomb, &w(100, Format::Webp), &Limits::default());
    assert_eq!(e.kind, ErrorKind::ImageTooLarge, "{e}");
    assert!(e.message.contains("65000×65000"), "{}", e.message);
    assert!(started.elapsed() < Duration::from_millis(50));
}

#[test]
fn truncated_jpeg_scan_data_is_415() {
    let jpeg = jpeg_of(&photo(64, 64), None);
    let e = render_err(
        &jpeg[..jpeg.len() / 2],
        &w(32, Format::Png),
        &Limits::default(),
    );
    assert_eq!(e.kind, ErrorKind::UnsupportedImage, "{e}");
    assert!(e.message.contains("JPEG"), "{}", e.message);
}

#[test]
fn webp_masters_decode_with_and_without_alpha() {
    for img in [
        DynamicImage::ImageRgb8(photo(120, 80)),
        DynamicImage::ImageRgba8(half_transparent(120, 80)),
    ] {
        // A lossy WebP master made by the pipeline itself (format change only).
        let master = render_ok(&png_of(&img), &spec(None, None, None, Format::Webp)).bytes;
        let out = decoded(&render_ok(&master, &w(60, Format::Png)).bytes);
        assert_eq!(out.dimensions(), (60, 40));
        assert_eq!(out.color().has_alpha(), img.color().has_alpha());
        if img.color().has_alpha() {
            // Hidden colour under alpha 0 is not compared; alpha and visible colour are.
            let rgba = out.to_rgba8();
            assert_eq!(rgba.get_pixel(55, 20)[3], 0);
            let p = rgba.get_pixel(5, 20).0;
            assert!(p[3] == 255 && p[2] > 230 && p[0] < 25 && p[1] < 25, "{p:?}");
        } else {
            let s = ssim(&out, &lanczos(&img, 60, 40));
            assert!(s > 0.95, "SSIM {s}");
        }
    }
}

#[test]
fn webp_bomb_is_refused_from_the_header() {
    let mut webp = render_ok(
        &png_of(&DynamicImage::ImageRgb8(photo(16, 16))),
        &spec(None, None, None, Format::Webp),
    )
    .bytes;
    // Simple lossy WebP: "VP8 " chunk at 12, frame tag 3 bytes, start code 3 bytes, sizes.
    assert_eq!(&webp[12..16], b"VP8 ");
    webp[26..28].copy_from_slice(&16000u16.to_le_bytes());
    webp[28..30].copy_from_slice(&16000u16.to_le_bytes());
    let e = render_err(&webp, &w(100, Format::Png), &Limits::default());
    assert_eq!(e.kind, ErrorKind::ImageTooLarge, "{e}");
    assert!(e.message.contains("16000×16000"), "{}", e.message);
}

/// Found by fuzzing (fuzz/run decode): an extended WebP whose `VP8X` canvas is small while
/// its `VP8 ` bitstream declares a large frame. The decoder allocates for the frame
/// (1.5 bytes a pixel, before it notices the mismatch), so the frame's size is checked
/// against the limits too, from its header.
#[test]
fn webp_chunk_header_after_the_riff_data_stating_gigabytes_is_refused() {
    // Found by `fuzz/run --seconds 600 decode` (after its 3 bytes of spec): a 40×28 lossy
    // WebP whose RIFF size ends at its VP8 chunk, followed by bytes image-webp still reads as
    // chunks: an ICCP header stating 2,725,684,556 bytes, allocated before reading it.
    use base64::Engine as _;
    let found = base64::engine::general_purpose::STANDARD
        .decode("UklGRlgBAABXRUJQVlA4WAoAAAAAAAAAJwAAGwAAVlA4IDoBAABwCQCdASooABwAPrVOoEunJCMhpW5g4BaJbACdMoR3p7H5glS/tesIlBhgYW30Zm+AdJ5JQ0NQTKV2ogIC90oJwZxoZxBI189WLNh7SjlXR48d7AAA/v6oDjBmAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABjeDUzY1HReHhumdmFv2bV3Q5HJwj4ZpZ0/v8421uESorGy7J7oMM0o3Yn6dOMB1iwm39WRsWdyndVK8cykGWRZZ0BKigAHAA+tU6gS6ckIyGlbmDgFolsAJ0yhHensfmCVL+16wiUGGBhbfRmb4B0nklDQ1BMpXaiAgL3SkDdt5FQxxr+J2Jxvom8prPr4/JanC6/TseKPpwdOz4byARKcd5UKhqpvhdIGwsIlXpXxUI5blMHaNYBLxsqHnYKRxf5MFj7ZY70P2px/0FOG4v5Fhetg8n1Yc3Fe3AtnBkAAAA=")
        .unwrap();
    assert_eq!(found.len(), 464);
    assert_eq!(master_size(&found), None);
    let e = render_err(&found, &w(16, Format::Png), &Limits::default());
    assert_eq!(e.kind, ErrorKind::UnsupportedImage, "{e}");
    assert!(
        e.message.contains("ICCP chunk states 2725684556 bytes"),
        "{}",
        e.message
    );
}

#[test]
fn webp_frame_larger_than_its_canvas_is_refused_from_the_header() {
    let simple = render_ok(
        &png_of(&DynamicImage::ImageRgb8(photo(16, 16))),
        &spec(None, None, None, Format::Webp),
    )
    .bytes;
    assert_eq!(&simple[12..16], b"VP8 ");
    let mut vp8 = simple[12..].to_vec();
    vp8[14..16].copy_from_slice(&16000u16.to_le_bytes());
    vp8[16..18].copy_from_slice(&16000u16.to_le_bytes());
    // RIFF, VP8X with a 16×16 canvas, then the patched VP8 chunk.
    let mut body = b"WEBPVP8X\x0a\0\0\0\0\0\0\0\x0f\0\0\x0f\0\0".to_vec();
    body.extend_from_slice(&vp8);
    let mut webp = b"RIFF".to_vec();
    webp.extend_from_slice(&(body.len() as u32).to_le_bytes());
    webp.extend_from_slice(&body);
    let started = Instant::now();
    let e = render_err(&webp, &w(100, Format::Png), &Limits::default());
    assert_eq!(e.kind, ErrorKind::ImageTooLarge, "{e}");
    assert!(e.message.contains("16000×16000"), "{}", e.message);
    assert!(started.elapsed() < Duration::from_millis(50));

    // The fuzzer's own input (after its 3 bytes of spec): a 40×28 canvas over a
    // 12799×5203 frame; with the fuzz target's 1 MiP limit it needed over 64 MiB of heap.
    // Its VP8 chunk is also cut short, which is now refused first (415), as cheaply.
    use base64::Engine as _;
    let found = base64::engine::general_purpose::STANDARD
        .decode(
            "UklGRpwBAABXRUJQVlA4WAoAAAAQAAAAJwAAGwAAQUxQSC4AAAABD/CU/4iIoCSSJOfCJ7gSTspZO+2Dn0f0n2zSZk3SHjJdevAFD/jAG15w/XMkVlA4IEgBAACQCQCdASr/cVNUsYjq0WcwNBBRh5KHfDj+f/OyqQmhelnv3Pr/E7FDDSkI9LKrro1OnOhHV9JzLLhygafgac0Y6FRLvG5neQcBF9+BAWz4dGi5KJbt7wgJ++TR4VKalf+DuwwYRXfHV/+uf7PwKoAl7Ve/yNt79ms50M5lgeqaJI03AAAA",
        )
        .unwrap();
    let small = Limits {
        max_pixels: 1 << 20,
        max_bytes: 1 << 20,
        ..Limits::default()
    };
    let e = render_err(&found, &w(64, Format::Webp), &small);
    assert_eq!(e.kind, ErrorKind::UnsupportedImage, "{e}");
    assert!(e.message.contains("past the end"), "{}", e.message);
    // Made whole (zero padding after the cut chunk), its frame size is what is refused.
    let mut whole = found.clone();
    whole.resize(found.len() + 400, 0);
    let riff_len = (whole.len() - 8) as u32;
    whole[4..8].copy_from_slice(&riff_len.to_le_bytes());
    let e = render_err(&whole, &w(64, Format::Webp), &small);
    assert_eq!(e.kind, ErrorKind::ImageTooLarge, "{e}");
    assert!(e.message.contains("12799×5203"), "{}", e.message);
}

/// Found by fuzzing (fuzz/run decode): an animated WebP whose 40×28 frame holds a VP8
/// bitstream of 7208×0 made image-webp 0.2.4 panic (yuv.rs, a slice out of range), which
/// the pipeline contained as a 500; a bitstream whose size differs from its frame's is
/// now a 415 before decoding, as libwebp has it.
#[test]
fn webp_animation_frame_whose_bitstream_disagrees_with_it_is_415() {
    fn chunk(out: &mut Vec<u8>, fourcc: &[u8; 4], payload: &[u8]) {
        out.extend_from_slice(fourcc);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
        if payload.len() % 2 == 1 {
            out.push(0);
        }
    }
    let simple = render_ok(
        &png_of(&DynamicImage::ImageRgb8(photo(40, 28))),
        &spec(None, None, None, Format::Webp),
    )
    .bytes;
    assert_eq!(&simple[12..16], b"VP8 ");
    let vp8 = &simple[20..];
    // VP8X (animation flag, 40×28 canvas), ANIM, one ANMF frame of 40×28 at 0,0.
    let animation = |bitstream: &[u8]| {
        let mut body = b"WEBP".to_vec();
        chunk(&mut body, b"VP8X", &[0x02, 0, 0, 0, 39, 0, 0, 27, 0, 0]);
        chunk(&mut body, b"ANIM", &[0, 0, 0, 0, 0, 0]);
        let mut frame = vec![0, 0, 0, 0, 0, 0, 39, 0, 0, 27, 0, 0, 100, 0, 0, 0];
        chunk(&mut frame, b"VP8 ", bitstream);
        chunk(&mut body, b"ANMF", &frame);
        let mut file = b"RIFF".to_vec();
        file.extend_from_slice(&(body.len() as u32).to_le_bytes());
        file.extend_from_slice(&body);
        file
    };
    let out = render_ok(&animation(vp8), &w(20, Format::Png));
    assert_eq!((out.width, out.height), (20, 14));
    // Sizes at 6..8 and 8..10 of the bitstream (after the frame tag and start code).
    for (width, height) in [(7208u16, 0u16), (7208, 28), (40, 27)] {
        let mut bad = vp8.to_vec();
        bad[6..8].copy_from_slice(&width.to_le_bytes());
        bad[8..10].copy_from_slice(&height.to_le_bytes());
        let e = render_err(&animation(&bad), &w(20, Format::Png), &Limits::default());
        assert_eq!(e.kind, ErrorKind::UnsupportedImage, "{width}×{height}: {e}");
        assert!(e.message.contains("WebP"), "{}", e.message);
    }
}

/// Found by fuzzing (fuzz/run decode): an extended WebP whose `EXIF` chunk states
/// 788,529,166 bytes in a 440-byte file; image-webp allocated that much before reading
/// it. A chunk that runs past the end of the file is now a 415 before decoding.
#[test]
fn webp_chunk_stating_more_than_the_file_holds_is_415_before_decoding() {
    let simple = render_ok(
        &png_of(&DynamicImage::ImageRgb8(photo(16, 16))),
        &spec(None, None, None, Format::Webp),
    )
    .bytes;
    // VP8X (EXIF flag, 16×16), the simple file's VP8 chunk, then EXIF stating 0x2f00000e.
    let mut body = b"WEBPVP8X\x0a\0\0\0\x08\0\0\0\x0f\0\0\x0f\0\0".to_vec();
    body.extend_from_slice(&simple[12..]);
    body.extend_from_slice(b"EXIF\x0e\0\0\x2fMM\0*\0\0\0\x08\0\0\0\0\0\0");
    let mut webp = b"RIFF".to_vec();
    webp.extend_from_slice(&(body.len() as u32).to_le_bytes());
    webp.extend_from_slice(&body);
    let e = render_err(&webp, &w(8, Format::Png), &Limits::default());
    assert_eq!(e.kind, ErrorKind::UnsupportedImage, "{e}");
    assert!(
        e.message.contains("EXIF chunk states 788529166 bytes"),
        "{}",
        e.message
    );
    // The service reads the size first (to clamp the box): that read allocates nothing.
    assert_eq!(master_size(&webp), None);
}

#[test]
fn animated_png_renders_its_first_frame() {
    let (width, height) = (20u32, 10u32);
    let red: Vec<u8> = [200u8, 0, 0].repeat((width * height) as usize);
    let blue: Vec<u8> = [0u8, 0, 200].repeat((width * height) as usize);
    let mut master = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut master, width, height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_animated(2, 0).unwrap();
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(&red).unwrap();
        writer.write_image_data(&blue).unwrap();
    }
    let out = decoded(&render_ok(&master, &w(10, Format::Png)).bytes).to_rgb8();
    assert_eq!(out.dimensions(), (10, 5));
    assert!(
        out.pixels().all(|p| p.0 == [200, 0, 0]),
        "first frame is red"
    );
}

#[test]
fn golden_box_pre_shrink_with_cover_crop_and_rotation() {
    // Cover 100×100 of a 1600×800 master: centre 800×800 crop, factor 8 → box 4 + Lanczos3.
    let img = DynamicImage::ImageRgb8(photo(1600, 800));
    let master = png_of(&img);
    let s = spec(Some(100), Some(100), Some(Fit::Cover), Format::Png);
    let out = decoded(&render_ok(&master, &s).bytes);
    let reference = lanczos(&img.crop_imm(400, 0, 800, 800), 100, 100);
    let score = ssim(&out, &reference);
    assert!(score > 0.97, "cover with box pre-shrink: SSIM {score}");

    // EXIF 6 on the same master: the box pre-shrink runs on the stored pixels, rotated after.
    let tiff = tiff_orientation(6);
    let master = png_raw(
        1600,
        800,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
        img.as_bytes(),
        |_| {},
        &[(b"eXIf", &tiff)],
    );
    let out = decoded(&render_ok(&master, &w(80, Format::Png)).bytes);
    assert_eq!(out.dimensions(), (80, 160));
    let reference = lanczos(&oriented(&img, Orientation::Rotate90), 80, 160);
    let score = ssim(&out, &reference);
    assert!(score > 0.97, "rotated with box pre-shrink: SSIM {score}");
}
