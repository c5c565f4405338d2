//! Sample masters for imgedge: deterministic PNGs that stand in for a model's output.
//!
//! It sits below both users of it: the generator (`generator synth`) and the local
//! emulator's seeding of an empty bucket (`edge serve`), so neither depends on the other.
//!
//! - [`synth`]: PNG bytes of master number `index` at a given size and seed.
//! - [`sample_set`]: the fixed set of masters a fresh local bucket gets.
#![forbid(unsafe_code)]

pub mod synth;

pub use synth::{file_name, synth_png};

/// Seed of the sample masters (deterministic: every first run looks the same).
pub const SAMPLE_SEED: u64 = 2025;
/// How many sample masters a fresh bucket gets; the last two are 2048², the rest 1024².
pub const SAMPLE_COUNT: u32 = 6;

/// One sample master: where it goes, which synth index it is, and its side in pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub key: String,
    pub index: u32,
    pub size: u32,
}

impl Sample {
    /// The PNG bytes (deterministic in the sample's index and size).
    pub fn png(&self) -> Vec<u8> {
        synth_png(self.index, self.size, SAMPLE_SEED)
    }
}

/// The sample masters for a date (`YYYY-MM-DD`): `outputs/<date>/image_NNN.png`.
pub fn sample_set(date: &str) -> Vec<Sample> {
    (1..=SAMPLE_COUNT)
        .map(|index| Sample {
            key: format!("outputs/{date}/image_{index:03}.png"),
            index,
            size: if index > SAMPLE_COUNT - 2 { 2048 } else { 1024 },
        })
        .collect()
}

/// Today's date in UTC as `YYYY-MM-DD`, the prefix date of uploads and samples.
pub fn today_utc() -> String {
    time::OffsetDateTime::now_utc().date().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_set_is_six_masters_under_the_date() {
        let set = sample_set("2025-02-01");
        assert_eq!(set.len(), SAMPLE_COUNT as usize);
        assert_eq!(set[0].key, "outputs/2025-02-01/image_001.png");
        assert_eq!(set[0].size, 1024);
        assert_eq!(set[5].key, "outputs/2025-02-01/image_006.png");
        assert_eq!(set[5].size, 2048);
        assert_eq!(set[4].size, 2048);
        assert_eq!(set[3].size, 1024);
    }

    #[test]
    fn today_is_an_iso_date() {
        let d = today_utc();
        assert_eq!(d.len(), 10);
        assert_eq!(&d[4..5], "-");
        assert_eq!(&d[7..8], "-");
    }
}
