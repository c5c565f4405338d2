//! The WebP container (RIFF), just enough to read the sizes a master's bitstreams declare
//! and the lengths its chunks state, before a decoder allocates for them.
//! See <https://developers.google.com/speed/webp/docs/riff_container>.

/// One chunk: its FourCC and payload (without padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub fourcc: [u8; 4],
    pub payload: &'a [u8],
}

/// The chunks of a RIFF body as far as the data goes: a chunk that runs past the end is
/// cut short and ends the walk (a decoder reads such a file up to the same point).
fn walk(mut data: &[u8]) -> impl Iterator<Item = Chunk<'_>> {
    std::iter::from_fn(move || {
        if data.len() < 8 {
            return None;
        }
        let fourcc = [data[0], data[1], data[2], data[3]];
        let len = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
        let stop = len.saturating_add(8).min(data.len());
        let payload = &data[8..stop];
        data = &data[stop.saturating_add(len & 1).min(data.len())..];
        Some(Chunk { fourcc, payload })
    })
}

/// The RIFF body of a WebP file (after `WEBP`), up to the RIFF size or the data's end.
fn body(webp: &[u8]) -> Option<&[u8]> {
    if webp.len() < 12 || &webp[0..4] != b"RIFF" {
        return None;
    }
    let riff_len = u32::from_le_bytes([webp[4], webp[5], webp[6], webp[7]]) as usize;
    Some(&webp[12..riff_len.saturating_add(8).clamp(12, webp.len())])
}

/// The first chunk (at the top level or inside an `ANMF` frame) whose stated length runs
/// past the end of the RIFF data, and that length. A decoder may allocate what a chunk
/// states before reading it (image-webp does for `EXIF` and `ICCP`). image-webp also reads
/// chunk headers past the RIFF size (it stops `riff_size - 12` bytes after the `VP8X`
/// chunk, not at the RIFF end): bytes after the RIFF data are walked on to the file's end
/// too (fuzzing: an `ICCP` header there stating 2.7 GB in a 464-byte file).
pub fn overlong_chunk(webp: &[u8]) -> Option<([u8; 4], u32)> {
    fn scan(mut data: &[u8]) -> Option<([u8; 4], u32)> {
        while data.len() >= 8 {
            let fourcc = [data[0], data[1], data[2], data[3]];
            let len = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
            let Some(payload) = data.get(8..8 + len as usize) else {
                return Some((fourcc, len));
            };
            if &fourcc == b"ANMF" {
                if let Some(found) = scan(payload.get(16..).unwrap_or_default()) {
                    return Some(found);
                }
            }
            data = data
                .get(8 + len as usize + (len as usize & 1)..)
                .unwrap_or_default();
        }
        None
    }
    scan(body(webp)?).or_else(|| scan(&webp[12..]))
}

/// One image bitstream of a WebP file: the size its own header declares, and the size its
/// container gives it (the `VP8X` canvas for a still image, the `ANMF` frame's size for an
/// animation frame; `None` in the simple format, where the bitstream is the image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bitstream {
    pub size: (u32, u32),
    pub container: Option<(u32, u32)>,
}

/// Every image bitstream (`VP8 `, `VP8L`, at the top level and inside `ANMF` frames) of a
/// WebP file, from the headers alone, within the RIFF size. A decoder allocates for the
/// bitstream's size, and image-webp neither makes it agree with the container's before
/// decoding nor survives a mismatch in an animation frame.
pub fn bitstreams(webp: &[u8]) -> Vec<Bitstream> {
    let Some(body) = body(webp) else {
        return Vec::new();
    };
    // Width and height stored minus one, 24 bits each, at `at`.
    let size_at = |p: &[u8], at: usize| {
        let b = p.get(at..at + 6)?;
        let w = u32::from_le_bytes([b[0], b[1], b[2], 0]) + 1;
        let h = u32::from_le_bytes([b[3], b[4], b[5], 0]) + 1;
        Some((w, h))
    };
    let found = |c: Chunk<'_>, container| {
        bitstream_info(&c).ok().map(|(w, h)| Bitstream {
            size: (w, h),
            container,
        })
    };
    let mut canvas = None;
    let mut out = Vec::new();
    for chunk in walk(body) {
        match &chunk.fourcc {
            b"VP8X" => canvas = size_at(chunk.payload, 4),
            // Offset (2 × 24 bits), then the frame's size, duration and flags; its chunks.
            b"ANMF" => {
                let frame = size_at(chunk.payload, 6);
                let inner = walk(chunk.payload.get(16..).unwrap_or_default());
                out.extend(inner.filter_map(|c| found(c, frame)));
            }
            _ => out.extend(found(chunk, canvas)),
        }
    }
    out
}

/// Size a simple-format bitstream declares in its header.
fn bitstream_info(chunk: &Chunk<'_>) -> Result<(u32, u32), &'static str> {
    let p = chunk.payload;
    match &chunk.fourcc {
        b"VP8 " => {
            // Frame tag (3 bytes), start code 9d 01 2a, then 14-bit width and height.
            if p.len() < 10 || p[3..6] != [0x9d, 0x01, 0x2a] {
                return Err("bad VP8 header");
            }
            let w = u32::from(u16::from_le_bytes([p[6], p[7]]) & 0x3fff);
            let h = u32::from(u16::from_le_bytes([p[8], p[9]]) & 0x3fff);
            Ok((w, h))
        }
        b"VP8L" => {
            // Signature 0x2f, then 14 bits width-1, 14 bits height-1.
            if p.len() < 5 || p[0] != 0x2f {
                return Err("bad VP8L header");
            }
            let bits = u32::from_le_bytes([p[1], p[2], p[3], p[4]]);
            Ok(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
        }
        _ => Err("unexpected first chunk"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_chunk(out: &mut Vec<u8>, fourcc: &[u8; 4], payload: &[u8]) {
        out.extend_from_slice(fourcc);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
        if payload.len() % 2 == 1 {
            out.push(0);
        }
    }

    #[test]
    fn bitstreams_are_read_with_their_container_sizes_even_cut_short() {
        let mut body = b"WEBP".to_vec();
        write_chunk(&mut body, b"VP8X", &[0x10, 0, 0, 0, 39, 0, 0, 27, 0, 0]);
        // VP8: frame tag, start code, 14-bit sizes (upper 2 bits are scaling, ignored).
        let vp8 = [0, 0, 0, 0x9d, 0x01, 0x2a, 0xff, 0xf1, 0x53, 0x14];
        write_chunk(&mut body, b"VP8 ", &vp8);
        // An animation frame of 4×2 holding a VP8L bitstream of 3×2.
        let mut anmf = vec![0, 0, 0, 0, 0, 0, 3, 0, 0, 1, 0, 0, 100, 0, 0, 0];
        let bits: u32 = 2 | (1 << 14);
        let mut vp8l = vec![0x2f];
        vp8l.extend_from_slice(&bits.to_le_bytes());
        write_chunk(&mut anmf, b"VP8L", &vp8l);
        write_chunk(&mut body, b"ANMF", &anmf);
        let mut file = b"RIFF".to_vec();
        file.extend_from_slice(&(body.len() as u32).to_le_bytes());
        file.extend_from_slice(&body);
        let still = Bitstream {
            size: (12799, 5203),
            container: Some((40, 28)),
        };
        let frame = Bitstream {
            size: (3, 2),
            container: Some((4, 2)),
        };
        assert_eq!(bitstreams(&file), vec![still, frame]);
        // Cut inside the animation frame: what is there is still read.
        assert_eq!(bitstreams(&file[..file.len() - 8]), vec![still]);
        assert!(bitstreams(b"RIFF").is_empty());
        assert_eq!(overlong_chunk(&file), None);
        assert_eq!(
            overlong_chunk(&file[..file.len() - 8]),
            Some((*b"ANMF", 30))
        );
        let mut inner = file.clone();
        let at = inner.len() - 10; // the VP8L chunk's length, inside the ANMF frame
        inner[at..at + 4].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(overlong_chunk(&inner), Some((*b"VP8L", 1000)));

        // Trailing bytes after the RIFF data: harmless zeros, or a chunk header that image-webp
        // would read and allocate for.
        let mut zeros = file.clone();
        zeros.extend_from_slice(&[0; 12]);
        assert_eq!(overlong_chunk(&zeros), None);
        let mut trailing = file.clone();
        trailing.extend_from_slice(b"ICCP");
        trailing.extend_from_slice(&0xa276_a54cu32.to_le_bytes());
        trailing.extend_from_slice(&[0; 16]);
        assert_eq!(overlong_chunk(&trailing), Some((*b"ICCP", 0xa276_a54c)));
    }
}
