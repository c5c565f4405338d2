//! Deterministic sample masters standing in for a model's output.
//!
//! A master is a scene described in normalised coordinates (0..1 on both axes), so one
//! index shows the same picture at every size: a smooth background (linear or radial
//! gradient, low-frequency value noise, a vignette), a handful of soft-edged shapes
//! (shaded discs, rotated rounded rectangles, rings, striped discs whose fine stripes
//! make aliasing visible after a resize), then a little grain like a photo's. Every
//! third master (index divisible by 3) has an alpha channel: a soft-edged card with
//! semi-transparent shapes, and real colour under fully transparent pixels, so a resizer
//! that does not premultiply shows fringes.
//!
//! Why it is deterministic everywhere: randomness is a SplitMix64 stream seeded from
//! (seed, index), and the pixel maths uses only IEEE basic operations (+ − × ÷ and
//! `sqrt`, all correctly rounded) — no `sin`/`exp` whose last bit depends on the
//! platform's libm. Rotations use the rational parametrisation of the circle.

use png::{BitDepth, ColorType, Compression, Encoder};

/// PNG bytes of sample master number `index` (square, `size` pixels), deterministic in
/// (`index`, `size`, `seed`): the same arguments always give the same bytes.
///
/// # Panics
/// If `size` is 0 (a PNG has at least one pixel).
pub fn synth_png(index: u32, size: u32, seed: u64) -> Vec<u8> {
    assert!(size > 0, "a master has at least one pixel");
    let scene = Scene::new(index, seed);
    let channels = if scene.alpha { 4 } else { 3 };
    let pixels = scene.render(size, channels);

    let mut out = Vec::with_capacity(pixels.len() / 2);
    let mut encoder = Encoder::new(&mut out, size, size);
    encoder.set_color(if scene.alpha {
        ColorType::Rgba
    } else {
        ColorType::Rgb
    });
    encoder.set_depth(BitDepth::Eight);
    encoder.set_compression(Compression::Fast);
    let mut writer = encoder
        .write_header()
        .expect("PNG header into a Vec cannot fail");
    writer
        .write_image_data(&pixels)
        .expect("PNG data of the right length into a Vec cannot fail");
    writer
        .finish()
        .expect("finishing a PNG into a Vec cannot fail");
    out
}

/// File name of master `index` as `generator synth` writes it: `image_001.png`.
pub fn file_name(index: u32) -> String {
    format!("image_{index:03}.png")
}

/// SplitMix64: tiny, well-mixed, and fully specified (the same stream on every platform).
struct Rng(u64);

impl Rng {
    fn new(seed: u64, index: u32) -> Rng {
        Rng(mix64(
            seed ^ mix64(u64::from(index).wrapping_add(0x5851_f42d_4c95_7f2d)),
        ))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in lo..=hi.
    fn int(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next_u64() % u64::from(hi - lo + 1)) as u32
    }
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

type Rgb = [f32; 3];

/// HSV → RGB with h in [0, 1), all channels in [0, 1].
fn hsv(h: f32, s: f32, v: f32) -> Rgb {
    let h6 = (h - h.floor()) * 6.0;
    let sector = h6.floor();
    let f = h6 - sector;
    let p = v * (1.0 - s);
    let q = v * (1.0 - s * f);
    let t = v * (1.0 - s * (1.0 - f));
    match sector as u32 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

fn lerp(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn smoothstep(t: f32) -> f32 {
    let t = t.clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// A unit vector from a parameter in [-1, 1] (rational circle: no trigonometry).
fn direction(t: f32, flip: bool) -> (f32, f32) {
    let d = 1.0 + t * t;
    let (c, s) = ((1.0 - t * t) / d, 2.0 * t / d);
    if flip {
        (-c, -s)
    } else {
        (c, s)
    }
}

enum Background {
    Linear { dir: (f32, f32) },
    Radial { cx: f32, cy: f32, radius: f32 },
}

enum Form {
    /// Shaded like a sphere lit from `light`.
    Disc {
        r: f32,
        light: (f32, f32),
    },
    /// Rotated rounded rectangle; the fill is a gradient along its long axis.
    RoundRect {
        half: (f32, f32),
        corner: f32,
        rot: (f32, f32),
    },
    Ring {
        r: f32,
        thickness: f32,
    },
    /// A disc filled with fine stripes (period in normalised units).
    Stripes {
        r: f32,
        dir: (f32, f32),
        period: f32,
    },
}

struct Shape {
    cx: f32,
    cy: f32,
    form: Form,
    colour: Rgb,
    colour2: Rgb,
    opacity: f32,
    /// Edge width in normalised units; 0 means "one pixel" (crisp, anti-aliased).
    blur: f32,
}

impl Shape {
    /// Radius of a circle around the centre that holds the whole shape.
    fn extent(&self) -> f32 {
        match self.form {
            Form::Disc { r, .. } | Form::Stripes { r, .. } => r,
            Form::Ring { r, thickness } => r + thickness,
            Form::RoundRect { half, .. } => (half.0 * half.0 + half.1 * half.1).sqrt(),
        }
    }

    /// Signed distance (negative inside) and fill colour at point (x, y).
    fn sample(&self, x: f32, y: f32) -> (f32, Rgb) {
        let (dx, dy) = (x - self.cx, y - self.cy);
        match self.form {
            Form::Disc { r, light } => {
                let len = (dx * dx + dy * dy).sqrt();
                let inside = (1.0 - (len / r) * (len / r)).max(0.0);
                let nz = inside.sqrt();
                let lit = ((dx / r) * light.0 + (dy / r) * light.1) * -0.5 + nz * 0.7;
                let shade = (0.35 + 0.75 * lit.clamp(0.0, 1.0)).min(1.05);
                let c = lerp(self.colour2, self.colour, nz);
                (len - r, [c[0] * shade, c[1] * shade, c[2] * shade])
            }
            Form::RoundRect { half, corner, rot } => {
                let u = dx * rot.0 + dy * rot.1;
                let v = -dx * rot.1 + dy * rot.0;
                let qx = u.abs() - half.0 + corner;
                let qy = v.abs() - half.1 + corner;
                let (ox, oy) = (qx.max(0.0), qy.max(0.0));
                let d = (ox * ox + oy * oy).sqrt() + qx.max(qy).min(0.0) - corner;
                let t = smoothstep(0.5 + u / (2.0 * half.0));
                (d, lerp(self.colour, self.colour2, t))
            }
            Form::Ring { r, thickness } => {
                let len = (dx * dx + dy * dy).sqrt();
                let t = smoothstep(0.5 + (len - r) / (2.0 * thickness));
                (
                    (len - r).abs() - thickness,
                    lerp(self.colour, self.colour2, t),
                )
            }
            Form::Stripes { r, dir, period } => {
                let len = (dx * dx + dy * dy).sqrt();
                let phase = (dx * dir.0 + dy * dir.1) / period;
                // Triangle wave, smoothed: fine detail without hard aliasing in the master.
                let tri = (phase - phase.floor() - 0.5).abs() * 2.0;
                (len - r, lerp(self.colour, self.colour2, smoothstep(tri)))
            }
        }
    }
}

/// Smooth value noise on a (cells+1)² lattice of values in [-1, 1].
struct ValueNoise {
    cells: usize,
    lattice: Vec<f32>,
}

impl ValueNoise {
    fn new(rng: &mut Rng, cells: usize) -> ValueNoise {
        let lattice = (0..(cells + 1) * (cells + 1))
            .map(|_| rng.range(-1.0, 1.0))
            .collect();
        ValueNoise { cells, lattice }
    }

    fn at(&self, x: f32, y: f32) -> f32 {
        let n = self.cells as f32;
        let (fx, fy) = ((x * n).clamp(0.0, n - 1e-3), (y * n).clamp(0.0, n - 1e-3));
        let (ix, iy) = (fx as usize, fy as usize);
        let (tx, ty) = (smoothstep(fx - ix as f32), smoothstep(fy - iy as f32));
        let row = self.cells + 1;
        let v = |i: usize, j: usize| self.lattice[j * row + i];
        let top = v(ix, iy) + (v(ix + 1, iy) - v(ix, iy)) * tx;
        let bottom = v(ix, iy + 1) + (v(ix + 1, iy + 1) - v(ix, iy + 1)) * tx;
        top + (bottom - top) * ty
    }
}

struct Scene {
    alpha: bool,
    grain_key: u64,
    background: Background,
    bg: [Rgb; 3],
    noise: [ValueNoise; 2],
    noise_amount: f32,
    vignette: f32,
    /// Alpha masters: the opaque card (centre, half size, corner, edge softness).
    card: (f32, f32, f32, f32, f32),
    shapes: Vec<Shape>,
}

impl Scene {
    fn new(index: u32, seed: u64) -> Scene {
        let mut rng = Rng::new(seed, index);
        let alpha = index.is_multiple_of(3);
        let hue = rng.unit();
        // A palette around a base hue with one complementary accent, like a graded photo.
        let bg = [
            hsv(hue, rng.range(0.35, 0.8), rng.range(0.55, 0.95)),
            hsv(
                hue + rng.range(0.05, 0.18),
                rng.range(0.3, 0.9),
                rng.range(0.2, 0.6),
            ),
            hsv(hue + 0.5, rng.range(0.2, 0.6), rng.range(0.4, 0.85)),
        ];
        let background = if rng.unit() < 0.5 {
            Background::Linear {
                dir: direction(rng.range(-1.0, 1.0), rng.unit() < 0.5),
            }
        } else {
            Background::Radial {
                cx: rng.range(0.2, 0.8),
                cy: rng.range(0.2, 0.8),
                radius: rng.range(0.5, 1.1),
            }
        };
        let noise = [ValueNoise::new(&mut rng, 5), ValueNoise::new(&mut rng, 14)];
        let noise_amount = rng.range(0.03, 0.09);
        let vignette = rng.range(0.1, 0.45);
        let card = (
            rng.range(0.4, 0.6),
            rng.range(0.4, 0.6),
            rng.range(0.3, 0.42),
            rng.range(0.02, 0.12),
            rng.range(0.005, 0.05),
        );

        let count = rng.int(3, 7);
        let shapes = (0..count)
            .map(|_| {
                let colour = hsv(
                    hue + rng.range(-0.15, 0.15) + if rng.unit() < 0.3 { 0.5 } else { 0.0 },
                    rng.range(0.4, 1.0),
                    rng.range(0.5, 1.0),
                );
                let colour2 = hsv(
                    hue + rng.range(-0.3, 0.3),
                    rng.range(0.2, 0.9),
                    rng.range(0.15, 0.7),
                );
                let form = match rng.int(0, 3) {
                    0 => Form::Disc {
                        r: rng.range(0.06, 0.25),
                        light: direction(rng.range(-1.0, 1.0), rng.unit() < 0.5),
                    },
                    1 => {
                        let half = (rng.range(0.06, 0.3), rng.range(0.03, 0.15));
                        Form::RoundRect {
                            half,
                            corner: rng.range(0.0, half.0.min(half.1)),
                            rot: direction(rng.range(-1.0, 1.0), false),
                        }
                    }
                    2 => Form::Ring {
                        r: rng.range(0.08, 0.3),
                        thickness: rng.range(0.005, 0.04),
                    },
                    _ => Form::Stripes {
                        r: rng.range(0.06, 0.18),
                        dir: direction(rng.range(-1.0, 1.0), false),
                        period: rng.range(0.006, 0.02),
                    },
                };
                Shape {
                    cx: rng.range(0.1, 0.9),
                    cy: rng.range(0.1, 0.9),
                    form,
                    colour,
                    colour2,
                    opacity: if rng.unit() < 0.3 {
                        rng.range(0.4, 0.8)
                    } else {
                        1.0
                    },
                    blur: if rng.unit() < 0.35 {
                        rng.range(0.005, 0.05)
                    } else {
                        0.0
                    },
                }
            })
            .collect();
        Scene {
            alpha,
            grain_key: rng.next_u64(),
            background,
            bg,
            noise,
            noise_amount,
            vignette,
            card,
            shapes,
        }
    }

    /// Row-major 8-bit pixels, `channels` (3 or 4) per pixel.
    fn render(&self, size: u32, channels: usize) -> Vec<u8> {
        let n = size as usize;
        let inv = 1.0 / size as f32;
        let mut pixels = vec![0u8; n * n * channels];
        // Per shape: edge width and bounding box in pixels, so most pixels skip most shapes.
        let spans: Vec<(f32, usize, usize, usize, usize)> = self
            .shapes
            .iter()
            .map(|s| {
                let edge = s.blur.max(inv);
                let reach = s.extent() + edge;
                let px = |v: f32| ((v * size as f32).max(0.0) as usize).min(n);
                (
                    edge,
                    px(s.cx - reach),
                    px(s.cx + reach + inv),
                    px(s.cy - reach),
                    px(s.cy + reach + inv),
                )
            })
            .collect();

        for (row, line) in pixels.chunks_exact_mut(n * channels).enumerate() {
            let y = (row as f32 + 0.5) * inv;
            for col in 0..n {
                let x = (col as f32 + 0.5) * inv;
                let (mut c, mut a) = self.background_at(x, y);
                for (shape, &(edge, x0, x1, y0, y1)) in self.shapes.iter().zip(&spans) {
                    if col < x0 || col >= x1 || row < y0 || row >= y1 {
                        continue;
                    }
                    let (d, fill) = shape.sample(x, y);
                    let cover = smoothstep(0.5 - d / edge) * shape.opacity;
                    if cover > 0.0 {
                        c = lerp(c, fill, cover);
                        a += cover * (1.0 - a);
                    }
                }
                let grain = mix64(self.grain_key ^ ((row as u64) << 32 | col as u64));
                let px = &mut line[col * channels..(col + 1) * channels];
                for (k, out) in px.iter_mut().take(3).enumerate() {
                    // Triangular grain of about ±1.5 levels, as in a photo; also hides banding.
                    let g = ((grain >> (k * 16)) & 0xff) as f32
                        + ((grain >> (k * 16 + 8)) & 0xff) as f32;
                    let v = c[k] * 255.0 + (g - 255.0) * (1.5 / 255.0);
                    *out = (v + 0.5).clamp(0.0, 255.0) as u8;
                }
                if channels == 4 {
                    px[3] = (a * 255.0 + 0.5).clamp(0.0, 255.0) as u8;
                }
            }
        }
        pixels
    }

    /// Background colour and, for alpha masters, its opacity at (x, y).
    fn background_at(&self, x: f32, y: f32) -> (Rgb, f32) {
        let t = match self.background {
            Background::Linear { dir } => 0.5 + (x - 0.5) * dir.0 + (y - 0.5) * dir.1,
            Background::Radial { cx, cy, radius } => {
                ((x - cx) * (x - cx) + (y - cy) * (y - cy)).sqrt() / radius
            }
        };
        let t = t.clamp(0.0, 1.0);
        let mut c = if t < 0.6 {
            lerp(self.bg[0], self.bg[1], smoothstep(t / 0.6))
        } else {
            lerp(self.bg[1], self.bg[2], smoothstep((t - 0.6) / 0.4))
        };
        let grain =
            1.0 + self.noise_amount * (self.noise[0].at(x, y) * 0.7 + self.noise[1].at(x, y) * 0.3);
        let (vx, vy) = (x - 0.5, y - 0.5);
        let light = grain * (1.0 - self.vignette * (vx * vx + vy * vy) * 2.0);
        for v in &mut c {
            *v *= light;
        }
        let a = if self.alpha {
            let (cx, cy, half, corner, soft) = self.card;
            let qx = (x - cx).abs() - half + corner;
            let qy = (y - cy).abs() - half + corner;
            let (ox, oy) = (qx.max(0.0), qy.max(0.0));
            let d = (ox * ox + oy * oy).sqrt() + qx.max(qy).min(0.0) - corner;
            smoothstep(0.5 - d / soft)
        } else {
            1.0
        };
        (c, a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info, buf)
    }

    #[test]
    fn same_arguments_give_same_bytes() {
        assert_eq!(synth_png(4, 96, 7), synth_png(4, 96, 7));
    }

    #[test]
    fn index_seed_and_size_each_change_the_image() {
        let base = synth_png(1, 96, 0);
        assert_ne!(base, synth_png(2, 96, 0));
        assert_ne!(base, synth_png(1, 96, 1));
        assert_ne!(base, synth_png(1, 97, 0));
    }

    #[test]
    fn is_a_square_png_of_the_requested_size_with_alpha_every_third() {
        for index in 1..=6 {
            let (info, _) = decode(&synth_png(index, 80, 3));
            assert_eq!((info.width, info.height), (80, 80));
            assert_eq!(info.bit_depth, BitDepth::Eight);
            let expected = if index.is_multiple_of(3) {
                ColorType::Rgba
            } else {
                ColorType::Rgb
            };
            assert_eq!(info.color_type, expected, "index {index}");
        }
    }

    #[test]
    fn alpha_masters_have_transparent_opaque_and_partial_pixels() {
        let (_, px) = decode(&synth_png(3, 128, 0));
        let alphas: Vec<u8> = px.chunks_exact(4).map(|p| p[3]).collect();
        assert!(alphas.contains(&0));
        assert!(alphas.contains(&255));
        assert!(alphas.iter().any(|&a| a > 10 && a < 245));
    }

    #[test]
    fn pictures_are_varied_not_flat() {
        // Many distinct colours (gradients + shapes), and masters differ from each other.
        for index in 1..=4 {
            let (_, px) = decode(&synth_png(index, 128, 0));
            let mut colours: Vec<[u8; 3]> =
                px.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect();
            colours.sort_unstable();
            colours.dedup();
            assert!(
                colours.len() > 2000,
                "index {index}: {} colours",
                colours.len()
            );
        }
        let (_, a) = decode(&synth_png(1, 128, 0));
        let (_, b) = decode(&synth_png(2, 128, 0));
        let differing = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| x.abs_diff(**y) > 20)
            .count();
        assert!(differing > a.len() / 4);
    }

    #[test]
    fn smooth_like_a_photo_neighbouring_pixels_are_close() {
        // Mean absolute difference between horizontal neighbours stays small (gradients,
        // soft edges, light grain), unlike noise; yet it is not zero.
        let (_, px) = decode(&synth_png(2, 256, 0));
        let row = 256 * 3;
        let mut total = 0u64;
        let mut count = 0u64;
        for line in px.chunks_exact(row) {
            for i in 0..row - 3 {
                total += u64::from(line[i].abs_diff(line[i + 3]));
                count += 1;
            }
        }
        let mean = total as f64 / count as f64;
        assert!(mean > 0.3 && mean < 8.0, "mean neighbour difference {mean}");
    }

    #[test]
    fn same_picture_at_every_size() {
        // Normalised coordinates: a small render matches a box-downscale of a large one.
        let (_, small) = decode(&synth_png(5, 32, 9));
        let (_, large) = decode(&synth_png(5, 128, 9));
        let mut err = 0u64;
        for y in 0..32 {
            for x in 0..32 {
                for k in 0..3 {
                    let mut sum = 0u32;
                    for dy in 0..4 {
                        for dx in 0..4 {
                            sum += u32::from(large[((y * 4 + dy) * 128 + x * 4 + dx) * 3 + k]);
                        }
                    }
                    err += u64::from((sum / 16).abs_diff(u32::from(small[(y * 32 + x) * 3 + k])));
                }
            }
        }
        let mean = err as f64 / (32.0 * 32.0 * 3.0);
        assert!(mean < 12.0, "mean difference {mean}");
    }

    #[test]
    fn file_names_are_zero_padded() {
        assert_eq!(file_name(1), "image_001.png");
        assert_eq!(file_name(1234), "image_1234.png");
    }
}
