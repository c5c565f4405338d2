//! `generator`: synth sample masters, upload them to the bucket, invalidate CloudFront.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "generator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write deterministic sample masters image_001.png … into DIR.
    Synth {
        /// How many masters.
        #[arg(long)]
        count: u32,
        /// Width and height in pixels.
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=8192))]
        size: u32,
        /// Same seed → same bytes.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Synth {
            count,
            size,
            seed,
            out,
        } => synth(count, size, seed, &out),
    }
}

fn synth(count: u32, size: u32, seed: u64, out: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for index in 1..=count {
        let path = out.join(generator::synth::file_name(index));
        std::fs::write(&path, generator::synth::synth_png(index, size, seed))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}
