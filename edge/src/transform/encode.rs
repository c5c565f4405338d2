//! Encoders: libwebp (lossy, method 4, alpha on a second thread, deterministic), jpeg-encoder
//! (4:2:0, optimised Huffman tables), image's PNG encoder, rav1e for AVIF ([`super::avif`]).
//! The pixels are sRGB by now ([`super::colour`]) and no variant carries a colour profile.

use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};

use super::avif;
use super::pixels::Pixels;
use crate::error::{Error, Result};
use crate::spec::Format;

/// Largest side libwebp can encode.
const WEBP_MAX_SIDE: u32 = 16383;
/// Largest side a baseline JPEG can hold.
const JPEG_MAX_SIDE: u32 = 65535;

fn too_large_for(format: &str, px: &Pixels, max: u32) -> Result<()> {
    if px.width > max || px.height > max {
        return Err(Error::image_too_large(format!(
            "a {}×{} image cannot be written as {format} (at most {max} pixels a side); ask for a smaller w or h",
            px.width, px.height
        )));
    }
    Ok(())
}

pub fn png(px: &Pixels) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    // fdeflate ("Fast"): ~250× faster than zlib-level "Default" on a 512² RGBA variant for
    // ~7% more bytes (measured, docs/transform.md).
    let encoder =
        PngEncoder::new_with_quality(&mut out, CompressionType::Fast, PngFilter::Adaptive);
    let colour = match px.channels {
        1 => ExtendedColorType::L8,
        2 => ExtendedColorType::La8,
        3 => ExtendedColorType::Rgb8,
        _ => ExtendedColorType::Rgba8,
    };
    encoder
        .write_image(&px.data, px.width, px.height, colour)
        .map_err(|e| Error::internal_while("encoding PNG", e))?;
    Ok(out)
}

/// `px` must have no alpha (flattened by the caller).
pub fn jpeg(px: &Pixels, quality: u8) -> Result<Vec<u8>> {
    too_large_for("JPEG", px, JPEG_MAX_SIDE)?;
    let colour = match px.channels {
        1 => jpeg_encoder::ColorType::Luma,
        3 => jpeg_encoder::ColorType::Rgb,
        n => {
            return Err(Error::internal_while(
                "encoding JPEG",
                format!("{n} channels"),
            ))
        }
    };
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    encoder.set_optimized_huffman_tables(true);
    encoder
        .encode(&px.data, px.width as u16, px.height as u16, colour)
        .map_err(|e| Error::internal_while("encoding JPEG", e))?;
    Ok(out)
}

/// libwebp's `thread_level`: 1 encodes the alpha plane on a second thread while the colour
/// is encoded (and splits the analysis pass). Its output is byte-identical to one thread's
/// (tested), so variants stay a pure function of master and spec. Needs libwebp built with
/// `WEBP_USE_THREAD` (.cargo/config.toml); without it this is a no-op.
const WEBP_THREADS: i32 = 1;

/// sharp's `webp({quality})`: lossy, method (effort) 4, libwebp's defaults otherwise.
fn webp_config(quality: u8, thread_level: i32) -> Result<webp::WebPConfig> {
    let mut config =
        webp::WebPConfig::new().map_err(|()| Error::internal_while("configuring WebP", "init"))?;
    config.lossless = 0;
    config.quality = f32::from(quality.clamp(1, 100));
    config.method = 4;
    config.thread_level = thread_level;
    Ok(config)
}

/// `px` must be RGB or RGBA.
pub fn webp(px: &Pixels, quality: u8) -> Result<Vec<u8>> {
    too_large_for("WebP", px, WEBP_MAX_SIDE)?;
    let layout = match px.channels {
        3 => webp::PixelLayout::Rgb,
        4 => webp::PixelLayout::Rgba,
        n => {
            return Err(Error::internal_while(
                "encoding WebP",
                format!("{n} channels"),
            ))
        }
    };
    let config = webp_config(quality, WEBP_THREADS)?;
    let encoded = webp::Encoder::new(&px.data, layout, px.width, px.height)
        .encode_advanced(&config)
        .map_err(|e| Error::internal_while("encoding WebP", format!("{e:?}")))?;
    Ok(encoded.to_vec())
}

/// The encoder for a format.
pub fn encode(px: &Pixels, format: Format, quality: u8) -> Result<Vec<u8>> {
    match format {
        Format::Png => png(px),
        Format::Jpeg => jpeg(px, quality),
        Format::Webp => webp(px, quality),
        Format::Avif => avif::encode(px, quality),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second libwebp thread must not change a single byte: variants are cached forever
    /// and the same URL must always give the same object.
    #[test]
    fn webp_threads_give_the_same_bytes_as_one_thread() {
        let (w, h) = (96u32, 64u32);
        let data: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                [
                    (x * 3) as u8,
                    (y * 4) as u8,
                    ((x ^ y) * 5) as u8,
                    (x * y % 256) as u8,
                ]
            })
            .collect();
        let px = Pixels::new(w, h, 4, data);
        let threaded = webp(&px, 80).unwrap();
        let single = webp::Encoder::new(&px.data, webp::PixelLayout::Rgba, w, h)
            .encode_advanced(&webp_config(80, 0).unwrap())
            .unwrap()
            .to_vec();
        assert_eq!(WEBP_THREADS, 1);
        assert!(threaded == single, "thread_level 1 changed the WebP bytes");
    }
}
