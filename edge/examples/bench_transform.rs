//! The imgedge side of `bench/run` (see docs/performance.md). Not a timed test: it only
//! reports numbers to the harness, which runs it interleaved with the sharp worker.
//!
//! Two modes:
//! - `bench_transform worker`: reads one JSON request per stdin line and answers one JSON
//!   line on stdout, so the process stays warm between requests. Requests:
//!   - `{"op":"render","master":PATH,"w":512,"fmt":"webp","q":80,"iters":N,"out":PATH}`:
//!     `transform::render` N times on the master's bytes (read once, kept in memory);
//!     answers wall ms and the per-stage split (`transform::Timings`) of every iteration,
//!     and writes the last output to `out`.
//!   - `{"op":"floor",...same fields}`: the floor of that task, each part alone — bare zlib
//!     inflate of the master's IDAT stream (fdeflate, the inflater the `png` crate uses),
//!     the full PNG decode, and the encode of an already resized output-sized image with
//!     the encoder settings the pipeline uses.
//! - `bench_transform once MASTER W FMT Q OUT`: one render in a fresh process, for the
//!   one-shot (process start included) time and peak RSS.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use edge::spec::{Format, Rgb, VariantSpec};
use edge::transform::pixels::Pixels;
use edge::transform::{encode, render, Limits};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
struct Request {
    op: String,
    master: String,
    w: u32,
    fmt: String,
    #[serde(default = "default_quality")]
    q: u8,
    #[serde(default = "one")]
    iters: usize,
    #[serde(default)]
    out: Option<String>,
}

fn default_quality() -> u8 {
    80
}
fn one() -> usize {
    1
}

#[derive(Debug, Default, Serialize)]
struct Reply {
    ms: Vec<f64>,
    decode_ms: Vec<f64>,
    resize_ms: Vec<f64>,
    encode_ms: Vec<f64>,
    inflate_ms: Vec<f64>,
    bytes: usize,
    width: u32,
    height: u32,
    error: Option<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn parse_format(s: &str) -> Result<Format> {
    Ok(match s {
        "webp" => Format::Webp,
        "jpeg" | "jpg" => Format::Jpeg,
        "png" => Format::Png,
        "avif" => Format::Avif,
        other => bail!("unknown format {other}"),
    })
}

/// A one-sided width request, as `?w=W&fmt=F&q=Q` parses: aspect kept, never upscaled.
fn spec_for(w: u32, fmt: &str, q: u8) -> Result<VariantSpec> {
    let format = parse_format(fmt)?;
    Ok(VariantSpec {
        width: Some(w),
        height: None,
        fit: None,
        format,
        quality: q,
        background: Rgb {
            r: 255,
            g: 255,
            b: 255,
        },
        master_format: Format::Png,
    })
}

fn run_render(req: &Request, master: &[u8]) -> Result<Reply> {
    let spec = spec_for(req.w, &req.fmt, req.q)?;
    let limits = Limits::default();
    let mut reply = Reply::default();
    let mut last = None;
    for _ in 0..req.iters {
        let t = Instant::now();
        let r = render(master, &spec, &limits).map_err(|e| anyhow::anyhow!("render: {e}"))?;
        reply.ms.push(ms(t.elapsed()));
        reply.decode_ms.push(ms(r.timings.decode));
        reply.resize_ms.push(ms(r.timings.resize));
        reply.encode_ms.push(ms(r.timings.encode));
        last = Some(r);
    }
    if let Some(r) = last {
        reply.bytes = r.bytes.len();
        reply.width = r.width;
        reply.height = r.height;
        if let Some(out) = &req.out {
            std::fs::write(out, &r.bytes).with_context(|| format!("writing {out}"))?;
        }
    }
    Ok(reply)
}

/// The concatenated IDAT payload (a zlib stream) of a PNG.
fn idat_stream(png: &[u8]) -> Result<Vec<u8>> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !png.starts_with(SIGNATURE) {
        bail!("not a PNG");
    }
    let mut at = SIGNATURE.len();
    let mut idat = Vec::new();
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into()?) as usize;
        let kind = &png[at + 4..at + 8];
        let data = png
            .get(at + 8..at + 8 + len)
            .context("truncated PNG chunk")?;
        if kind == b"IDAT" {
            idat.extend_from_slice(data);
        }
        at += 12 + len;
    }
    Ok(idat)
}

fn run_floor(req: &Request, master: &[u8]) -> Result<Reply> {
    let fmt = parse_format(&req.fmt)?;
    let idat = idat_stream(master)?;
    let decoded = image::load_from_memory_with_format(master, image::ImageFormat::Png)?;
    let h = (u64::from(decoded.height()) * u64::from(req.w) + u64::from(decoded.width()) / 2)
        / u64::from(decoded.width());
    // Untimed: only the encoder's input needs to be output-sized.
    let small = decoded.resize_exact(
        req.w,
        h.max(1) as u32,
        image::imageops::FilterType::Lanczos3,
    );
    let small = if decoded.color().has_alpha() {
        image::DynamicImage::ImageRgba8(small.to_rgba8())
    } else {
        image::DynamicImage::ImageRgb8(small.to_rgb8())
    };
    // Encoded by the pipeline's own encoder stage (`transform::encode`, same settings).
    let channels = small.color().channel_count();
    let small_px = Pixels::new(
        small.width(),
        small.height(),
        channels,
        small.as_bytes().to_vec(),
    );
    let mut reply = Reply {
        width: small.width(),
        height: small.height(),
        ..Reply::default()
    };
    for _ in 0..req.iters {
        let t = Instant::now();
        let raw =
            fdeflate::decompress_to_vec(&idat).map_err(|e| anyhow::anyhow!("inflate: {e:?}"))?;
        reply.inflate_ms.push(ms(t.elapsed()));
        std::hint::black_box(raw);

        let t = Instant::now();
        let img = image::load_from_memory_with_format(master, image::ImageFormat::Png)?;
        reply.decode_ms.push(ms(t.elapsed()));
        std::hint::black_box(img);

        let t = Instant::now();
        reply.bytes = encode(&small_px, fmt, req.q)?.len();
        reply.encode_ms.push(ms(t.elapsed()));
    }
    Ok(reply)
}

fn worker() -> Result<()> {
    let mut masters: std::collections::HashMap<String, Vec<u8>> = Default::default();
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let req: Request = serde_json::from_str(&line).context("bad request line")?;
        let master = match masters.get(&req.master) {
            Some(m) => m,
            None => {
                let bytes = std::fs::read(&req.master)
                    .with_context(|| format!("reading {}", req.master))?;
                masters.entry(req.master.clone()).or_insert(bytes)
            }
        };
        let reply = match req.op.as_str() {
            "render" => run_render(&req, master),
            "floor" => run_floor(&req, master),
            other => Err(anyhow::anyhow!("unknown op {other}")),
        }
        .unwrap_or_else(|e| Reply {
            error: Some(format!("{e:#}")),
            ..Reply::default()
        });
        let mut out = stdout.lock();
        serde_json::to_writer(&mut out, &reply)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    Ok(())
}

fn once(args: &[String]) -> Result<()> {
    let [master, w, fmt, q, out] = args else {
        bail!("usage: bench_transform once MASTER W FMT Q OUT");
    };
    let spec = spec_for(w.parse()?, fmt, q.parse()?)?;
    let bytes = std::fs::read(master).with_context(|| format!("reading {master}"))?;
    let r = render(&bytes, &spec, &Limits::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::write(out, &r.bytes).with_context(|| format!("writing {out}"))?;
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("worker") => worker(),
        Some("once") => once(&args[1..]),
        _ => bail!("usage: bench_transform worker | once MASTER W FMT Q OUT"),
    }
}
