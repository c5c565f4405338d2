//! libwebp settings on the pipeline's 512w output of a master, for the encoder findings in
//! docs/performance.md (not part of the product; measurements only):
//!
//! `webp_settings MASTER OUT_DIR m=4 m=2,seg=2 m=4,t=1 …`
//!
//! Each argument is one configuration (sharp's defaults — method 4, quality 80 — with the
//! listed fields changed); for each it prints `OUT_DIR/<config>.webp`, the median encode ms
//! of 15 and the bytes. SSIM of the files is computed by `bench/bench.py`'s `ssim`.
use edge::spec::VariantSpec;
use edge::transform::{render, Limits};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let master = std::fs::read(&args[1]).unwrap();
    let spec = VariantSpec::parse("w=512&fmt=png", edge::spec::Format::Png, None).unwrap();
    let png = render(&master, &spec, &Limits::default()).unwrap().bytes;
    let img = image::load_from_memory(&png).unwrap();
    let (w, h) = (img.width(), img.height());
    let alpha = img.color().has_alpha();
    let data = if alpha {
        img.to_rgba8().into_raw()
    } else {
        img.to_rgb8().into_raw()
    };
    let layout = if alpha {
        webp::PixelLayout::Rgba
    } else {
        webp::PixelLayout::Rgb
    };
    let out_dir = &args[2];
    for spec in &args[3..] {
        // spec: name:key=val,key=val
        let mut c = webp::WebPConfig::new().unwrap();
        c.lossless = 0;
        c.quality = 80.0;
        c.method = 4;
        c.thread_level = 0;
        for kv in spec.split(',') {
            let (k, v) = kv.split_once('=').unwrap();
            let f: f32 = v.parse().unwrap();
            match k {
                "q" => c.quality = f,
                "m" => c.method = f as i32,
                "t" => c.thread_level = f as i32,
                "sns" => c.sns_strength = f as i32,
                "filter" => c.filter_strength = f as i32,
                "sharp" => c.filter_sharpness = f as i32,
                "seg" => c.segments = f as i32,
                "pass" => c.pass = f as i32,
                "af" => c.alpha_filtering = f as i32,
                "aq" => c.alpha_quality = f as i32,
                "am" => c.alpha_compression = f as i32,
                "pre" => c.preprocessing = f as i32,
                "pl" => c.partition_limit = f as i32,
                "part" => c.partitions = f as i32,
                "ftype" => c.filter_type = f as i32,
                "auto" => c.autofilter = f as i32,
                "mem" => c.low_memory = f as i32,
                _ => panic!("{k}"),
            }
        }
        let mut ts = vec![];
        let mut out = vec![];
        for _ in 0..15 {
            let t = Instant::now();
            out = webp::Encoder::new(&data, layout, w, h)
                .encode_advanced(&c)
                .unwrap()
                .to_vec();
            ts.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ts.sort_by(f64::total_cmp);
        let path = format!("{out_dir}/{}.webp", spec.replace([',', '='], "_"));
        std::fs::write(&path, &out).unwrap();
        println!("{path}\t{:.2}\t{}", ts[7], out.len());
    }
}
