//! Colour management like sharp's default: a master's ICC profile says what its pixels
//! mean; outputs are sRGB and carry no profile (DESIGN.md §1). A master without a profile
//! is sRGB already. A profile that maps every colour to itself (a standard sRGB profile,
//! whatever its name or version) changes nothing; any other RGB or grey profile (Display
//! P3, Adobe RGB, ProPhoto, a gamma-1.8 grey, …) is converted to sRGB with moxcms, a pure
//! Rust CMS (already linked: image uses it), perceptual intent as sharp asks of Little CMS.
//!
//! The conversion runs on the output-sized pixels, after the resample (sharp converts
//! before it, at full size): 4–60× fewer pixels to convert, and the difference is below
//! the encoders' noise (docs/transform.md has the measurement). A profile that cannot be
//! read, or that does not describe the pixels (a CMYK JPEG's profile on the RGB the decoder
//! made), is dropped with a warning, leaving the pixels as they are.

use std::sync::Arc;

use moxcms::{ColorProfile, DataColorSpace, Layout, ToneReprCurve, TransformOptions};

use super::pixels::Pixels;
use crate::error::{Error, Result};

type Executor = moxcms::Transform8BitExecutor;

/// What to do to the pixels of a master with this profile.
pub enum ToSrgb {
    /// No profile, or one equivalent to sRGB: the pixels are sRGB already.
    Keep,
    /// Convert with this transform (8-bit, from the master's space to sRGB).
    Convert(Arc<Executor>),
}

impl std::fmt::Debug for ToSrgb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ToSrgb::Keep => "Keep",
            ToSrgb::Convert(_) => "Convert",
        })
    }
}

/// Colour space a profile describes (ICC header bytes 16..20), e.g. `RGB ` or `GRAY`.
pub fn icc_colour_space(profile: &[u8]) -> Option<[u8; 4]> {
    profile.get(16..20).map(|s| [s[0], s[1], s[2], s[3]])
}

/// The sRGB transfer curve (IEC 61966-2-1) as an ICC parametric curve (type 3).
fn srgb_curve() -> ToneReprCurve {
    ToneReprCurve::Parametric(vec![2.4, 1. / 1.055, 0.055 / 1.055, 1. / 12.92, 0.04045])
}

/// Grey with the sRGB transfer curve: where a grey master's pixels go (they stay grey,
/// and an sRGB viewer shows a grey output as R = G = B of the same values).
fn srgb_grey() -> ColorProfile {
    let mut p = ColorProfile::new_gray_with_gamma(2.2);
    p.gray_trc = Some(srgb_curve());
    p
}

/// Decide how the pixels of a master with `icc` become sRGB; `channels` is the decoded
/// pixels' layout (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA).
pub fn plan(icc: Option<&[u8]>, channels: u8) -> ToSrgb {
    let Some(icc) = icc else {
        return ToSrgb::Keep;
    };
    match transform(icc, channels) {
        Ok(Some(t)) => ToSrgb::Convert(t),
        Ok(None) => ToSrgb::Keep,
        Err(why) => {
            tracing::warn!(
                colour_space = ?icc_colour_space(icc).map(|c| String::from_utf8_lossy(&c).into_owned()),
                channels,
                "transform: the master's ICC profile is not used ({why}); its pixels are taken as sRGB"
            );
            ToSrgb::Keep
        }
    }
}

/// The transform to sRGB, `None` when it would change no colour by more than one level.
fn transform(icc: &[u8], channels: u8) -> std::result::Result<Option<Arc<Executor>>, String> {
    let source = ColorProfile::new_from_slice(icc).map_err(|e| format!("unreadable: {e}"))?;
    let grey = channels <= 2;
    let (layout, target) = match (source.color_space, grey) {
        (DataColorSpace::Rgb, false) => (
            if channels == 4 {
                Layout::Rgba
            } else {
                Layout::Rgb
            },
            ColorProfile::new_srgb(),
        ),
        (DataColorSpace::Gray, true) => (
            if channels == 2 {
                Layout::GrayAlpha
            } else {
                Layout::Gray
            },
            srgb_grey(),
        ),
        (space, _) => {
            return Err(format!(
                "a {space:?} profile does not describe {}",
                if grey { "grey pixels" } else { "RGB pixels" }
            ))
        }
    };
    let t = source
        .create_transform_8bit(layout, &target, layout, TransformOptions::default())
        .map_err(|e| format!("no transform to sRGB: {e}"))?;
    Ok((!is_identity(t.as_ref(), layout)).then_some(t))
}

/// Whether `t` maps a grid of colours (every channel at 0, 15, 30 … 255, all
/// combinations) to themselves within one level: an sRGB profile, or one close enough that
/// converting would only add rounding noise.
fn is_identity(t: &Executor, layout: Layout) -> bool {
    const STEPS: u8 = 17;
    let level = |i: u8| i * 15;
    let src: Vec<u8> = match layout {
        Layout::Gray => (0..STEPS).map(level).collect(),
        Layout::GrayAlpha => (0..STEPS).flat_map(|i| [level(i), 255]).collect(),
        _ => {
            let alpha = layout == Layout::Rgba;
            let mut v = Vec::new();
            for r in 0..STEPS {
                for g in 0..STEPS {
                    for b in 0..STEPS {
                        v.extend_from_slice(&[level(r), level(g), level(b)]);
                        if alpha {
                            v.push(255);
                        }
                    }
                }
            }
            v
        }
    };
    let mut dst = vec![0u8; src.len()];
    t.transform(&src, &mut dst).is_ok() && src.iter().zip(&dst).all(|(a, b)| a.abs_diff(*b) <= 1)
}

impl ToSrgb {
    /// Convert `px` (unpremultiplied; alpha passes through) to sRGB.
    pub fn apply(&self, px: Pixels) -> Result<Pixels> {
        let ToSrgb::Convert(t) = self else {
            return Ok(px);
        };
        let mut out = vec![0u8; px.data.len()];
        t.transform(&px.data, &mut out)
            .map_err(|e| Error::internal_while("converting the master's colours to sRGB", e))?;
        Ok(Pixels::new(px.width, px.height, px.channels, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_profile_or_an_srgb_profile_keeps_the_pixels() {
        assert!(matches!(plan(None, 3), ToSrgb::Keep));
        let srgb = ColorProfile::new_srgb().encode().unwrap();
        assert!(matches!(plan(Some(&srgb), 3), ToSrgb::Keep));
        assert!(matches!(plan(Some(&srgb), 4), ToSrgb::Keep));
    }

    #[test]
    fn display_p3_converts_and_a_mismatched_or_broken_profile_is_ignored() {
        let p3 = ColorProfile::new_display_p3().encode().unwrap();
        let ToSrgb::Convert(_) = plan(Some(&p3), 3) else {
            panic!("Display P3 must be converted")
        };
        // An RGB profile on grey pixels, and garbage: ignored.
        assert!(matches!(plan(Some(&p3), 1), ToSrgb::Keep));
        assert!(matches!(
            plan(Some(b"not a profile at all"), 3),
            ToSrgb::Keep
        ));
        // P3's pure red is outside sRGB: clipped to sRGB's red; P3 white stays white,
        // and alpha passes through.
        let px = Pixels::new(2, 1, 4, vec![255, 0, 0, 7, 255, 255, 255, 200]);
        let out = plan(Some(&p3), 4).apply(px).unwrap();
        assert_eq!(out.data[3], 7);
        assert_eq!(&out.data[4..], &[255, 255, 255, 200]);
        assert!(
            out.data[0] == 255 && out.data[1] <= 1 && out.data[2] <= 1,
            "{:?}",
            out.data
        );
    }

    #[test]
    fn a_grey_profile_converts_grey_to_grey() {
        let g18 = ColorProfile::new_gray_with_gamma(1.8).encode().unwrap();
        let t = plan(Some(&g18), 1);
        assert!(matches!(t, ToSrgb::Convert(_)));
        let out = t.apply(Pixels::new(3, 1, 1, vec![0, 128, 255])).unwrap();
        assert_eq!(out.channels, 1);
        assert_eq!((out.data[0], out.data[2]), (0, 255));
        // Gamma 1.8 mid-grey is lighter in sRGB (≈ 0.29 linear → ≈ 146).
        assert!((140..=152).contains(&out.data[1]), "{:?}", out.data);
    }
}
