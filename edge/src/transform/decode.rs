//! Sniff → header → limits → decode. The header is read and the limits are checked before
//! any pixel buffer exists, so a decompression bomb costs microseconds and no memory. The
//! common PNG master is only opened here and decoded later, streaming, once the pipeline
//! knows how much it may shrink it on the way ([`Source::decode`]).

use std::io::Cursor;

use image::metadata::Orientation;
use image::{ColorType, ImageDecoder, ImageError, ImageFormat, ImageReader};

use super::pixels::Pixels;
use super::png_rows;
use super::riff;
use super::rows::{BoxShrink, Collect, Decoded, RowSink};
use super::Limits;
use crate::error::{Error, Result};

/// A decoded master: 8-bit pixels as stored (not yet oriented), how to orient them, and
/// the colour profile to carry into the variant.
#[derive(Debug)]
pub struct Master {
    pub pixels: Pixels,
    pub orientation: Orientation,
    pub icc: Option<Vec<u8>>,
}

const SUPPORTED: &str = "masters must be PNG, JPEG or WebP images";

fn format_name(f: ImageFormat) -> &'static str {
    match f {
        ImageFormat::Png => "PNG",
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::WebP => "WebP",
        _ => "image",
    }
}

/// Which decoder to use, from the bytes (not the key's extension, which may lie).
pub fn sniff(bytes: &[u8]) -> Result<ImageFormat> {
    if bytes.is_empty() {
        return Err(Error::unsupported_image(format!(
            "the master is empty (0 bytes); {SUPPORTED}"
        )));
    }
    match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) => Ok(f),
        Ok(other) => Err(Error::unsupported_image(format!(
            "the master is a {} image; {SUPPORTED}",
            other
                .extensions_str()
                .first()
                .copied()
                .unwrap_or("unknown")
                .to_uppercase()
        ))),
        Err(_) => Err(Error::unsupported_image(format!(
            "the master is not a recognisable image; {SUPPORTED}"
        ))),
    }
}

/// Bytes limit first (cheapest), then pixels from the header.
pub fn check_bytes(len: usize, limits: &Limits) -> Result<()> {
    if len as u64 > limits.max_bytes {
        return Err(Error::image_too_large(format!(
            "the master is {len} bytes, over the limit of {} bytes",
            limits.max_bytes
        )));
    }
    Ok(())
}

pub fn check_pixels(width: u32, height: u32, limits: &Limits) -> Result<()> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(Error::image_too_large(format!(
            "the master is {width}×{height} = {pixels} pixels, over the limit of {} pixels",
            limits.max_pixels
        )));
    }
    Ok(())
}

/// Most a decoder may allocate: the pixel limit at 8-bit RGBA plus row buffers. A second
/// guard behind the header check, for decoders whose internal buffers outgrow the image.
fn alloc_limit(limits: &Limits) -> u64 {
    limits.max_pixels.saturating_mul(4).saturating_add(16 << 20)
}

fn too_much_memory() -> Error {
    Error::image_too_large("decoding the master needs more memory than the limits allow")
}

fn corrupt(format: ImageFormat, detail: impl std::fmt::Display) -> Error {
    Error::unsupported_image(format!(
        "the master is not a readable {} image (corrupt or truncated data: {detail})",
        format_name(format)
    ))
}

/// A master whose header has been read and checked against the limits.
#[derive(Debug)]
pub enum Source {
    /// A PNG the streaming decoder takes ([`png_rows`]): nothing decoded yet.
    Rows {
        width: u32,
        height: u32,
        channels: u8,
        orientation: Orientation,
        icc: Option<Vec<u8>>,
    },
    /// Any other master, decoded whole.
    Whole(Master),
}

impl Source {
    /// Stored (unoriented) size.
    pub fn size(&self) -> (u32, u32) {
        match self {
            Source::Rows { width, height, .. } => (*width, *height),
            Source::Whole(m) => m.pixels.size(),
        }
    }

    pub fn orientation(&self) -> Orientation {
        match self {
            Source::Rows { orientation, .. } | Source::Whole(Master { orientation, .. }) => {
                *orientation
            }
        }
    }

    /// The pixels, box-shrunk by `kx`×`ky` on the way when either is above 1 (streaming:
    /// a PNG master is then never held at full size), and the ICC profile.
    pub fn decode(self, bytes: &[u8], kx: u32, ky: u32) -> Result<(Decoded, Option<Vec<u8>>)> {
        let shrink = kx > 1 || ky > 1;
        match self {
            Source::Rows {
                width,
                height,
                channels,
                icc,
                ..
            } => {
                let decoded = if shrink {
                    let mut sink = BoxShrink::new(width, height, channels, kx, ky);
                    png_rows::decode(bytes, width, height, channels, &mut sink)?;
                    sink.finish()?
                } else {
                    let mut sink = Collect::new(width, height, channels);
                    png_rows::decode(bytes, width, height, channels, &mut sink)?;
                    Decoded {
                        pixels: sink.finish()?,
                        premultiplied: false,
                    }
                };
                Ok((decoded, icc))
            }
            Source::Whole(Master { pixels, icc, .. }) if shrink => {
                let (w, h, n) = (pixels.width, pixels.height, pixels.channels);
                let mut sink = BoxShrink::new(w, h, n, kx, ky);
                for row in pixels.data.chunks_exact(w as usize * n as usize) {
                    sink.push_row(row)?;
                }
                Ok((sink.finish()?, icc))
            }
            Source::Whole(Master { pixels, icc, .. }) => Ok((
                Decoded {
                    pixels,
                    premultiplied: false,
                },
                icc,
            )),
        }
    }
}

/// Sniff, check the limits and read the header; a PNG the streaming decoder takes stops
/// there, any other master is decoded whole.
pub fn open(bytes: &[u8], limits: &Limits) -> Result<Source> {
    check_bytes(bytes.len(), limits)?;
    match sniff(bytes)? {
        ImageFormat::Png => open_png(bytes, limits),
        ImageFormat::Jpeg => decode_jpeg(bytes, limits).map(Source::Whole),
        _ => decode_webp(bytes, limits).map(Source::Whole),
    }
}

/// PNG: the header (and the chunks before the image data) through the png crate; the
/// common 8-bit PNG then streams through [`png_rows`], anything else is decoded by the png
/// crate: palette expansion and 16→8-bit stripping happen row by row inside it, so there is
/// never a 16-bit or indexed full-size copy.
fn open_png(bytes: &[u8], limits: &Limits) -> Result<Source> {
    let png_limits = png::Limits {
        bytes: usize::try_from(alloc_limit(limits)).unwrap_or(usize::MAX),
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), png_limits);
    let map_err = |e: png::DecodingError| match e {
        png::DecodingError::LimitsExceeded => too_much_memory(),
        e => corrupt(ImageFormat::Png, e),
    };
    let header = decoder.read_header_info().map_err(map_err)?;
    check_pixels(header.width, header.height, limits)?;
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(map_err)?;
    let info = reader.info();
    let icc = info.icc_profile.as_ref().map(|p| p.to_vec());
    let orientation = info
        .exif_metadata
        .as_deref()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    if let Some(channels) = png_rows::fast_path_channels(info) {
        return Ok(Source::Rows {
            width: info.width,
            height: info.height,
            channels,
            orientation,
            icc,
        });
    }
    let channels = match reader.output_color_type().0 {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => {
            return Err(Error::internal(
                "internal error: palette PNG was not expanded",
            ))
        }
    };
    let len = reader.output_buffer_size().ok_or_else(too_much_memory)?;
    let mut data = vec![0u8; len];
    // For an animated PNG this is the default image, i.e. the first frame.
    let frame = reader.next_frame(&mut data).map_err(map_err)?;
    data.truncate(frame.buffer_size());
    Ok(Source::Whole(Master {
        pixels: Pixels::new(frame.width, frame.height, channels, data),
        orientation,
        icc,
    }))
}

/// JPEG through jpeg-decoder, not image's zune-jpeg: zune-jpeg 0.5.15 mis-decodes
/// non-interleaved baseline scans (what jpeg-encoder writes with optimised Huffman tables,
/// i.e. our own JPEG variants), see docs/transform.md.
fn decode_jpeg(bytes: &[u8], limits: &Limits) -> Result<Master> {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder
        .set_max_decoding_buffer_size(usize::try_from(alloc_limit(limits)).unwrap_or(usize::MAX));
    let map_err = |e: jpeg_decoder::Error| match e {
        jpeg_decoder::Error::Unsupported(what) => Error::unsupported_image(format!(
            "the master uses a JPEG feature that is not supported ({what:?})"
        )),
        e => corrupt(ImageFormat::Jpeg, e),
    };
    // Markers up to the frame header only: no pixel buffer yet.
    decoder.read_info().map_err(map_err)?;
    let info = decoder
        .info()
        .ok_or_else(|| corrupt(ImageFormat::Jpeg, "no frame header"))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_pixels(width, height, limits)?;
    let data = decoder.decode().map_err(map_err)?;
    let orientation = decoder
        .exif_data()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let icc = decoder.icc_profile();
    let (channels, data) = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => (1, data),
        jpeg_decoder::PixelFormat::RGB24 => (3, data),
        // Rare (lossless JPEG): keep the high byte of each big-endian sample.
        jpeg_decoder::PixelFormat::L16 => (1, data.chunks_exact(2).map(|s| s[0]).collect()),
        // Adobe CMYK (stored inverted): naive CMYK → RGB; its profile is then not carried
        // (see `keep_icc`).
        jpeg_decoder::PixelFormat::CMYK32 => (3, cmyk_to_rgb(&data)),
    };
    if data.len() != width as usize * height as usize * channels as usize {
        return Err(corrupt(
            ImageFormat::Jpeg,
            "pixel data does not match the header",
        ));
    }
    Ok(Master {
        pixels: Pixels::new(width, height, channels, data),
        orientation,
        icc,
    })
}

fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    cmyk.chunks_exact(4)
        .flat_map(|p| {
            let k = 255 - u16::from(p[3]);
            [0, 1, 2].map(|c| ((255 - u16::from(p[c])) * k / 255) as u8)
        })
        .collect()
}

/// WebP through image's decoder (image-webp), which gives 8-bit RGB or RGBA.
fn decode_webp(bytes: &[u8], limits: &Limits) -> Result<Master> {
    let format = ImageFormat::WebP;
    // The decoder allocates for each bitstream's own size, which it does not check against
    // the canvas it reports below, and it panics on a mismatch in an animation frame; both
    // found by fuzzing (a 40×28 canvas over a 12799×5203 frame: ~100 MB for 300 bytes; a
    // 40×28 frame holding a 7208×0 bitstream). libwebp refuses such files too.
    // It also allocates what a metadata chunk states before reading it (fuzzing: an EXIF
    // chunk stating 788 MB in a 440-byte file).
    if let Some((fourcc, len)) = riff::overlong_chunk(bytes) {
        let name = String::from_utf8_lossy(&fourcc).trim_end().to_string();
        return Err(corrupt(
            format,
            format!("the {name} chunk states {len} bytes, past the end of the file"),
        ));
    }
    for stream in riff::bitstreams(bytes) {
        let (width, height) = stream.size;
        check_pixels(width, height, limits)?;
        if width == 0 || height == 0 {
            return Err(corrupt(format, format!("a bitstream of {width}×{height}")));
        }
        if let Some((cw, ch)) = stream.container.filter(|c| *c != stream.size) {
            return Err(corrupt(
                format,
                format!("a {width}×{height} bitstream in a {cw}×{ch} frame"),
            ));
        }
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut image_limits = image::Limits::default();
    image_limits.max_alloc = Some(alloc_limit(limits));
    reader.limits(image_limits);
    let map_err = |e: ImageError| match e {
        ImageError::Limits(_) => too_much_memory(),
        e => corrupt(format, e),
    };
    // Only the header is parsed here.
    let mut decoder = reader.into_decoder().map_err(map_err)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, limits)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let icc = decoder.icc_profile().unwrap_or(None);
    let channels = match decoder.color_type() {
        ColorType::L8 => 1,
        ColorType::La8 => 2,
        ColorType::Rgb8 => 3,
        ColorType::Rgba8 => 4,
        other => {
            return Err(Error::unsupported_image(format!(
                "the master's {other:?} pixels are not supported; {SUPPORTED} with 8-bit samples"
            )))
        }
    };
    let total = decoder.total_bytes();
    if total > alloc_limit(limits) {
        return Err(too_much_memory());
    }
    let mut data = vec![0u8; total as usize];
    // For an animated WebP this decodes the first frame.
    decoder.read_image(&mut data).map_err(map_err)?;
    Ok(Master {
        pixels: Pixels::new(width, height, channels, data),
        orientation,
        icc,
    })
}
