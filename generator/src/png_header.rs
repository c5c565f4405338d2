//! Width and height of a PNG from its header, without decoding pixels.

use thiserror::Error;

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Why bytes are not a PNG master we can upload.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NotPng {
    #[error("not a PNG (no PNG signature)")]
    Signature,
    #[error("truncated PNG header")]
    Truncated,
    #[error("PNG header is malformed: the first chunk is not a 13-byte IHDR")]
    NoIhdr,
    #[error("PNG header gives an invalid size {width}x{height}")]
    BadSize { width: u32, height: u32 },
}

/// (width, height) from the IHDR chunk, which the PNG spec requires to come first.
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), NotPng> {
    if bytes.len() < SIGNATURE.len() || bytes[..8] != SIGNATURE {
        return Err(NotPng::Signature);
    }
    let header = bytes.get(8..8 + 8 + 13).ok_or(NotPng::Truncated)?;
    if header[..4] != 13u32.to_be_bytes() || &header[4..8] != b"IHDR" {
        return Err(NotPng::NoIhdr);
    }
    let be = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let (width, height) = (be(8), be(12));
    // The PNG spec: both non-zero and at most 2^31 − 1.
    if width == 0 || height == 0 || width > i32::MAX as u32 || height > i32::MAX as u32 {
        return Err(NotPng::BadSize { width, height });
    }
    Ok((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(width: u32, height: u32) -> Vec<u8> {
        let mut v = SIGNATURE.to_vec();
        v.extend(13u32.to_be_bytes());
        v.extend(b"IHDR");
        v.extend(width.to_be_bytes());
        v.extend(height.to_be_bytes());
        v.extend([8, 2, 0, 0, 0]);
        v
    }

    #[test]
    fn reads_the_size_of_a_real_png() {
        let png = crate::synth::synth_png(1, 37, 0);
        assert_eq!(dimensions(&png), Ok((37, 37)));
    }

    #[test]
    fn reads_non_square_sizes_from_the_header() {
        assert_eq!(dimensions(&header(1920, 1080)), Ok((1920, 1080)));
    }

    #[test]
    fn rejects_non_pngs() {
        assert_eq!(dimensions(b""), Err(NotPng::Signature));
        assert_eq!(
            dimensions(b"hello, world, not an image"),
            Err(NotPng::Signature)
        );
        assert_eq!(
            dimensions(&[0xff, 0xd8, 0xff, 0xe0, 0, 0, 0, 0, 0]),
            Err(NotPng::Signature)
        );
    }

    #[test]
    fn rejects_truncated_and_malformed_headers() {
        assert_eq!(dimensions(&header(5, 5)[..20]), Err(NotPng::Truncated));
        let mut wrong_type = header(5, 5);
        wrong_type[12..16].copy_from_slice(b"IDAT");
        assert_eq!(dimensions(&wrong_type), Err(NotPng::NoIhdr));
        let mut wrong_len = header(5, 5);
        wrong_len[8..12].copy_from_slice(&14u32.to_be_bytes());
        assert_eq!(dimensions(&wrong_len), Err(NotPng::NoIhdr));
    }

    #[test]
    fn rejects_zero_and_oversized_dimensions() {
        assert_eq!(
            dimensions(&header(0, 5)),
            Err(NotPng::BadSize {
                width: 0,
                height: 5
            })
        );
        assert_eq!(
            dimensions(&header(5, 1 << 31)),
            Err(NotPng::BadSize {
                width: 5,
                height: 1 << 31
            })
        );
    }
}
