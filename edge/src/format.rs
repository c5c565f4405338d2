//! `Format`: the image formats imgedge reads (masters) and writes (variants). Its own
//! module because both the key rules (a master's format from its extension) and the
//! query rules (`fmt`) need it, and neither should depend on the other for it.

/// Image formats imgedge reads (masters) or writes (variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Png,
    Jpeg,
    Webp,
    Avif,
}

impl Format {
    /// File extension of a variant in this format (`jpg` for JPEG).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpeg => "jpg",
            Format::Webp => "webp",
            Format::Avif => "avif",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Jpeg => "image/jpeg",
            Format::Webp => "image/webp",
            Format::Avif => "image/avif",
        }
    }

    /// Master formats by key extension: `png`, `jpg`, `jpeg`, `webp` (lowercase only).
    pub fn from_master_extension(ext: &str) -> Option<Format> {
        match ext {
            "png" => Some(Format::Png),
            "jpg" | "jpeg" => Some(Format::Jpeg),
            "webp" => Some(Format::Webp),
            _ => None,
        }
    }

    pub fn is_lossy(self) -> bool {
        !matches!(self, Format::Png)
    }

    /// The value of `fmt` in the canonical query (`jpeg`, not the alias `jpg`).
    pub fn query_name(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpeg => "jpeg",
            Format::Webp => "webp",
            Format::Avif => "avif",
        }
    }
}
