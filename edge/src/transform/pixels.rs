//! An 8-bit interleaved pixel buffer (grey, grey+alpha, RGB, RGBA) and the pixel steps of
//! the pipeline: drop opaque alpha, premultiply, Lanczos3 resample,
//! orient, flatten, pad. Each step consumes or edits one buffer, so the pipeline never
//! holds more than one full-size copy of the master.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, MulDiv, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, ImageBuffer};

use super::plan::Rect;
use crate::error::{Error, Result};
use crate::spec::Rgb;

/// Interleaved 8-bit samples, `channels` per pixel: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: Vec<u8>,
}

impl Pixels {
    pub fn new(width: u32, height: u32, channels: u8, data: Vec<u8>) -> Pixels {
        debug_assert_eq!(
            data.len(),
            width as usize * height as usize * channels as usize
        );
        Pixels {
            width,
            height,
            channels,
            data,
        }
    }

    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    pub fn has_alpha(&self) -> bool {
        self.channels == 2 || self.channels == 4
    }

    fn pixel_type(&self) -> PixelType {
        match self.channels {
            1 => PixelType::U8,
            2 => PixelType::U8x2,
            3 => PixelType::U8x3,
            _ => PixelType::U8x4,
        }
    }

    /// Remove an alpha channel that is 255 everywhere, in place (no new buffer): resizing
    /// three channels without premultiplication is ~4× cheaper than four with it.
    pub fn drop_opaque_alpha(&mut self) {
        if !self.has_alpha() {
            return;
        }
        let n = self.channels as usize;
        if !self.data.chunks_exact(n).all(|p| p[n - 1] == 255) {
            return;
        }
        // Compact towards the front: the write position never passes the read position.
        let colour = n - 1;
        for i in 0..self.data.len() / n {
            for c in 0..colour {
                self.data[i * colour + c] = self.data[i * n + c];
            }
        }
        // Truncate only: shrinking the allocation could copy it.
        self.data.truncate(self.data.len() / n * colour);
        self.channels -= 1;
    }

    /// Multiply colour by alpha in place, so resampling does not bleed the colour of
    /// transparent pixels into visible ones.
    pub fn premultiply(&mut self) -> Result<()> {
        let (w, h, pt) = (self.width, self.height, self.pixel_type());
        let mut view = Image::from_slice_u8(w, h, &mut self.data, pt)
            .map_err(|e| Error::internal_while("premultiplying alpha", e))?;
        MulDiv::default()
            .multiply_alpha_inplace(&mut view)
            .map_err(|e| Error::internal_while("premultiplying alpha", e))
    }

    pub fn unpremultiply(&mut self) -> Result<()> {
        let (w, h, pt) = (self.width, self.height, self.pixel_type());
        let mut view = Image::from_slice_u8(w, h, &mut self.data, pt)
            .map_err(|e| Error::internal_while("dividing alpha", e))?;
        MulDiv::default()
            .divide_alpha_inplace(&mut view)
            .map_err(|e| Error::internal_while("dividing alpha", e))
    }

    /// Lanczos3 resample of `crop` to `to`. Alpha must already be premultiplied.
    pub fn resample(&self, crop: Rect, to: (u32, u32)) -> Result<Pixels> {
        let pt = self.pixel_type();
        let src = ImageRef::new(self.width, self.height, &self.data, pt)
            .map_err(|e| Error::internal_while("preparing the resize", e))?;
        let mut dst = Image::new(to.0, to.1, pt);
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
            .crop(crop.x, crop.y, crop.w, crop.h)
            .use_alpha(false);
        Resizer::new()
            .resize(&src, &mut dst, &options)
            .map_err(|e| Error::internal_while("resizing", e))?;
        Ok(Pixels::new(to.0, to.1, self.channels, dst.into_vec()))
    }

    /// Apply an EXIF orientation (image's implementation, on the already small output).
    pub fn orient(self, o: Orientation) -> Result<Pixels> {
        if o == Orientation::NoTransforms {
            return Ok(self);
        }
        let (w, h, n) = (self.width, self.height, self.channels);
        let bad = || Error::internal("internal error while orienting the image");
        let mut img = match n {
            1 => DynamicImage::ImageLuma8(ImageBuffer::from_raw(w, h, self.data).ok_or_else(bad)?),
            2 => DynamicImage::ImageLumaA8(ImageBuffer::from_raw(w, h, self.data).ok_or_else(bad)?),
            3 => DynamicImage::ImageRgb8(ImageBuffer::from_raw(w, h, self.data).ok_or_else(bad)?),
            _ => DynamicImage::ImageRgba8(ImageBuffer::from_raw(w, h, self.data).ok_or_else(bad)?),
        };
        img.apply_orientation(o);
        let (w, h) = (img.width(), img.height());
        Ok(Pixels::new(w, h, n, img.into_bytes()))
    }

    /// Grey → RGB, grey+alpha → RGBA (for WebP, and for colour padding or flattening).
    pub fn into_rgb_family(self) -> Pixels {
        if self.channels >= 3 {
            return self;
        }
        let n = self.channels as usize;
        let mut data = Vec::with_capacity(self.data.len() / n * (n + 2));
        for px in self.data.chunks_exact(n) {
            data.extend_from_slice(&[px[0], px[0], px[0]]);
            if n == 2 {
                data.push(px[1]);
            }
        }
        Pixels::new(self.width, self.height, self.channels + 2, data)
    }

    /// Composite onto an opaque background and drop alpha (JPEG has none).
    pub fn flatten(self, bg: Rgb) -> Pixels {
        if !self.has_alpha() {
            return self;
        }
        let grey_bg = bg.r == bg.g && bg.g == bg.b;
        let px = if self.channels == 2 && !grey_bg {
            self.into_rgb_family()
        } else {
            self
        };
        let n = px.channels as usize;
        let bg = [bg.r, bg.g, bg.b];
        let mut data = Vec::with_capacity(px.data.len() / n * (n - 1));
        for p in px.data.chunks_exact(n) {
            let a = u32::from(p[n - 1]);
            for c in 0..n - 1 {
                let v = u32::from(p[c]) * a + u32::from(bg[c]) * (255 - a);
                data.push(((v + 127) / 255) as u8);
            }
        }
        Pixels::new(px.width, px.height, px.channels - 1, data)
    }

    /// Place the image at `offset` on an opaque `bg` canvas of `canvas` size.
    pub fn pad(self, canvas: (u32, u32), offset: (u32, u32), bg: Rgb) -> Pixels {
        if canvas == self.size() {
            return self;
        }
        let grey_bg = bg.r == bg.g && bg.g == bg.b;
        let px = if self.channels < 3 && !grey_bg {
            self.into_rgb_family()
        } else {
            self
        };
        let n = px.channels as usize;
        let fill: Vec<u8> = match n {
            1 => vec![bg.r],
            2 => vec![bg.r, 255],
            3 => vec![bg.r, bg.g, bg.b],
            _ => vec![bg.r, bg.g, bg.b, 255],
        };
        let (cw, ch) = (canvas.0 as usize, canvas.1 as usize);
        let mut data = fill.repeat(cw * ch);
        let row = px.width as usize * n;
        for y in 0..px.height as usize {
            let dst = ((y + offset.1 as usize) * cw + offset.0 as usize) * n;
            data[dst..dst + row].copy_from_slice(&px.data[y * row..(y + 1) * row]);
        }
        Pixels::new(canvas.0, canvas.1, px.channels, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_alpha_is_dropped_in_place_and_real_alpha_kept() {
        let mut p = Pixels::new(2, 1, 4, vec![1, 2, 3, 255, 4, 5, 6, 255]);
        p.drop_opaque_alpha();
        assert_eq!((p.channels, p.data), (3, vec![1, 2, 3, 4, 5, 6]));
        let mut p = Pixels::new(2, 1, 2, vec![7, 255, 9, 255]);
        p.drop_opaque_alpha();
        assert_eq!((p.channels, p.data), (1, vec![7, 9]));
        let mut p = Pixels::new(2, 1, 4, vec![1, 2, 3, 255, 4, 5, 6, 254]);
        p.drop_opaque_alpha();
        assert_eq!(p.channels, 4);
    }

    #[test]
    fn flatten_composites_onto_the_background() {
        let bg = Rgb { r: 255, g: 0, b: 0 };
        let p = Pixels::new(3, 1, 4, vec![0, 0, 255, 255, 0, 0, 255, 0, 0, 0, 255, 128]);
        let f = p.flatten(bg);
        assert_eq!(f.channels, 3);
        assert_eq!(f.data, vec![0, 0, 255, 255, 0, 0, 127, 0, 128]);
        // Grey+alpha on a colour background becomes RGB.
        let f = Pixels::new(1, 1, 2, vec![0, 0]).flatten(bg);
        assert_eq!((f.channels, f.data), (3, vec![255, 0, 0]));
        // On a grey background it stays grey.
        let f = Pixels::new(1, 1, 2, vec![0, 0]).flatten(Rgb { r: 9, g: 9, b: 9 });
        assert_eq!((f.channels, f.data), (1, vec![9]));
    }

    #[test]
    fn pad_centres_on_an_opaque_background() {
        let bg = Rgb { r: 1, g: 2, b: 3 };
        let p = Pixels::new(1, 1, 4, vec![9, 9, 9, 0]).pad((3, 1), (1, 0), bg);
        assert_eq!(p.data, vec![1, 2, 3, 255, 9, 9, 9, 0, 1, 2, 3, 255]);
        let p = Pixels::new(1, 1, 1, vec![9]).pad((1, 2), (0, 1), bg);
        assert_eq!((p.channels, p.data), (3, vec![1, 2, 3, 9, 9, 9]));
    }
}
