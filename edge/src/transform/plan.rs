//! Geometry of a variant (DESIGN.md §1), pure: from the spec's box and the oriented
//! master's size to a crop, a resample size and a canvas. No pixels, no I/O.

use image::metadata::Orientation;

use crate::spec::Fit;

/// A region of an image in (possibly fractional) pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub fn full(size: (u32, u32)) -> Rect {
        Rect {
            x: 0.0,
            y: 0.0,
            w: f64::from(size.0),
            h: f64::from(size.1),
        }
    }
}

/// What to do with the oriented master's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Region of the oriented master that is kept (the whole master except for `cover`).
    pub crop: Rect,
    /// Size the cropped region is resampled to.
    pub resize: (u32, u32),
    /// Output size; larger than `resize` only for `contain`, which pads.
    pub canvas: (u32, u32),
    /// Top-left of the resampled image on the canvas (centred, rounded down).
    pub offset: (u32, u32),
}

impl Plan {
    /// True when the pixels pass through unresampled (format change or orientation only).
    pub fn keeps_pixels(&self, master: (u32, u32)) -> bool {
        self.resize == master && self.crop == Rect::full(master)
    }
}

/// `round(num / den)`, halves rounded up, at least 1 (a side is never 0 pixels).
fn round_half_up(num: u64, den: u64) -> u32 {
    let q = (2 * num + den) / (2 * den);
    q.clamp(1, u64::from(u32::MAX)) as u32
}

/// The size with the master's aspect that fits inside `(w, h)`, touching one side.
fn fit_inside(m: (u32, u32), w: u32, h: u32) -> (u32, u32) {
    let (mw, mh) = (u64::from(m.0), u64::from(m.1));
    let (w64, h64) = (u64::from(w), u64::from(h));
    if w64 * mh <= h64 * mw {
        (w, round_half_up(mh * w64, mw))
    } else {
        (round_half_up(mw * h64, mh), h)
    }
}

/// The size with the master's aspect that covers `(w, h)`, touching one side.
fn fit_outside(m: (u32, u32), w: u32, h: u32) -> (u32, u32) {
    let (mw, mh) = (u64::from(m.0), u64::from(m.1));
    let (w64, h64) = (u64::from(w), u64::from(h));
    if w64 * mh >= h64 * mw {
        (w, round_half_up(mh * w64, mw))
    } else {
        (round_half_up(mw * h64, mh), h)
    }
}

/// Scale factor capped at 1: a size with the master's aspect never exceeds the master.
fn cap_to_master(m: (u32, u32), size: (u32, u32)) -> (u32, u32) {
    if size.0 > m.0 || size.1 > m.1 {
        m
    } else {
        size
    }
}

/// The box `(w, h)` shrunk by `s = min(1, mw/w, mh/h)`, keeping the box's aspect.
fn box_without_upscale(m: (u32, u32), w: u32, h: u32) -> (u32, u32) {
    if w <= m.0 && h <= m.1 {
        return (w, h);
    }
    let (mw, mh) = (u64::from(m.0), u64::from(m.1));
    let (w64, h64) = (u64::from(w), u64::from(h));
    if mw * h64 <= mh * w64 {
        (m.0, round_half_up(h64 * mw, w64))
    } else {
        (round_half_up(w64 * mh, h64), m.1)
    }
}

/// The plan for a master of `master` size (already oriented) and the spec's box.
pub fn plan(master: (u32, u32), width: Option<u32>, height: Option<u32>, fit: Option<Fit>) -> Plan {
    let whole = |size: (u32, u32)| Plan {
        crop: Rect::full(master),
        resize: size,
        canvas: size,
        offset: (0, 0),
    };
    let (mw, mh) = (u64::from(master.0), u64::from(master.1));
    match (width, height) {
        (None, None) => whole(master),
        (Some(w), None) => whole(cap_to_master(
            master,
            (w, round_half_up(mh * u64::from(w), mw)),
        )),
        (None, Some(h)) => whole(cap_to_master(
            master,
            (round_half_up(mw * u64::from(h), mh), h),
        )),
        (Some(w), Some(h)) => match fit.unwrap_or(Fit::Cover) {
            Fit::Inside => whole(cap_to_master(master, fit_inside(master, w, h))),
            Fit::Outside => whole(cap_to_master(master, fit_outside(master, w, h))),
            Fit::Fill => whole(box_without_upscale(master, w, h)),
            Fit::Cover => {
                let (bw, bh) = box_without_upscale(master, w, h);
                let (bw64, bh64) = (u64::from(bw), u64::from(bh));
                let crop = if mw * bh64 > bw64 * mh {
                    // Master is wider than the box: keep the full height, centre horizontally.
                    let cw = mh as f64 * bw64 as f64 / bh64 as f64;
                    Rect {
                        x: (mw as f64 - cw) / 2.0,
                        y: 0.0,
                        w: cw,
                        h: mh as f64,
                    }
                } else if mw * bh64 < bw64 * mh {
                    let ch = mw as f64 * bh64 as f64 / bw64 as f64;
                    Rect {
                        x: 0.0,
                        y: (mh as f64 - ch) / 2.0,
                        w: mw as f64,
                        h: ch,
                    }
                } else {
                    Rect::full(master)
                };
                Plan {
                    crop,
                    resize: (bw, bh),
                    canvas: (bw, bh),
                    offset: (0, 0),
                }
            }
            Fit::Contain => {
                let canvas = box_without_upscale(master, w, h);
                let inner = fit_inside(master, canvas.0, canvas.1);
                Plan {
                    crop: Rect::full(master),
                    resize: inner,
                    canvas,
                    offset: ((canvas.0 - inner.0) / 2, (canvas.1 - inner.1) / 2),
                }
            }
        },
    }
}

/// The smallest box that gives the same plan as `(width, height, fit)` on a master of
/// `master` size (oriented): sides beyond the master are brought back to what the
/// no-upscale rule produces. Requests that differ only above the master's size thus share
/// one canonical form, one render and one stored variant (DESIGN.md §2).
pub fn clamp_box(
    master: (u32, u32),
    width: Option<u32>,
    height: Option<u32>,
    fit: Option<Fit>,
) -> (Option<u32>, Option<u32>) {
    let side = |v: Option<u32>, m: u32| v.map(|v| v.min(m));
    match (width, height, fit.unwrap_or(Fit::Cover)) {
        // The output keeps the master's aspect and touches the limiting side: a side beyond
        // the master never limits, so it can stop at the master.
        (Some(_), Some(_), Fit::Inside | Fit::Outside) | (_, None, _) | (None, _, _) => {
            (side(width, master.0), side(height, master.1))
        }
        // The box's aspect is kept and the box shrunk to fit the master: that box is the
        // canvas of the output.
        (Some(w), Some(h), Fit::Cover | Fit::Contain | Fit::Fill) => {
            let (w, h) = box_without_upscale(master, w, h);
            (Some(w), Some(h))
        }
    }
}

/// True when the orientation exchanges width and height.
pub fn swaps_axes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// Size of the image after applying the orientation to a stored image of size `raw`.
pub fn oriented_size(o: Orientation, raw: (u32, u32)) -> (u32, u32) {
    if swaps_axes(o) {
        (raw.1, raw.0)
    } else {
        raw
    }
}

/// The point of the stored (unoriented) image that shows at `(x, y)` once oriented.
/// Continuous coordinates: pixel edges, not centres.
fn raw_point(o: Orientation, raw: (u32, u32), x: f64, y: f64) -> (f64, f64) {
    let (w, h) = (f64::from(raw.0), f64::from(raw.1));
    match o {
        Orientation::NoTransforms => (x, y),
        Orientation::FlipHorizontal => (w - x, y),
        Orientation::FlipVertical => (x, h - y),
        Orientation::Rotate180 => (w - x, h - y),
        Orientation::Rotate90 => (y, h - x),
        Orientation::Rotate270 => (w - y, x),
        Orientation::Rotate90FlipH => (y, x),
        Orientation::Rotate270FlipH => (w - y, h - x),
    }
}

/// A region of the oriented image, expressed in the stored image's coordinates, so the
/// resample can run before orienting (orienting then touches only output pixels).
pub fn rect_in_raw(o: Orientation, raw: (u32, u32), r: Rect) -> Rect {
    let (ax, ay) = raw_point(o, raw, r.x, r.y);
    let (bx, by) = raw_point(o, raw, r.x + r.w, r.y + r.h);
    Rect {
        x: ax.min(bx),
        y: ay.min(by),
        w: (ax - bx).abs(),
        h: (ay - by).abs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(p: Plan) -> (u32, u32) {
        p.canvas
    }

    #[test]
    fn clamping_beyond_the_master_gives_the_same_plan() {
        let m = (1000, 750);
        assert_eq!(clamp_box(m, Some(3000), None, None), (Some(1000), None));
        assert_eq!(clamp_box(m, Some(500), None, None), (Some(500), None));
        assert_eq!(clamp_box(m, None, Some(751), None), (None, Some(750)));
        assert_eq!(
            clamp_box(m, Some(2000), Some(2000), Some(Fit::Cover)),
            (Some(750), Some(750))
        );
        assert_eq!(
            clamp_box(m, Some(3000), Some(500), Some(Fit::Inside)),
            (Some(1000), Some(500))
        );
        // w=1000…8192 on a 1000-px master: one canonical width.
        let widths: std::collections::BTreeSet<_> = (1000..=8192)
            .map(|w| clamp_box((1000, 600), Some(w), None, None))
            .collect();
        assert_eq!(widths.len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn clamped_box_plans_like_the_request_and_is_a_fixed_point(
            mw in 1u32..400, mh in 1u32..400,
            w in proptest::option::of(1u32..1200), h in proptest::option::of(1u32..1200),
            fit in proptest::sample::select(vec![
                Fit::Cover, Fit::Contain, Fit::Fill, Fit::Inside, Fit::Outside,
            ]),
        ) {
            let fit = (w.is_some() && h.is_some()).then_some(fit);
            let (cw, ch) = clamp_box((mw, mh), w, h, fit);
            proptest::prop_assert_eq!(plan((mw, mh), cw, ch, fit), plan((mw, mh), w, h, fit));
            proptest::prop_assert_eq!(clamp_box((mw, mh), cw, ch, fit), (cw, ch));
            proptest::prop_assert!(cw.is_none_or(|v| v <= mw) && ch.is_none_or(|v| v <= mh));
        }
    }

    #[test]
    fn no_size_keeps_the_master() {
        let p = plan((640, 480), None, None, None);
        assert_eq!(p.resize, (640, 480));
        assert!(p.keeps_pixels((640, 480)));
    }

    #[test]
    fn one_side_keeps_aspect_rounding_half_up() {
        // 1000×750 → w=512: 750·512/1000 = 384 exactly.
        assert_eq!(size(plan((1000, 750), Some(512), None, None)), (512, 384));
        // 3×2 → w=1: 2/3 = 0.67 → 1; 4×2 → w=3: 6/4 = 1.5 → 2 (half up).
        assert_eq!(size(plan((3, 2), Some(1), None, None)), (1, 1));
        assert_eq!(size(plan((4, 2), Some(3), None, None)), (3, 2));
        // 10×5 → w=3: 1.5 → 2; h=3 on 5×10 → 1.5 → 2.
        assert_eq!(size(plan((10, 5), Some(3), None, None)), (3, 2));
        assert_eq!(size(plan((5, 10), None, Some(3), None)), (2, 3));
        // 2.49 rounds down: 249×100 → h=1 gives 2.49 → 2.
        assert_eq!(size(plan((249, 100), None, Some(1), None)), (2, 1));
    }

    #[test]
    fn one_side_is_at_least_one_pixel() {
        assert_eq!(size(plan((1000, 1), Some(10), None, None)), (10, 1));
        assert_eq!(size(plan((1, 1000), None, Some(10), None)), (1, 10));
    }

    #[test]
    fn one_side_never_upscales() {
        assert_eq!(size(plan((300, 200), Some(600), None, None)), (300, 200));
        assert_eq!(size(plan((300, 200), None, Some(201), None)), (300, 200));
        assert_eq!(size(plan((300, 200), Some(300), None, None)), (300, 200));
        assert!(plan((300, 200), Some(900), None, None).keeps_pixels((300, 200)));
    }

    #[test]
    fn cover_fills_the_box_and_crops_the_centre() {
        let p = plan((1000, 500), Some(200), Some(200), Some(Fit::Cover));
        assert_eq!(
            (p.resize, p.canvas, p.offset),
            ((200, 200), (200, 200), (0, 0))
        );
        assert_eq!(
            p.crop,
            Rect {
                x: 250.0,
                y: 0.0,
                w: 500.0,
                h: 500.0
            }
        );
        let p = plan((400, 800), Some(200), Some(100), Some(Fit::Cover));
        assert_eq!(
            p.crop,
            Rect {
                x: 0.0,
                y: 300.0,
                w: 400.0,
                h: 200.0
            }
        );
        // Same aspect: no crop.
        let p = plan((400, 200), Some(200), Some(100), Some(Fit::Cover));
        assert_eq!(p.crop, Rect::full((400, 200)));
    }

    #[test]
    fn cover_is_the_default_when_both_sides_are_given() {
        assert_eq!(
            plan((1000, 500), Some(200), Some(200), None),
            plan((1000, 500), Some(200), Some(200), Some(Fit::Cover))
        );
    }

    #[test]
    fn contain_fits_inside_and_pads_centred() {
        let p = plan((1000, 500), Some(200), Some(200), Some(Fit::Contain));
        assert_eq!(p.resize, (200, 100));
        assert_eq!(p.canvas, (200, 200));
        assert_eq!(p.offset, (0, 50));
        assert_eq!(p.crop, Rect::full((1000, 500)));
        // Odd padding rounds the offset down.
        let p = plan((300, 100), Some(100), Some(100), Some(Fit::Contain));
        assert_eq!(
            (p.resize, p.canvas, p.offset),
            ((100, 33), (100, 100), (0, 33))
        );
        let p = plan((100, 300), Some(51), Some(100), Some(Fit::Contain));
        assert_eq!(
            (p.resize, p.canvas, p.offset),
            ((33, 100), (51, 100), (9, 0))
        );
    }

    #[test]
    fn fill_stretches_to_the_box() {
        let p = plan((1000, 500), Some(200), Some(300), Some(Fit::Fill));
        assert_eq!((p.resize, p.canvas), ((200, 300), (200, 300)));
        assert_eq!(p.crop, Rect::full((1000, 500)));
    }

    #[test]
    fn inside_and_outside_keep_aspect() {
        assert_eq!(
            size(plan((1000, 500), Some(200), Some(200), Some(Fit::Inside))),
            (200, 100)
        );
        assert_eq!(
            size(plan((1000, 500), Some(200), Some(200), Some(Fit::Outside))),
            (400, 200)
        );
        assert_eq!(
            size(plan((500, 1000), Some(200), Some(300), Some(Fit::Inside))),
            (150, 300)
        );
        assert_eq!(
            size(plan((500, 1000), Some(200), Some(300), Some(Fit::Outside))),
            (200, 400)
        );
        // Rounding half up on the driven side: 333×100 inside 100×100 → 100×30.03 → 30.
        assert_eq!(
            size(plan((333, 100), Some(100), Some(100), Some(Fit::Inside))),
            (100, 30)
        );
        assert_eq!(
            size(plan((3, 1), Some(1), Some(1), Some(Fit::Inside))),
            (1, 1)
        );
    }

    #[test]
    fn inside_and_outside_never_upscale() {
        assert_eq!(
            size(plan((300, 200), Some(600), Some(600), Some(Fit::Inside))),
            (300, 200)
        );
        // Outside of 200×200 on 300×100 needs 600×200: scale 2 capped at 1.
        assert_eq!(
            size(plan((300, 100), Some(200), Some(200), Some(Fit::Outside))),
            (300, 100)
        );
        // Outside scale exactly 1.
        assert_eq!(
            size(plan((300, 100), Some(300), Some(50), Some(Fit::Outside))),
            (300, 100)
        );
    }

    #[test]
    fn box_modes_shrink_an_oversized_box_keeping_its_aspect() {
        // s = min(1, 1000/2000, 500/2000) = 0.25 → box 500×500.
        for fit in [Fit::Cover, Fit::Contain, Fit::Fill] {
            let p = plan((1000, 500), Some(2000), Some(2000), Some(fit));
            assert_eq!(p.canvas, (500, 500), "{fit:?}");
        }
        let p = plan((1000, 500), Some(2000), Some(2000), Some(Fit::Cover));
        assert_eq!(p.resize, (500, 500));
        assert_eq!(
            p.crop,
            Rect {
                x: 250.0,
                y: 0.0,
                w: 500.0,
                h: 500.0
            }
        );
        let p = plan((1000, 500), Some(2000), Some(2000), Some(Fit::Contain));
        assert_eq!((p.resize, p.offset), ((500, 250), (0, 125)));
        // Only one side too big: 800×600 master, box 1000×300 → s = 0.8 → 800×240.
        assert_eq!(
            size(plan((800, 600), Some(1000), Some(300), Some(Fit::Fill))),
            (800, 240)
        );
        // Box wider than the master in both, width binding: 300×1000, box 600×600 → 300×300.
        assert_eq!(
            size(plan((300, 1000), Some(600), Some(600), Some(Fit::Cover))),
            (300, 300)
        );
        // Rounding of the shrunk side: 100×100 master, box 300×200 → s=1/3 → 100×66.67 → 67.
        assert_eq!(
            size(plan((100, 100), Some(300), Some(200), Some(Fit::Fill))),
            (100, 67)
        );
    }

    #[test]
    fn no_mode_ever_exceeds_the_master() {
        let master = (37, 91);
        for w in [1, 5, 36, 37, 38, 90, 200] {
            for h in [1, 5, 90, 91, 92, 200] {
                for fit in [
                    Fit::Cover,
                    Fit::Contain,
                    Fit::Fill,
                    Fit::Inside,
                    Fit::Outside,
                ] {
                    let p = plan(master, Some(w), Some(h), Some(fit));
                    assert!(
                        p.canvas.0 <= master.0 && p.canvas.1 <= master.1,
                        "{w}×{h} {fit:?}"
                    );
                    assert!(p.resize.0 >= 1 && p.resize.1 >= 1);
                    assert!(p.resize.0 <= p.canvas.0 && p.resize.1 <= p.canvas.1);
                    assert!(p.crop.x >= 0.0 && p.crop.x + p.crop.w <= f64::from(master.0) + 1e-9);
                    assert!(p.crop.y >= 0.0 && p.crop.y + p.crop.h <= f64::from(master.1) + 1e-9);
                }
            }
        }
    }

    #[test]
    fn orientation_maps_rects_back_to_the_stored_image() {
        let raw = (40, 10); // stored 40 wide, 10 high
        let r = Rect {
            x: 1.0,
            y: 2.0,
            w: 3.0,
            h: 4.0,
        };
        let cases = [
            (
                Orientation::NoTransforms,
                Rect {
                    x: 1.0,
                    y: 2.0,
                    w: 3.0,
                    h: 4.0,
                },
            ),
            (
                Orientation::FlipHorizontal,
                Rect {
                    x: 36.0,
                    y: 2.0,
                    w: 3.0,
                    h: 4.0,
                },
            ),
            (
                Orientation::FlipVertical,
                Rect {
                    x: 1.0,
                    y: 4.0,
                    w: 3.0,
                    h: 4.0,
                },
            ),
            (
                Orientation::Rotate180,
                Rect {
                    x: 36.0,
                    y: 4.0,
                    w: 3.0,
                    h: 4.0,
                },
            ),
            // Rotated: the oriented image is 10 wide, 40 high.
            (
                Orientation::Rotate90,
                Rect {
                    x: 2.0,
                    y: 6.0,
                    w: 4.0,
                    h: 3.0,
                },
            ),
            (
                Orientation::Rotate270,
                Rect {
                    x: 34.0,
                    y: 1.0,
                    w: 4.0,
                    h: 3.0,
                },
            ),
            (
                Orientation::Rotate90FlipH,
                Rect {
                    x: 2.0,
                    y: 1.0,
                    w: 4.0,
                    h: 3.0,
                },
            ),
            (
                Orientation::Rotate270FlipH,
                Rect {
                    x: 34.0,
                    y: 6.0,
                    w: 4.0,
                    h: 3.0,
                },
            ),
        ];
        for (o, want) in cases {
            assert_eq!(rect_in_raw(o, raw, r), want, "{o:?}");
            assert_eq!(swaps_axes(o), oriented_size(o, raw) == (10, 40), "{o:?}");
        }
    }

    #[test]
    fn orientation_maps_agree_with_image_crate_pixels() {
        // Cross-check `raw_point` against image's own apply_orientation on a tiny image
        // whose pixel values are their stored coordinates.
        let raw = (3u32, 2u32);
        let img = image::RgbImage::from_fn(raw.0, raw.1, |x, y| image::Rgb([x as u8, y as u8, 0]));
        for exif in 1..=8 {
            let o = Orientation::from_exif(exif).unwrap();
            let mut d = image::DynamicImage::ImageRgb8(img.clone());
            d.apply_orientation(o);
            let d = d.to_rgb8();
            assert_eq!((d.width(), d.height()), oriented_size(o, raw));
            for (x, y, px) in d.enumerate_pixels() {
                // Centre of the oriented pixel, mapped back, lands in the stored pixel.
                let (rx, ry) = raw_point(o, raw, f64::from(x) + 0.5, f64::from(y) + 0.5);
                assert_eq!(
                    (rx.floor() as u8, ry.floor() as u8),
                    (px[0], px[1]),
                    "exif {exif}"
                );
            }
        }
    }
}
