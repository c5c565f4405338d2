//! AVIF: 8-bit YCbCr 4:2:0 (BT.601 matrix, full range, sRGB transfer and BT.709
//! primaries, as libavif writes by default) encoded as one AV1 still picture by rav1e,
//! with alpha as a second, monochrome AV1 image; avif-serialize writes the container.
//! Why rav1e, the speed preset, the tiles and the `q` mapping: docs/transform.md.
//!
//! Deterministic: the tile layout depends on the image size only, never on the number of
//! threads, so one master and spec give the same bytes on any machine (tested).

use rav1e::prelude::{
    ChromaSamplePosition, ChromaSampling, ColorDescription, ColorPrimaries, Config, Context,
    EncoderConfig, EncoderStatus, MatrixCoefficients, PixelRange, Rational, SceneDetectionSpeed,
    SpeedSettings, TransferCharacteristics,
};

use super::pixels::Pixels;
use crate::error::{Error, Result};

/// rav1e's speed preset (0 slowest … 10 fastest), measured in docs/transform.md.
pub const SPEED: u8 = 8;

/// Pixels per tile: an image is cut into `pixels / TILE_PIXELS` tiles (1 to
/// [`MAX_TILES`]) that rav1e encodes in parallel; below ~1 MP one tile compresses best.
const TILE_PIXELS: usize = 640 * 1024;
const MAX_TILES: usize = 4;

/// Largest side AV1 allows in a still picture (the `frame_width_minus_1` field is 16 bits).
const MAX_SIDE: u32 = 65536;

/// `q` (1–100) → rav1e's quantizer (AV1 `base_q_idx`, 0 best … 255 worst): cavif's curve
/// (ravif's `quality_to_quantizer`), so `q` means what it means to cavif users. q 80 →
/// 121, q 50 → 159, q 100 → 0.
pub fn quantizer(q: u8) -> u8 {
    let q = f32::from(q.clamp(1, 100)) / 100.0;
    let x = if q >= 0.82 {
        (1.0 - q) * 2.6
    } else if q > 0.25 {
        1.0 - 0.125 - q * 0.5
    } else {
        1.0 - q
    };
    (x * 255.0).round() as u8
}

/// Alpha is coded at a higher quality than colour (cavif's rule: halfway to 100): a
/// blurred cut-out edge shows blocking sooner than colour does.
fn alpha_quantizer(q: u8) -> u8 {
    quantizer(((u16::from(q.clamp(1, 100)) + 100) / 2) as u8)
}

/// Tiles for a `w`×`h` image (a function of the size alone).
fn tiles(w: usize, h: usize) -> usize {
    (w * h / TILE_PIXELS).clamp(1, MAX_TILES)
}

/// Threads for rav1e: one per tile, at most the machine's cores.
fn threads(tiles: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tiles.min(cores)
}

/// Encode RGB or RGBA (unassociated alpha) as AVIF at quality `q`.
pub fn encode(px: &Pixels, q: u8) -> Result<Vec<u8>> {
    encode_with(px, q, None)
}

/// [`encode`] with rav1e's thread count fixed (`None`: one per tile, at most the cores).
fn encode_with(px: &Pixels, q: u8, threads: Option<usize>) -> Result<Vec<u8>> {
    if px.width >= MAX_SIDE || px.height >= MAX_SIDE {
        return Err(Error::image_too_large(format!(
            "a {}×{} image cannot be written as AVIF (at most {} pixels a side); ask for a smaller w or h",
            px.width,
            px.height,
            MAX_SIDE - 1
        )));
    }
    let n = px.channels as usize;
    if n != 3 && n != 4 {
        return Err(Error::internal_while(
            "encoding AVIF",
            format!("{n} channels"),
        ));
    }
    let (w, h) = (px.width as usize, px.height as usize);
    let planes = Yuv420::from_rgb(&px.data, n, w, h);
    let tiles = tiles(w, h);
    let threads = threads.unwrap_or_else(|| self::threads(tiles));
    let colour = Plane {
        w,
        h,
        sampling: ChromaSampling::Cs420,
        quantizer: quantizer(q),
        tiles,
        threads,
    };
    let (colour, alpha) = std::thread::scope(|s| {
        // The alpha plane is coded on its own thread while the colour is.
        let alpha = (n == 4).then(|| {
            let data = &px.data;
            s.spawn(move || {
                let a: Vec<u8> = data.chunks_exact(4).map(|p| p[3]).collect();
                Plane {
                    w,
                    h,
                    sampling: ChromaSampling::Cs400,
                    quantizer: alpha_quantizer(q),
                    tiles,
                    threads,
                }
                .encode(&[(&a, w)])
            })
        });
        let cw = w.div_ceil(2);
        let colour = colour.encode(&[(&planes.y, w), (&planes.cb, cw), (&planes.cr, cw)]);
        let alpha = alpha.map(|t| {
            t.join().unwrap_or_else(|_| {
                Err(Error::internal(
                    "internal error: the AVIF alpha encoder panicked",
                ))
            })
        });
        (colour, alpha)
    });
    let colour = colour?;
    let alpha = alpha.transpose()?;
    let mut file = avif_serialize::Aviffy::new();
    file.set_seq_profile(0)
        .set_chroma_subsampling((true, true))
        .set_full_color_range(true)
        .set_matrix_coefficients(avif_serialize::constants::MatrixCoefficients::Bt601)
        .set_color_primaries(avif_serialize::constants::ColorPrimaries::Bt709)
        .set_transfer_characteristics(avif_serialize::constants::TransferCharacteristics::Srgb);
    Ok(file.to_vec(&colour, alpha.as_deref(), px.width, px.height, 8))
}

/// Planes of an 8-bit 4:2:0 picture.
struct Yuv420 {
    y: Vec<u8>,
    cb: Vec<u8>,
    cr: Vec<u8>,
}

impl Yuv420 {
    /// BT.601 full range (JFIF's equations) in 16-bit fixed point. Chroma is taken from the
    /// mean of each 2×2 block (edge blocks average what they cover): the same as averaging
    /// the per-pixel chroma, since chroma is linear in R, G, B.
    fn from_rgb(data: &[u8], n: usize, w: usize, h: usize) -> Yuv420 {
        const KR: [i64; 3] = [19595, 38470, 7471]; // 0.299, 0.587, 0.114
        const KB: [i64; 3] = [-11059, -21709, 32768]; // −0.168736, −0.331264, 0.5
        const KC: [i64; 3] = [32768, -27439, -5329]; // 0.5, −0.418688, −0.081312
        let dot = |k: [i64; 3], r: i64, g: i64, b: i64| k[0] * r + k[1] * g + k[2] * b;
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let mut y = Vec::with_capacity(w * h);
        for p in data.chunks_exact(n) {
            let (r, g, b) = (i64::from(p[0]), i64::from(p[1]), i64::from(p[2]));
            y.push(((dot(KR, r, g, b) + 32768) >> 16) as u8);
        }
        let mut cb = Vec::with_capacity(cw * ch);
        let mut cr = Vec::with_capacity(cw * ch);
        for by in 0..ch {
            for bx in 0..cw {
                let (mut r, mut g, mut b, mut count) = (0i64, 0i64, 0i64, 0i64);
                for yy in by * 2..(by * 2 + 2).min(h) {
                    for xx in bx * 2..(bx * 2 + 2).min(w) {
                        let p = &data[(yy * w + xx) * n..];
                        r += i64::from(p[0]);
                        g += i64::from(p[1]);
                        b += i64::from(p[2]);
                        count += 1;
                    }
                }
                let chroma = |k| {
                    let v = dot(k, r, g, b) + (128 << 16) * count;
                    let d = count << 16;
                    ((v + d / 2) / d).clamp(0, 255) as u8
                };
                cb.push(chroma(KB));
                cr.push(chroma(KC));
            }
        }
        Yuv420 { y, cb, cr }
    }
}

/// One AV1 still picture to encode.
struct Plane {
    w: usize,
    h: usize,
    sampling: ChromaSampling,
    quantizer: u8,
    tiles: usize,
    threads: usize,
}

impl Plane {
    fn config(&self) -> Config {
        let mut speed = SpeedSettings::from_preset(SPEED);
        // A still picture has no other frames to look at.
        speed.multiref = false;
        speed.rdo_lookahead_frames = 1;
        speed.scene_detection_mode = SceneDetectionSpeed::None;
        speed.motion.include_near_mvs = false;
        let colour = self.sampling != ChromaSampling::Cs400;
        let encoder = EncoderConfig {
            width: self.w,
            height: self.h,
            time_base: Rational::new(1, 1),
            bit_depth: 8,
            chroma_sampling: self.sampling,
            chroma_sample_position: ChromaSamplePosition::Unknown,
            pixel_range: PixelRange::Full,
            color_description: colour.then_some(ColorDescription {
                color_primaries: ColorPrimaries::BT709,
                transfer_characteristics: TransferCharacteristics::SRGB,
                matrix_coefficients: MatrixCoefficients::BT601,
            }),
            still_picture: true,
            quantizer: usize::from(self.quantizer),
            min_quantizer: self.quantizer,
            bitrate: 0,
            tiles: self.tiles,
            tile_cols: 0,
            tile_rows: 0,
            min_key_frame_interval: 0,
            max_key_frame_interval: 0,
            low_latency: false,
            speed_settings: speed,
            ..Default::default()
        };
        Config::new()
            .with_encoder_config(encoder)
            .with_threads(self.threads)
    }

    /// Encode planes given as (samples, stride) pairs; returns the AV1 bitstream.
    fn encode(&self, planes: &[(&[u8], usize)]) -> Result<Vec<u8>> {
        let fail =
            |e: &dyn std::fmt::Display| Error::internal_while("encoding AVIF", e.to_string());
        let mut ctx: Context<u8> = self.config().new_context().map_err(|e| fail(&e))?;
        let mut frame = ctx.new_frame();
        for (plane, (data, stride)) in frame.planes.iter_mut().zip(planes) {
            plane.copy_from_raw_u8(data, *stride, 1);
        }
        ctx.send_frame(frame).map_err(|e| fail(&e))?;
        ctx.flush();
        let mut out = Vec::new();
        loop {
            match ctx.receive_packet() {
                Ok(packet) => out.extend_from_slice(&packet.data),
                Err(EncoderStatus::Encoded) => {}
                Err(EncoderStatus::LimitReached) => break,
                Err(e) => return Err(fail(&e)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_maps_like_cavif() {
        assert_eq!(quantizer(100), 0);
        assert_eq!(quantizer(80), 121);
        assert_eq!(quantizer(50), 159);
        assert_eq!(quantizer(1), 252);
        // Monotonic: more q, finer quantizer.
        assert!((1..100).all(|q| quantizer(q) >= quantizer(q + 1)));
        assert!(alpha_quantizer(80) < quantizer(80));
    }

    #[test]
    fn tiles_depend_on_the_size_only() {
        assert_eq!(tiles(512, 512), 1);
        assert_eq!(tiles(1024, 1024), 1);
        assert_eq!(tiles(1600, 1600), 3);
        assert_eq!(tiles(8192, 8192), MAX_TILES);
    }

    /// Variants are cached forever: the bytes must not depend on the machine's cores.
    #[test]
    fn threads_do_not_change_the_bytes() {
        let (w, h) = (1280u32, 1040u32);
        assert!(tiles(w as usize, h as usize) >= 2);
        let data: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                [
                    (x / 5) as u8,
                    (y / 4) as u8,
                    ((x ^ y) / 3) as u8,
                    (255 - x / 6) as u8,
                ]
            })
            .collect();
        let px = Pixels::new(w, h, 4, data);
        let one = encode_with(&px, 60, Some(1)).unwrap();
        let two = encode_with(&px, 60, Some(2)).unwrap();
        assert!(one == two, "1 and 2 threads gave different AVIF bytes");
        assert_eq!(&one[4..12], b"ftypavif");
    }

    #[test]
    fn ycbcr_of_primaries_and_greys() {
        let px = [255u8, 0, 0, 0, 255, 0, 0, 0, 255, 128, 128, 128];
        let p = Yuv420::from_rgb(&px[..3], 3, 1, 1);
        assert_eq!((p.y[0], p.cb[0], p.cr[0]), (76, 85, 255));
        let p = Yuv420::from_rgb(&px[9..], 3, 1, 1);
        assert_eq!((p.y[0], p.cb[0], p.cr[0]), (128, 128, 128));
        // 2×2 of the four colours: one chroma sample, their mean.
        let p = Yuv420::from_rgb(&px, 3, 2, 2);
        assert_eq!(p.y, vec![76, 150, 29, 128]);
        assert_eq!((p.cb.len(), p.cr.len()), (1, 1));
    }
}
