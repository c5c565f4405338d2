//! Where decoded rows go. A decoder hands each 8-bit interleaved row, top to bottom, to a
//! [`RowSink`]: [`Collect`] keeps the whole image; [`BoxShrink`] averages `kx`×`ky` blocks
//! as the rows arrive (premultiplying rows that have transparency), so a large master is
//! reduced without ever being held whole. Both decoders (the streaming PNG one and the
//! full-image ones) feed the same sinks: one box pre-shrink, one rounding rule.

use fast_image_resize::images::Image;
use fast_image_resize::{MulDiv, PixelType};

use super::pixels::Pixels;
use crate::error::{Error, Result};

/// Receives the rows of an image, top to bottom, each `width × channels` bytes.
pub trait RowSink {
    fn push_row(&mut self, row: &[u8]) -> Result<()>;
}

/// Keeps every row: the full image.
#[derive(Debug)]
pub struct Collect {
    width: u32,
    height: u32,
    channels: u8,
    data: Vec<u8>,
}

impl Collect {
    pub fn new(width: u32, height: u32, channels: u8) -> Collect {
        let len = width as usize * height as usize * channels as usize;
        Collect {
            width,
            height,
            channels,
            data: Vec::with_capacity(len),
        }
    }

    pub fn finish(self) -> Result<Pixels> {
        let len = self.width as usize * self.height as usize * self.channels as usize;
        if self.data.len() != len {
            return Err(Error::internal(
                "internal error: the decoder gave too few rows",
            ));
        }
        Ok(Pixels::new(
            self.width,
            self.height,
            self.channels,
            self.data,
        ))
    }
}

impl RowSink for Collect {
    fn push_row(&mut self, row: &[u8]) -> Result<()> {
        self.data.extend_from_slice(row);
        Ok(())
    }
}

/// The box pre-shrink, fed row by row. Partial blocks at the right and bottom edges
/// average the pixels they have. Rows with any alpha below 255 are premultiplied before
/// they are summed (so transparent colour does not bleed); an image whose alpha is 255
/// everywhere loses its alpha channel at the end, exactly as `Pixels::drop_opaque_alpha`
/// would have done before the shrink.
#[derive(Debug)]
pub struct BoxShrink {
    width: usize,
    height: usize,
    channels: usize,
    kx: usize,
    ky: usize,
    /// Per sample of a row: the sum over the rows of the current block row.
    columns: Columns,
    rows_in_block: usize,
    rows_seen: usize,
    out: Vec<u8>,
    /// A row with some alpha below 255 was seen: the output is premultiplied.
    transparent: bool,
    scratch: Vec<u8>,
}

/// Column sums over the rows of a block row: u16 while a block is at most 257 rows tall
/// (257 × 255 < 2¹⁶), so the per-row add runs on twice the lanes; u32 beyond.
#[derive(Debug)]
enum Columns {
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

impl Columns {
    fn new(len: usize, ky: usize) -> Columns {
        if ky <= 257 {
            Columns::Narrow(vec![0; len])
        } else {
            Columns::Wide(vec![0; len])
        }
    }

    /// Add a row: a straight, vectorised add per sample.
    fn add(&mut self, row: &[u8]) {
        match self {
            Columns::Narrow(c) => c.iter_mut().zip(row).for_each(|(s, &v)| *s += u16::from(v)),
            Columns::Wide(c) => c.iter_mut().zip(row).for_each(|(s, &v)| *s += u32::from(v)),
        }
    }

    fn clear(&mut self) {
        match self {
            Columns::Narrow(c) => c.fill(0),
            Columns::Wide(c) => c.fill(0),
        }
    }
}

/// Decoded pixels as the pipeline goes on with them: whole, or box-shrunk by a
/// [`BoxShrink`] on the way.
#[derive(Debug)]
pub struct Decoded {
    pub pixels: Pixels,
    /// Colour is premultiplied by alpha (the caller divides after resampling).
    pub premultiplied: bool,
}

impl BoxShrink {
    pub fn new(width: u32, height: u32, channels: u8, kx: u32, ky: u32) -> BoxShrink {
        let (w, h, n) = (width as usize, height as usize, channels as usize);
        let (kx, ky) = (kx.max(1) as usize, ky.max(1) as usize);
        BoxShrink {
            width: w,
            height: h,
            channels: n,
            kx,
            ky,
            columns: Columns::new(w * n, ky),
            rows_in_block: 0,
            rows_seen: 0,
            out: Vec::with_capacity(w.div_ceil(kx) * h.div_ceil(ky) * n),
            transparent: false,
            scratch: Vec::new(),
        }
    }

    fn has_alpha(&self) -> bool {
        self.channels == 2 || self.channels == 4
    }

    pub fn finish(self) -> Result<Decoded> {
        if self.rows_seen != self.height {
            return Err(Error::internal(
                "internal error: the decoder gave too few rows",
            ));
        }
        let (ow, oh) = (self.width.div_ceil(self.kx), self.height.div_ceil(self.ky));
        let alpha = self.has_alpha();
        let mut pixels = Pixels::new(ow as u32, oh as u32, self.channels as u8, self.out);
        let premultiplied = alpha && self.transparent;
        if alpha && !self.transparent {
            pixels.drop_opaque_alpha();
        }
        Ok(Decoded {
            pixels,
            premultiplied,
        })
    }

    /// A block row is complete: sum each block's columns and round to the mean.
    fn emit_block_row(&mut self) {
        match self.channels {
            1 => self.emit_blocks::<1>(),
            2 => self.emit_blocks::<2>(),
            3 => self.emit_blocks::<3>(),
            _ => self.emit_blocks::<4>(),
        }
        self.columns.clear();
        self.rows_in_block = 0;
    }

    fn emit_blocks<const N: usize>(&mut self) {
        match &self.columns {
            Columns::Narrow(c) => {
                Self::emit_sums::<N, u16>(c, self.kx, self.width, self.rows_in_block, &mut self.out)
            }
            Columns::Wide(c) => {
                Self::emit_sums::<N, u32>(c, self.kx, self.width, self.rows_in_block, &mut self.out)
            }
        }
    }

    fn emit_sums<const N: usize, T: Copy + Into<u32>>(
        columns: &[T],
        kx: usize,
        w: usize,
        rows: usize,
        out: &mut Vec<u8>,
    ) {
        for (ox, block) in columns.chunks(kx * N).enumerate() {
            let mut sum = [0u32; N];
            for px in block.chunks_exact(N) {
                for c in 0..N {
                    sum[c] += px[c].into();
                }
            }
            let cols = ((ox + 1) * kx).min(w) - ox * kx;
            let count = (cols * rows) as u32;
            for s in sum {
                out.push(((s + count / 2) / count) as u8);
            }
        }
    }

    fn premultiply_row(&mut self, row: &[u8]) -> Result<()> {
        self.scratch.clear();
        self.scratch.extend_from_slice(row);
        let pt = if self.channels == 2 {
            PixelType::U8x2
        } else {
            PixelType::U8x4
        };
        let internal = |e: &dyn std::fmt::Display| {
            tracing::error!("transform: premultiplying a row: {e}");
            Error::internal("internal error while premultiplying alpha")
        };
        let mut view = Image::from_slice_u8(self.width as u32, 1, &mut self.scratch, pt)
            .map_err(|e| internal(&e))?;
        MulDiv::default()
            .multiply_alpha_inplace(&mut view)
            .map_err(|e| internal(&e))
    }
}

impl RowSink for BoxShrink {
    fn push_row(&mut self, row: &[u8]) -> Result<()> {
        let n = self.channels;
        debug_assert_eq!(row.len(), self.width * n);
        let opaque = !self.has_alpha() || row.chunks_exact(n).all(|p| p[n - 1] == 255);
        let row = if opaque {
            row
        } else {
            self.transparent = true;
            self.premultiply_row(row)?;
            &self.scratch[..]
        };
        self.columns.add(row);
        self.rows_in_block += 1;
        self.rows_seen += 1;
        if self.rows_in_block == self.ky || self.rows_seen == self.height {
            self.emit_block_row();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shrink(px: &Pixels, kx: u32, ky: u32) -> Decoded {
        let mut sink = BoxShrink::new(px.width, px.height, px.channels, kx, ky);
        for row in px
            .data
            .chunks_exact(px.width as usize * px.channels as usize)
        {
            sink.push_row(row).unwrap();
        }
        sink.finish().unwrap()
    }

    #[test]
    fn box_shrink_averages_blocks_including_partial_edges() {
        // 5×3 grey, blocks of 2×2: output 3×2; the edge blocks average what they cover.
        let data: Vec<u8> = (0..15).map(|v| v * 10).collect();
        let out = shrink(&Pixels::new(5, 3, 1, data), 2, 2);
        assert_eq!(out.pixels.size(), (3, 2));
        // Block (0,0): 0,10,50,60 → 30. Block (2,0): 40,90 → 65. Block (0,1): 100,110 → 105.
        // Block (2,1): 140 alone.
        assert_eq!(out.pixels.data, vec![30, 50, 65, 105, 125, 140]);
        assert!(!out.premultiplied);
    }

    #[test]
    fn tall_blocks_sum_wide_and_short_blocks_narrow_to_the_same_means() {
        // 3×600 grey of 255s and 254s: blocks 300 rows tall overflow u16 sums (76,500).
        let data: Vec<u8> = (0..1800)
            .map(|i| if i % 2 == 0 { 255 } else { 254 })
            .collect();
        let px = Pixels::new(3, 600, 1, data);
        let tall = shrink(&px, 3, 300);
        assert!(matches!(
            BoxShrink::new(3, 600, 1, 3, 300).columns,
            Columns::Wide(_)
        ));
        assert_eq!(tall.pixels.data, vec![255, 255]); // mean 254.5 rounds up
        let short = shrink(&px, 3, 200);
        assert!(matches!(
            BoxShrink::new(3, 600, 1, 3, 200).columns,
            Columns::Narrow(_)
        ));
        assert_eq!(short.pixels.data, vec![255, 255, 255]);
        // A 255-only block of 257 rows is the narrow limit: 257 × 255 = 65,535.
        let full = shrink(&Pixels::new(1, 257, 1, vec![255; 257]), 1, 257);
        assert_eq!(full.pixels.data, vec![255]);
    }

    #[test]
    fn opaque_alpha_is_dropped_and_transparent_rows_are_premultiplied() {
        // 2×2 RGBA, all opaque: averaged RGB, no alpha left.
        let opaque = Pixels::new(
            2,
            2,
            4,
            [10, 20, 30, 255]
                .repeat(3)
                .into_iter()
                .chain([30, 40, 50, 255])
                .collect(),
        );
        let out = shrink(&opaque, 2, 2);
        assert_eq!(
            (out.pixels.channels, out.pixels.data.clone()),
            (3, vec![15, 25, 35])
        );
        assert!(!out.premultiplied);
        // One transparent pixel: its colour must not count (premultiplied sum), alpha kept.
        let mixed = Pixels::new(2, 1, 4, vec![200, 200, 200, 255, 255, 0, 0, 0]);
        let out = shrink(&mixed, 2, 1);
        assert_eq!(out.pixels.channels, 4);
        assert!(out.premultiplied);
        // Premultiplied: (200 + 0) / 2 = 100 colour, (255 + 0) / 2 → 128 alpha.
        assert_eq!(out.pixels.data, vec![100, 100, 100, 128]);
        // Nearly opaque (254) must keep alpha even when the average rounds to 255.
        let nearly = Pixels::new(
            4,
            1,
            4,
            [9, 9, 9, 255]
                .repeat(3)
                .into_iter()
                .chain([9, 9, 9, 254])
                .collect(),
        );
        let out = shrink(&nearly, 4, 1);
        assert_eq!(out.pixels.channels, 4);
        assert!(out.premultiplied);
    }
}
