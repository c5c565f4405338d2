//! Shared by the `edge serve` end-to-end tests: the real binary on a free port over a
//! temporary store directory, HTTP helpers (reqwest, and raw TCP for request targets a
//! client library would normalise), and masters made in the test.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use image::{ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use imgedge_tests::{announced_port, bin_path, wait_for_port};

/// A running `edge serve`; killed on drop.
pub struct EdgeServer {
    child: Child,
    pub port: u16,
    pub store: PathBuf,
    client: reqwest::blocking::Client,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn x_cache(&self) -> &str {
        self.header("x-cache").unwrap_or("")
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    /// The body's pixels; AVIF through Pillow (the image crate here has no AVIF decoder).
    pub fn image(&self) -> image::DynamicImage {
        if self.body.get(4..12) == Some(b"ftypavif") {
            return imgedge_tests::pillow::decode(&self.body).image;
        }
        image::load_from_memory(&self.body).expect("body decodes as an image")
    }
    pub fn dimensions(&self) -> (u32, u32) {
        let img = self.image();
        (img.width(), img.height())
    }
}

impl EdgeServer {
    /// `edge serve` over `store` without seeding, plus `args`.
    pub fn start(store: &Path, args: &[&str]) -> EdgeServer {
        Self::start_with(store, args, &[], false)
    }

    pub fn start_with(
        store: &Path,
        args: &[&str],
        env: &[(&str, String)],
        seed: bool,
    ) -> EdgeServer {
        Self::spawn(store.as_os_str(), store, args, env, seed)
    }

    /// `edge serve --store s3://…` (with the AWS environment in `env`).
    pub fn start_s3(store: &str, args: &[&str], env: &[(&str, String)]) -> EdgeServer {
        Self::spawn(store.as_ref(), Path::new("/nonexistent"), args, env, false)
    }

    /// Like [`EdgeServer::start_with`], with stderr (the request log) written to `log`.
    pub fn start_logging(
        store: &Path,
        args: &[&str],
        env: &[(&str, String)],
        log: &Path,
    ) -> EdgeServer {
        Self::spawn_logging(store.as_os_str(), store, args, env, false, Some(log))
    }

    fn spawn(
        store_arg: &std::ffi::OsStr,
        store: &Path,
        args: &[&str],
        env: &[(&str, String)],
        seed: bool,
    ) -> EdgeServer {
        Self::spawn_logging(store_arg, store, args, env, seed, None)
    }

    fn spawn_logging(
        store_arg: &std::ffi::OsStr,
        store: &Path,
        args: &[&str],
        env: &[(&str, String)],
        seed: bool,
        log: Option<&Path>,
    ) -> EdgeServer {
        let mut command = Command::new(bin_path("edge"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--store"])
            .arg(store_arg)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(match log {
                Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
                None => Stdio::null(),
            });
        if !seed {
            command.arg("--no-seed");
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("edge serve starts");
        // It prints "imgedge edge serving … on http://127.0.0.1:PORT/" once it listens.
        let stdout = child.stdout.take().unwrap();
        let port = announced_port(&mut child, stdout, " on http://127.0.0.1:", "edge serve");
        let server = EdgeServer {
            child,
            port,
            store: store.to_path_buf(),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        };
        assert!(
            wait_for_port(
                SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(120)
            ),
            "edge serve did not start on {port}"
        );
        server
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.port)
    }

    pub fn get(&self, path_and_query: &str) -> Reply {
        self.request(reqwest::Method::GET, path_and_query, &[])
    }

    pub fn get_with(&self, path_and_query: &str, headers: &[(&str, &str)]) -> Reply {
        self.request(reqwest::Method::GET, path_and_query, headers)
    }

    pub fn request(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path_and_query));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().expect("request answered");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().expect("body read").to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// GET with the request target sent byte for byte (no client-side normalisation).
    pub fn raw_get(&self, target: &str) -> Reply {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP response to {target:?}: {raw:?}"));
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let body = raw[split + 4..].to_vec();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        for line in lines {
            if let Some((k, v)) = line.split_once(':') {
                headers.append(
                    reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                    v.trim().parse().unwrap(),
                );
            }
        }
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Every variant object in the store (files under `_variants/` but failure markers).
    pub fn variant_objects(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        walk(&self.store.join("_variants"), &mut found);
        found.retain(|p| !is_failure_marker(p));
        found.sort();
        found
    }

    /// The remembered 415/422s (`_variants/v2/<master>/error.json`).
    pub fn failure_markers(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        walk(&self.store.join("_variants"), &mut found);
        found.retain(|p| is_failure_marker(p));
        found.sort();
        found
    }
}

impl Drop for EdgeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_failure_marker(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n == edge::key::FAILURE_MARKER_NAME)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, found);
        } else {
            found.push(path);
        }
    }
}

/// A smooth RGB gradient (distinct corners) encoded as `format`.
pub fn gradient(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            (x * 255 / width.max(1)) as u8,
            (y * 255 / height.max(1)) as u8,
            128,
        ])
    });
    encode(image::DynamicImage::ImageRgb8(img), format)
}

/// A single-colour image.
pub fn solid(width: u32, height: u32, rgb: [u8; 3], format: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_pixel(width, height, Rgb(rgb));
    encode(image::DynamicImage::ImageRgb8(img), format)
}

/// An RGBA PNG with a transparent left half.
pub fn half_transparent_png(width: u32, height: u32) -> Vec<u8> {
    let img = RgbaImage::from_fn(width, height, |x, _| {
        if x < width / 2 {
            Rgba([0, 0, 0, 0])
        } else {
            Rgba([20, 200, 20, 255])
        }
    });
    encode(image::DynamicImage::ImageRgba8(img), ImageFormat::Png)
}

pub fn encode(img: image::DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A PNG whose header claims `width`×`height` but carries almost no data: a
/// decompression bomb as far as a naive decoder is concerned.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut png, b"IHDR", &ihdr);
    // A tiny zlib stream (stored, empty): the "image data".
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 1],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

pub fn put(store: &Path, key: &str, bytes: &[u8]) {
    let path = store.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Assert a JSON error reply: status, code, Content-Type and Cache-Control of DESIGN §3.
pub fn assert_error(reply: &Reply, status: u16, code: &str, context: &str) -> serde_json::Value {
    assert_eq!(
        reply.status,
        status,
        "{context}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{context}"
    );
    let expected_cache = if status >= 500 {
        "no-store"
    } else {
        "public, max-age=60"
    };
    assert_eq!(
        reply.header("cache-control"),
        Some(expected_cache),
        "{context}"
    );
    let body = reply.json();
    assert_eq!(body["status"], status, "{context}: {body}");
    assert_eq!(body["error"], code, "{context}: {body}");
    let message = body["message"].as_str().unwrap_or("");
    assert!(!message.is_empty(), "{context}: empty message: {body}");
    body
}

pub fn is_png(b: &[u8]) -> bool {
    b.starts_with(b"\x89PNG\r\n\x1a\n")
}
pub fn is_jpeg(b: &[u8]) -> bool {
    b.starts_with(&[0xff, 0xd8, 0xff])
}
pub fn is_avif(b: &[u8]) -> bool {
    b.get(4..12) == Some(b"ftypavif")
}
pub fn is_webp(b: &[u8]) -> bool {
    b.len() > 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP"
}

/// moto routes a request to a service by the credential scope of its Authorization header
/// (it checks no signature); without one, reads of objects the SDK wrote are refused.
pub const MOTO_AUTH: &str = "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

/// A plain S3 REST call straight to the server (`endpoint`, no proxy in between).
pub fn s3_call(method: reqwest::Method, url: &str, body: Option<(&[u8], &str)>) -> Reply {
    let client = reqwest::blocking::Client::new();
    let mut request = client
        .request(method, url)
        .header("authorization", MOTO_AUTH);
    if let Some((bytes, content_type)) = body {
        request = request
            .header("content-type", content_type)
            .body(bytes.to_vec());
    }
    let response = request.send().expect("the S3 server answers");
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().unwrap().to_vec(),
    }
}

/// Create `bucket` and put masters in it, straight at the S3 server; returns their ETags.
pub fn s3_seed(endpoint: &str, bucket: &str, masters: &[(&str, &[u8])]) -> Vec<String> {
    let created = s3_call(reqwest::Method::PUT, &format!("{endpoint}/{bucket}"), None);
    assert!(created.status < 300, "create bucket: {}", created.status);
    masters
        .iter()
        .map(|(key, bytes)| {
            let put = s3_call(
                reqwest::Method::PUT,
                &format!("{endpoint}/{bucket}/{key}"),
                Some((bytes, "image/png")),
            );
            assert!(put.status < 300, "put {key}: {}", put.status);
            put.header("etag").unwrap().to_string()
        })
        .collect()
}

/// Keys under `prefix`, listed at the S3 server.
pub fn s3_keys(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    let list = s3_call(
        reqwest::Method::GET,
        &format!("{endpoint}/{bucket}?list-type=2&prefix={prefix}&max-keys=1000"),
        None,
    );
    let xml = String::from_utf8(list.body).unwrap();
    assert!(
        list.status == 200 && !xml.contains("<IsTruncated>true"),
        "{xml}"
    );
    xml.split("<Key>")
        .skip(1)
        .map(|s| s.split("</Key>").next().unwrap().replace("&amp;", "&"))
        .collect()
}

/// What a fault may never leave behind, checked at the S3 server: every object under
/// `_variants/` is a whole image made from its master's current bytes (`source-etag` = the
/// master's ETag), and no failure is remembered (a store fault is no 415/422). Returns the
/// variant keys, sorted.
pub fn assert_bucket_sound(endpoint: &str, bucket: &str, context: &str) -> Vec<String> {
    let mut keys = s3_keys(endpoint, bucket, "_variants/");
    keys.sort();
    for key in &keys {
        assert!(
            !key.ends_with(edge::key::FAILURE_MARKER_NAME),
            "{context}: a store fault was remembered as the image's failure: {key}"
        );
        let object = s3_call(
            reqwest::Method::GET,
            &format!("{endpoint}/{bucket}/{key}"),
            None,
        );
        assert_eq!(object.status, 200, "{context}: {key}");
        image::load_from_memory(&object.body)
            .unwrap_or_else(|e| panic!("{context}: {key} does not decode: {e}"));
        let master = key
            .strip_prefix(&format!("_variants/v{}/", edge::key::TRANSFORM_VERSION))
            .and_then(|k| k.rsplit_once('/'))
            .map(|(master, _)| master)
            .unwrap_or_else(|| panic!("{context}: not a variant key: {key}"));
        let master_head = s3_call(
            reqwest::Method::HEAD,
            &format!("{endpoint}/{bucket}/{master}"),
            None,
        );
        assert_eq!(
            object.header("x-amz-meta-source-etag"),
            master_head.header("etag"),
            "{context}: {key} was not made from {master}'s current bytes"
        );
    }
    keys
}

/// Deterministic RGB noise: it does not compress, so a PNG of it is ~3 bytes a pixel (a
/// PNG variant of it is too big to be answered inline, and is read from the bucket).
pub fn noise_png(width: u32, height: u32) -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    let img = RgbImage::from_fn(width, height, |_, _| {
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state & 0xff) as u8
        };
        Rgb([next(), next(), next()])
    });
    encode(image::DynamicImage::ImageRgb8(img), ImageFormat::Png)
}
