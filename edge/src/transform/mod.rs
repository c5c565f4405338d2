//! The transform pipeline: sniff + header → limits → plan → decode (with the box
//! pre-shrink on the rows as they arrive) → resample → orient → pad/flatten → encode.
//! Pure: bytes in, bytes out, no I/O. Deterministic.
//!
//! Each step is a small function over one pixel buffer ([`pixels::Pixels`]); the geometry
//! is a pure [`plan::Plan`] computed from the spec and the master's header. The resample
//! runs on the stored (unoriented) pixels with the plan mapped back through the EXIF
//! orientation, so orienting touches only the small output, never a second full-size copy.

mod decode;
mod encode;
pub mod pixels;
pub mod plan;
mod png_rows;
mod riff;
mod rows;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use image::metadata::Orientation;

use crate::error::{Error, Result};
use crate::spec::{Format, VariantSpec};
use pixels::Pixels;
use plan::{Plan, Rect};
use rows::Decoded;

/// Default of [`Limits::max_pixels`] (DESIGN.md §3).
pub const DEFAULT_MAX_PIXELS: u64 = 50_000_000;
/// Default of [`Limits::max_bytes`] (DESIGN.md §3).
pub const DEFAULT_MAX_BYTES: u64 = 32 * 1024 * 1024;

/// Resource limits, checked before decoding (configuration, not constants). The same
/// struct is read from the Lambda's `config.json` (flattened, each field optional) and,
/// in the CLI, from flags / environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "serve", derive(clap::Args))]
#[serde(default)]
pub struct Limits {
    /// Largest master in pixels (width × height), read from the header.
    #[cfg_attr(feature = "serve", arg(long, env = "IMGEDGE_MAX_PIXELS", default_value_t = DEFAULT_MAX_PIXELS))]
    pub max_pixels: u64,
    /// Largest master in bytes.
    #[cfg_attr(feature = "serve", arg(long, env = "IMGEDGE_MAX_BYTES", default_value_t = DEFAULT_MAX_BYTES))]
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: DEFAULT_MAX_PIXELS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Wall time of each stage, for `Server-Timing` and the benchmark. `decode` includes the
/// header and limit checks and the box pre-shrink (done on the decoder's rows as they
/// arrive); `resize` is the Lanczos3 resample plus orienting, padding and flattening.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    pub decode: Duration,
    pub resize: Duration,
    pub encode: Duration,
}

/// An encoded variant.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub format: Format,
    pub width: u32,
    pub height: u32,
    pub timings: Timings,
}

/// The master's displayed (oriented) size from its header alone, no pixels decoded; `None`
/// when the header cannot be read (the render then reports why).
pub fn master_size(master: &[u8]) -> Option<(u32, u32)> {
    use image::ImageDecoder as _;
    let reader = image::ImageReader::new(std::io::Cursor::new(master))
        .with_guessed_format()
        .ok()?;
    let mut decoder = reader.into_decoder().ok()?;
    let raw = decoder.dimensions();
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    Some(plan::oriented_size(orientation, raw))
}

/// The spec with its box brought back to the master's size ([`plan::clamp_box`]): it
/// renders the same pixels, and every request beyond the master shares its canonical form.
pub fn clamp(spec: &VariantSpec, master_size: (u32, u32)) -> VariantSpec {
    let (width, height) = plan::clamp_box(master_size, spec.width, spec.height, spec.fit);
    VariantSpec {
        width,
        height,
        ..spec.clone()
    }
}

/// Render `spec` from the master's bytes.
pub fn render(master: &[u8], spec: &VariantSpec, limits: &Limits) -> Result<Rendered> {
    // A panic in a codec (a bug, or a hostile input that slipped past the checks) becomes
    // a 500 with a public message, for every caller alike; the detail goes to the log.
    Error::contain_panic("rendering the variant", || {
        render_unguarded(master, spec, limits)
    })
}

fn render_unguarded(master: &[u8], spec: &VariantSpec, limits: &Limits) -> Result<Rendered> {
    let clock = Instant::now();
    let source = decode::open(master, limits)?;
    let orientation = source.orientation();
    let oriented = plan::oriented_size(orientation, source.size());
    let plan = plan::plan(oriented, spec.width, spec.height, spec.fit);
    let resample = Resample::new(orientation, source.size(), &plan);
    let (kx, ky) = resample.as_ref().map_or((1, 1), Resample::box_factors);
    let (decoded, icc) = source.decode(master, kx, ky)?;
    let decode_time = clock.elapsed();

    let clock = Instant::now();
    let pixels = resize(decoded, orientation, resample, (kx, ky))?;
    let pixels = shape_for_output(pixels, &plan, spec);
    let resize_time = clock.elapsed();

    let clock = Instant::now();
    let icc = icc.filter(|p| keep_icc(p, pixels.channels));
    let bytes = encode::encode(&pixels, spec.format, spec.quality, icc.as_deref())?;
    let encode_time = clock.elapsed();

    Ok(Rendered {
        bytes,
        format: spec.format,
        width: pixels.width,
        height: pixels.height,
        timings: Timings {
            decode: decode_time,
            resize: resize_time,
            encode: encode_time,
        },
    })
}

/// Encode already output-shaped pixels as `render`'s last stage does (no ICC profile): the
/// benchmark's floor measures this stage alone.
pub fn encode(pixels: &Pixels, format: Format, quality: u8) -> Result<Vec<u8>> {
    encode::encode(pixels, format, quality, None)
}

/// Integer box pre-shrink for a reduction `from → to` along one axis: like libvips,
/// shrink by `⌊factor / 2⌋` so Lanczos3 always does the last 2–4× itself.
fn box_factor(from: f64, to: u32) -> u32 {
    let factor = from / f64::from(to);
    if factor >= 4.0 {
        (factor / 2.0).floor() as u32
    } else {
        1
    }
}

/// The resample the plan asks for, in the stored (unoriented) image's coordinates; `None`
/// when the plan keeps the master's pixels.
#[derive(Debug, Clone, Copy)]
struct Resample {
    crop: Rect,
    target: (u32, u32),
}

impl Resample {
    fn new(orientation: Orientation, raw: (u32, u32), plan: &Plan) -> Option<Resample> {
        if plan.keeps_pixels(plan::oriented_size(orientation, raw)) {
            return None;
        }
        let target = if plan::swaps_axes(orientation) {
            (plan.resize.1, plan.resize.0)
        } else {
            plan.resize
        };
        Some(Resample {
            crop: plan::rect_in_raw(orientation, raw, plan.crop),
            target,
        })
    }

    /// The box pre-shrink the decoder applies on the way.
    fn box_factors(&self) -> (u32, u32) {
        (
            box_factor(self.crop.w, self.target.0),
            box_factor(self.crop.h, self.target.1),
        )
    }
}

/// Resample the (possibly box-shrunk) stored pixels per the plan, then orient the (small)
/// result.
fn resize(
    decoded: Decoded,
    orientation: Orientation,
    resample: Option<Resample>,
    (kx, ky): (u32, u32),
) -> Result<Pixels> {
    let Decoded {
        pixels: mut px,
        premultiplied,
    } = decoded;
    if !premultiplied {
        px.drop_opaque_alpha();
    }
    let Some(Resample { mut crop, target }) = resample else {
        return px.orient(orientation);
    };
    if kx > 1 || ky > 1 {
        let (kx, ky) = (f64::from(kx), f64::from(ky));
        let (sw, sh) = (f64::from(px.width), f64::from(px.height));
        let (x, y) = ((crop.x / kx).min(sw), (crop.y / ky).min(sh));
        crop = Rect {
            x,
            y,
            w: (crop.w / kx).min(sw - x),
            h: (crop.h / ky).min(sh - y),
        };
    }
    let alpha = px.has_alpha();
    if alpha && !premultiplied {
        px.premultiply()?;
    }
    let mut out = px.resample(crop, target)?;
    drop(px);
    if alpha {
        out.unpremultiply()?;
    }
    out.orient(orientation)
}

/// Pad (contain), flatten alpha (JPEG) and widen grey to RGB (WebP has no grey).
fn shape_for_output(px: Pixels, plan: &Plan, spec: &VariantSpec) -> Pixels {
    let px = px.pad(plan.canvas, plan.offset, spec.background);
    match spec.format {
        Format::Jpeg => px.flatten(spec.background),
        Format::Webp => px.into_rgb_family(),
        Format::Png | Format::Avif => px,
    }
}

/// Carry the master's ICC profile when it describes the output's pixels. A grey profile
/// cannot describe RGB output (grey master → WebP) and a CMYK JPEG's profile does not
/// describe the RGB the decoder made: those are dropped, loudly.
fn keep_icc(profile: &[u8], channels: u8) -> bool {
    let fits = encode::icc_fits(profile, channels);
    if !fits {
        tracing::warn!(
            colour_space = ?encode::icc_colour_space(profile).map(|c| String::from_utf8_lossy(&c).into_owned()),
            channels,
            "transform: the master's ICC profile does not describe the output pixels; not embedded"
        );
    }
    fits
}
