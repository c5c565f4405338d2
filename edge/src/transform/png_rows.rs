//! Streaming decode of the common PNG — 8-bit grey, grey+alpha, RGB or RGBA, not
//! interlaced, no tRNS — into a [`RowSink`]. The IDAT stream is inflated on one thread while
//! the calling thread unfilters each row and hands it to the sink, so the two halves of PNG
//! decoding run on both cores and a large master is never held whole when the sink shrinks
//! it. Everything else (palette, 16-bit, interlaced, tRNS) goes through the png crate.
//!
//! Inflate is fdeflate, the inflater the png crate uses; rows are unfiltered here because
//! the png crate does not expose its unfilter.

use std::sync::mpsc::{self, Receiver, SyncSender};

use super::rows::RowSink;
use crate::error::{Error, Result};

/// Inflated bytes travel between the threads in chunks of this size.
const CHUNK: usize = 128 * 1024;
/// Back-references of deflate reach at most 32 KiB behind.
const WINDOW: usize = 32 * 1024;
/// Chunks in flight between the threads (bounds the memory of the hand-off).
const IN_FLIGHT: usize = 6;
/// Below this many inflated bytes a second thread costs more than it saves.
const THREAD_MIN_BYTES: usize = 512 * 1024;

/// The channels of a PNG this decoder takes, or `None` for the png crate's path.
pub fn fast_path_channels(info: &png::Info) -> Option<u8> {
    if info.interlaced || info.bit_depth != png::BitDepth::Eight || info.trns.is_some() {
        return None;
    }
    match info.color_type {
        png::ColorType::Grayscale => Some(1),
        png::ColorType::GrayscaleAlpha => Some(2),
        png::ColorType::Rgb => Some(3),
        png::ColorType::Rgba => Some(4),
        png::ColorType::Indexed => None,
    }
}

fn corrupt(detail: impl std::fmt::Display) -> Error {
    Error::unsupported_image(format!(
        "the master is not a readable PNG image (corrupt or truncated data: {detail})"
    ))
}

/// The payloads of the IDAT chunks, in order, each checked against its CRC.
fn idat_payloads(bytes: &[u8]) -> Result<Vec<&[u8]>> {
    let mut at = 8; // the signature
    let mut out = Vec::new();
    while at + 12 <= bytes.len() {
        let len = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let len = len as usize;
        let kind = &bytes[at + 4..at + 8];
        let end = at
            .checked_add(12 + len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| corrupt("a chunk runs past the end of the file"))?;
        if kind == b"IDAT" {
            let stored = &bytes[end - 4..end];
            let crc = crc32fast::hash(&bytes[at + 4..end - 4]).to_be_bytes();
            if stored != crc {
                return Err(corrupt("CRC error in an IDAT chunk"));
            }
            out.push(&bytes[at + 8..end - 4]);
        } else if !out.is_empty() || kind == b"IEND" {
            break; // IDAT chunks are consecutive
        }
        at = end;
    }
    if out.is_empty() {
        return Err(corrupt("no image data"));
    }
    Ok(out)
}

/// Decode the image data of `bytes` (whose header said `width`×`height`, `channels`
/// 8-bit samples) into `sink`, on two threads when the image is large enough.
pub fn decode(
    bytes: &[u8],
    width: u32,
    height: u32,
    channels: u8,
    sink: &mut dyn RowSink,
) -> Result<()> {
    let idat = idat_payloads(bytes)?;
    let row_len = width as usize * channels as usize;
    let total = (row_len + 1) * height as usize;
    let mut rows = Unfilter::new(row_len, channels as usize, height as usize);
    if total < THREAD_MIN_BYTES {
        // The inflate buffer is deflate's window: rows are unfiltered in a copy.
        let mut copy = Vec::new();
        inflate(&idat, total, |bytes| {
            copy.clear();
            copy.extend_from_slice(bytes);
            rows.feed(&mut copy, sink)
        })?;
        return rows.finish();
    }
    let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
    std::thread::scope(|scope| {
        let inflater = scope.spawn(move || inflate_to(&idat, total, full_tx, empty_rx));
        let mut unfiltered = Ok(());
        for mut chunk in full_rx.iter() {
            unfiltered = rows.feed(&mut chunk, sink);
            if unfiltered.is_err() {
                break;
            }
            // The inflater may have finished; a closed return channel is fine.
            let _ = empty_tx.try_send(chunk);
        }
        // Dropping the receiver stops an inflater still sending (after an unfilter error).
        drop(full_rx);
        let inflated = inflater.join().unwrap_or_else(|_| {
            Err(Error::internal(
                "internal error: the inflate thread panicked",
            ))
        });
        unfiltered.and(inflated)
    })?;
    rows.finish()
}

/// The inflate thread: chunks of inflated bytes go out on `full`, spent buffers come back
/// on `empty`. Stops quietly if the receiver hangs up.
fn inflate_to(
    idat: &[&[u8]],
    total: usize,
    full: SyncSender<Vec<u8>>,
    empty: Receiver<Vec<u8>>,
) -> Result<()> {
    let mut hung_up = false;
    let result = inflate(idat, total, |bytes| {
        let mut chunk = empty.try_recv().unwrap_or_default();
        chunk.clear();
        chunk.extend_from_slice(bytes);
        if full.send(chunk).is_err() {
            hung_up = true;
            return Err(Error::internal("stopped"));
        }
        Ok(())
    });
    if hung_up {
        return Ok(()); // the unfilter side has the error to report
    }
    result
}

/// Inflate the concatenated IDAT payloads, calling `emit` with each run of new bytes, up
/// to `total` bytes (bytes past the image are ignored, as libpng and the png crate do).
fn inflate(idat: &[&[u8]], total: usize, mut emit: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut z = fdeflate::Decompressor::new();
    // The png crate does not check Adler-32 either; every chunk's CRC was checked.
    z.ignore_adler32();
    let mut buf = vec![0u8; WINDOW + CHUNK];
    let (mut pos, mut sent, mut produced) = (0usize, 0usize, 0usize);
    let last = idat.len() - 1;
    for (i, mut input) in idat.iter().copied().enumerate() {
        loop {
            let (used, written) = z
                .read(input, &mut buf, pos, i == last)
                .map_err(|e| corrupt(format!("{e:?}")))?;
            input = &input[used..];
            pos += written;
            // fdeflate returns when the input is used up, the buffer is full or the stream
            // ends: each is a whole run to hand on.
            let new = (pos - sent).min(total - produced);
            let full = pos == buf.len();
            if new > 0 {
                emit(&buf[sent..sent + new])?;
                produced += new;
                sent = pos;
            }
            if produced == total || z.is_done() {
                return finished(produced, total);
            }
            if full {
                buf.copy_within(pos - WINDOW..pos, 0);
                (pos, sent) = (WINDOW, WINDOW);
            } else if input.is_empty() {
                break;
            } else if written == 0 && used == 0 {
                return Err(corrupt("the compressed data stops making progress"));
            }
        }
    }
    finished(produced, total)
}

fn finished(produced: usize, total: usize) -> Result<()> {
    if produced < total {
        return Err(corrupt(format!(
            "image data ends after {produced} of {total} bytes"
        )));
    }
    Ok(())
}

/// Splits inflated bytes into rows, undoes each row's filter against the previous row and
/// gives the row to the sink.
struct Unfilter {
    bpp: usize,
    height: usize,
    /// Filter byte + a row split across chunks, being assembled.
    cur: Vec<u8>,
    /// Filter byte + previous row, unfiltered (zeros before the first row).
    prev: Vec<u8>,
    filled: usize,
    rows: usize,
}

impl Unfilter {
    fn new(row_len: usize, bpp: usize, height: usize) -> Unfilter {
        Unfilter {
            bpp,
            height,
            cur: vec![0; row_len + 1],
            prev: vec![0; row_len + 1],
            filled: 0,
            rows: 0,
        }
    }

    /// Take the next inflated bytes. Whole rows inside `data` are unfiltered in place (no
    /// copy); a row split across calls is assembled in `cur`.
    fn feed(&mut self, mut data: &mut [u8], sink: &mut dyn RowSink) -> Result<()> {
        let stride = self.cur.len();
        if self.filled > 0 {
            let take = (stride - self.filled).min(data.len());
            self.cur[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &mut data[take..];
            if self.filled < stride {
                return Ok(());
            }
            self.filled = 0;
            let (row, prev) = (&mut self.cur[..], &self.prev[1..]);
            self.rows += unfilter_row(self.bpp, prev, row, sink)?;
            std::mem::swap(&mut self.cur, &mut self.prev);
        }
        let whole = (data.len() / stride).min(self.height - self.rows);
        for i in 0..whole {
            let (done, rest) = data.split_at_mut(i * stride);
            let prev = if i == 0 {
                &self.prev[1..]
            } else {
                &done[done.len() - (stride - 1)..]
            };
            self.rows += unfilter_row(self.bpp, prev, &mut rest[..stride], sink)?;
        }
        if whole > 0 {
            let last = &data[(whole - 1) * stride..whole * stride];
            self.prev.copy_from_slice(last);
        }
        let tail = &data[whole * stride..];
        if self.rows < self.height && !tail.is_empty() {
            self.cur[..tail.len()].copy_from_slice(tail);
            self.filled = tail.len();
        }
        Ok(())
    }

    fn finish(&self) -> Result<()> {
        if self.rows < self.height {
            return Err(corrupt(format!(
                "image data ends after {} of {} rows",
                self.rows, self.height
            )));
        }
        Ok(())
    }
}

/// Unfilter `row` (filter byte + pixels) against `prev` (pixels) and give it to the sink.
fn unfilter_row(bpp: usize, prev: &[u8], row: &mut [u8], sink: &mut dyn RowSink) -> Result<usize> {
    let (filter, px) = row.split_first_mut().expect("rows are never empty");
    match bpp {
        1 => unfilter::<1>(*filter, prev, px)?,
        2 => unfilter::<2>(*filter, prev, px)?,
        3 => unfilter::<3>(*filter, prev, px)?,
        _ => unfilter::<4>(*filter, prev, px)?,
    }
    sink.push_row(px)?;
    Ok(1)
}

/// Undo one row's filter (PNG spec §9), `N` bytes per pixel, in place.
fn unfilter<const N: usize>(filter: u8, prev: &[u8], row: &mut [u8]) -> Result<()> {
    match filter {
        0 => {}
        1 => {
            let mut left = [0u8; N];
            for px in row.chunks_exact_mut(N) {
                for c in 0..N {
                    px[c] = px[c].wrapping_add(left[c]);
                }
                left.copy_from_slice(px);
            }
        }
        2 => {
            for (x, &up) in row.iter_mut().zip(prev) {
                *x = x.wrapping_add(up);
            }
        }
        3 => {
            let mut left = [0u8; N];
            for (px, up) in row.chunks_exact_mut(N).zip(prev.chunks_exact(N)) {
                for c in 0..N {
                    let avg = ((u16::from(left[c]) + u16::from(up[c])) / 2) as u8;
                    px[c] = px[c].wrapping_add(avg);
                }
                left.copy_from_slice(px);
            }
        }
        4 => {
            // Left and up-left carried as i32: the predictor's arithmetic needs them wide.
            let (mut left, mut up_left) = ([0i32; N], [0i32; N]);
            for (px, up) in row.chunks_exact_mut(N).zip(prev.chunks_exact(N)) {
                for c in 0..N {
                    let b = i32::from(up[c]);
                    px[c] = px[c].wrapping_add(paeth(left[c], b, up_left[c]));
                    left[c] = i32::from(px[c]);
                    up_left[c] = b;
                }
            }
        }
        other => return Err(corrupt(format!("unknown row filter {other}"))),
    }
    Ok(())
}

/// The Paeth predictor in stb_image's branch-free form (same result as the spec's).
#[inline(always)]
fn paeth(a: i32, b: i32, c: i32) -> u8 {
    let thresh = c * 3 - (a + b);
    let (lo, hi) = (a.min(b), a.max(b));
    let t0 = if hi <= thresh { lo } else { c };
    let t1 = if thresh <= lo { hi } else { t0 };
    t1 as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::rows::Collect;

    /// The spec's Paeth, as written there.
    fn paeth_spec(a: u8, b: u8, c: u8) -> u8 {
        let p = i16::from(a) + i16::from(b) - i16::from(c);
        let (pa, pb, pc) = (
            (p - i16::from(a)).abs(),
            (p - i16::from(b)).abs(),
            (p - i16::from(c)).abs(),
        );
        if pa <= pb && pa <= pc {
            a
        } else if pb <= pc {
            b
        } else {
            c
        }
    }

    #[test]
    fn paeth_matches_the_spec_for_every_input() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for c in (0..=255u8).step_by(3) {
                    let fast = paeth(i32::from(a), i32::from(b), i32::from(c));
                    assert_eq!(fast, paeth_spec(a, b, c), "{a} {b} {c}");
                }
            }
        }
    }

    /// A PNG written by the png crate with one filter (or adaptive), 8-bit.
    fn encode(
        w: u32,
        h: u32,
        colour: png::ColorType,
        filter: png::Filter,
        idat: usize,
    ) -> (Vec<u8>, Vec<u8>) {
        let n = match colour {
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            _ => 4,
        };
        let pixels: Vec<u8> = (0..w * h * n)
            .map(|i| {
                let (x, y, c) = ((i / n) % w, (i / n) / w, i % n);
                ((x * 7 + y * 13 + c * 50) ^ (x * y)).wrapping_mul(2654435761) as u8 / 2
                    + (x as u8 / 3)
            })
            .collect();
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, w, h);
            enc.set_color(colour);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_filter(filter);
            let mut writer = enc.write_header().unwrap();
            // Small IDAT chunks: the stream must be followed across chunk boundaries.
            let mut stream = writer.stream_writer_with_size(idat).unwrap();
            std::io::Write::write_all(&mut stream, &pixels).unwrap();
            stream.finish().unwrap();
        }
        (out, pixels)
    }

    fn decode_all(png_bytes: &[u8]) -> Result<Vec<u8>> {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        let n = fast_path_channels(info).unwrap();
        let mut sink = Collect::new(info.width, info.height, n);
        decode(png_bytes, info.width, info.height, n, &mut sink)?;
        Ok(sink.finish()?.data)
    }

    #[test]
    fn every_filter_and_colour_type_decodes_to_the_encoded_pixels() {
        use png::{ColorType as C, Filter as F};
        let colours = [C::Grayscale, C::GrayscaleAlpha, C::Rgb, C::Rgba];
        let filters = [F::NoFilter, F::Sub, F::Up, F::Avg, F::Paeth, F::Adaptive];
        // 61×37: rows of odd length; 700×300 RGB(A): over THREAD_MIN_BYTES, two threads.
        for (w, h) in [(61, 37), (700, 300), (1, 1)] {
            for colour in colours {
                for filter in filters {
                    let (bytes, pixels) = encode(w, h, colour, filter, 1000);
                    let got = decode_all(&bytes).unwrap();
                    assert!(got == pixels, "{w}×{h} {colour:?} {filter:?}");
                }
            }
        }
    }

    #[test]
    fn truncated_and_corrupted_streams_are_errors_not_panics() {
        let (bytes, _) = encode(700, 300, png::ColorType::Rgb, png::Filter::Paeth, 8192);
        // Cut inside the IDAT chunks (after the header chunks the png crate reads).
        for cut in [200, bytes.len() / 2, bytes.len() - 20] {
            let err = decode_all(&bytes[..cut]).unwrap_err();
            assert_eq!(err.status(), 415, "cut at {cut}: {err}");
        }
        // A flipped byte inside IDAT data: the CRC catches it.
        let mut bad = bytes.clone();
        let at = bytes.len() / 2;
        bad[at] ^= 0x55;
        let err = decode_all(&bad).unwrap_err();
        assert!(err.to_string().contains("CRC"), "{err}");
    }

    #[test]
    fn a_bad_filter_byte_is_an_error() {
        // Hand-made: 2×2 grey, rows with filter 9, stored (uncompressed) deflate.
        let raw = [9u8, 1, 2, 0, 3, 4];
        let mut z = vec![0x78, 0x01, 1, raw.len() as u8, 0, !(raw.len() as u8), 0xff];
        z.extend_from_slice(&raw);
        z.extend_from_slice(&[0, 0, 0, 0]); // Adler-32 (not checked)
        let mut png_bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut chunk = |kind: &[u8], data: &[u8]| {
            png_bytes.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut body = kind.to_vec();
            body.extend_from_slice(data);
            png_bytes.extend_from_slice(&body);
            png_bytes.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        };
        chunk(b"IHDR", &[0, 0, 0, 2, 0, 0, 0, 2, 8, 0, 0, 0, 0]);
        chunk(b"IDAT", &z);
        chunk(b"IEND", &[]);
        let mut sink = Collect::new(2, 2, 1);
        let err = decode(&png_bytes, 2, 2, 1, &mut sink).unwrap_err();
        assert!(err.to_string().contains("unknown row filter 9"), "{err}");
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn colour(i: u8) -> png::ColorType {
            [
                png::ColorType::Grayscale,
                png::ColorType::GrayscaleAlpha,
                png::ColorType::Rgb,
                png::ColorType::Rgba,
            ][usize::from(i % 4)]
        }

        fn filter(i: u8) -> png::Filter {
            use png::Filter as F;
            [F::NoFilter, F::Sub, F::Up, F::Avg, F::Paeth, F::Adaptive][usize::from(i % 6)]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]

            /// Any size, colour type, filter and IDAT split decodes to the encoded pixels.
            #[test]
            fn decodes_what_the_png_crate_encodes(
                w in 1u32..90, h in 1u32..50, c in 0u8..4, f in 0u8..6, idat in 1usize..5000,
            ) {
                let (bytes, pixels) = encode(w, h, colour(c), filter(f), idat);
                prop_assert!(decode_all(&bytes).unwrap() == pixels);
            }

            /// Flipped bytes and cuts anywhere after the header: an error or pixels, never a
            /// panic or a hang.
            #[test]
            fn damaged_files_never_panic(
                w in 1u32..60, h in 1u32..40, c in 0u8..4, f in 0u8..6,
                at in any::<prop::sample::Index>(), xor in 1u8..=255, cut in any::<bool>(),
            ) {
                let (mut bytes, _) = encode(w, h, colour(c), filter(f), 700);
                let header = 33; // signature + IHDR: the png crate reads those first
                let i = header + at.index(bytes.len() - header);
                if cut {
                    bytes.truncate(i);
                } else {
                    bytes[i] ^= xor;
                }
                let Ok(reader) = png::Decoder::new(std::io::Cursor::new(&bytes[..])).read_info() else {
                    return Ok(()); // refused by the png crate's header read, as in decode.rs
                };
                let info = reader.info();
                let Some(n) = fast_path_channels(info) else { return Ok(()) };
                let mut sink = Collect::new(info.width, info.height, n);
                if let Err(e) = decode(&bytes, info.width, info.height, n, &mut sink) {
                    prop_assert_eq!(e.status(), 415);
                }
            }
        }
    }
}
