//! Test kit for the end-to-end tests: real servers on loopback, real binaries.
//!
//! - [`MotoServer`]: moto's S3-protocol server (from PyPI; `./scripts/test` installs it and
//!   puts `moto_server` on PATH), one per test process, killed on drop.
//! - [`bin_path`]: the workspace binaries built by `cargo build --workspace --bins`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The port a child process says it listens on, in a line of `stream` (its stdout or
/// stderr) holding `marker` right before the port. The rest of the stream is drained so the
/// child never blocks writing to it. A server given port 0 picks a port nobody else holds:
/// a port chosen by the test and released before the server binds it can be taken by a
/// parallel test's listener, whose answer then looks like the server's.
pub fn announced_port(
    child: &mut Child,
    stream: impl std::io::Read + Send + 'static,
    marker: &str,
    what: &str,
) -> u16 {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    let marker = marker.to_string();
    std::thread::spawn(move || {
        let mut seen = String::new();
        let mut sent = false;
        for line in std::io::BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if sent {
                continue;
            }
            let port = line.split_once(marker.as_str()).and_then(|(_, rest)| {
                let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
                digits.parse::<u16>().ok()
            });
            match port {
                Some(port) => sent = tx.send(Ok(port)).is_ok(),
                None => seen.push_str(&format!("{line}\n")),
            }
        }
        if !sent {
            let _ = tx.send(Err(seen));
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(port)) => port,
        Ok(Err(output)) => panic!("{what} exited before it listened:\n{output}"),
        Err(_) => {
            let _ = child.kill();
            panic!("{what} printed no listening address within 60 s")
        }
    }
}

/// Path of a binary of this workspace (`edge`, `bootstrap`, `generator`), next to the
/// test executable's `deps/` directory.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins` (./scripts/test does)",
        path.display()
    );
    path
}

/// moto's S3-protocol server on a free loopback port.
pub struct MotoServer {
    child: Option<Child>,
    pub port: u16,
}

impl MotoServer {
    /// Start `moto_server` (or `$MOTO_SERVER`) on a port it picks (see [`announced_port`];
    /// moto takes about a second to import, a wide window for a port chosen here).
    pub fn start() -> MotoServer {
        let (mut child, program) = Self::spawn(0, Stdio::piped());
        let stderr = child.stderr.take().unwrap();
        let port = announced_port(&mut child, stderr, "Running on http://127.0.0.1:", &program);
        let server = MotoServer {
            child: Some(child),
            port,
        };
        server.wait_until_answering();
        server
    }

    /// Start on a given port (used to restart a stopped server at the same endpoint).
    pub fn start_on(port: u16) -> MotoServer {
        let (child, _) = Self::spawn(port, Stdio::null());
        let server = MotoServer {
            child: Some(child),
            port,
        };
        server.wait_until_answering();
        server
    }

    fn spawn(port: u16, stderr: Stdio) -> (Child, String) {
        let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {program}: {e}; install it with `pip install 'moto[server]'` \
                     or run ./scripts/test, which does"
                )
            });
        (child, program)
    }

    fn wait_until_answering(&self) {
        assert!(
            wait_for_port(
                SocketAddr::from(([127, 0, 0, 1], self.port)),
                Duration::from_secs(20)
            ),
            "moto_server did not start on port {}",
            self.port
        );
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stop the server (for fault tests); `start_on(self.port)` brings one back.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Environment for AWS SDK clients pointed at a local server (fake credentials).
pub fn local_aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ]
}

/// `scripts/s3_proxy.py` as a process between a handler and an S3 server: latency and
/// injected faults (reset, hang, 500, 503 SlowDown, truncate, flaky), switched while it runs
/// through its control listener. Killed on drop.
pub struct FaultProxy {
    child: Child,
    /// The URL to give the handler as its S3 endpoint.
    pub url: String,
    control: SocketAddr,
}

impl FaultProxy {
    /// Start it in front of `upstream` (`http://host:port`); it prints its two URLs.
    pub fn start(upstream: &str) -> FaultProxy {
        use std::io::BufRead;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/s3_proxy.py");
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let upstream = upstream.trim_start_matches("http://");
        let mut child = Command::new(&python)
            .args([script, "--upstream", upstream])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {python} {script}: {e}"));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // {"proxy": "http://127.0.0.1:P", "control": "http://127.0.0.1:C"}
        let field = |name: &str| -> String {
            let start = line
                .find(&format!("\"{name}\": \""))
                .unwrap_or_else(|| panic!("s3_proxy.py printed {line:?}"))
                + name.len()
                + 5;
            line[start..].split('"').next().unwrap().to_string()
        };
        let url = field("proxy");
        let control = field("control")
            .trim_start_matches("http://")
            .parse()
            .unwrap();
        FaultProxy {
            child,
            url,
            control,
        }
    }

    /// Set the fault, e.g. `{"mode": "reset", "skip": 4}` or `{"delay_ms": 150}` (what is
    /// left out is cleared); returns the proxy's state as JSON text.
    pub fn set(&self, fault: &str) -> String {
        self.control("POST", fault)
    }

    /// No fault, no latency; returns the state of the fault it ended (what it met).
    pub fn clear(&self) -> String {
        let ended = self.state();
        self.set("{}");
        ended
    }

    /// `{"mode", "delay_ms", "skip", "requests", "faulted"}`: counts since the fault was set.
    pub fn state(&self) -> String {
        self.control("GET", "")
    }

    fn control(&self, method: &str, body: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = TcpStream::connect(self.control).unwrap();
        write!(
            stream,
            "{method} /fault HTTP/1.1\r\nHost: control\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "{method} /fault: {answer}"
        );
        body.to_string()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pillow (the test tools' venv, scripts/tools.sh): an AVIF decoder and a colour
/// management system that share no code with imgedge (tests/tools/pillow_tool.py).
pub mod pillow {
    use std::path::Path;
    use std::process::Command;

    fn tool() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/pillow_tool.py")
    }

    fn run(cmd: &str, src: &Path, dst: &Path) -> String {
        let python = std::env::var("IMGEDGE_PYTHON").unwrap_or_else(|_| "python3".into());
        let out = Command::new(&python)
            .arg(tool())
            .args([cmd])
            .arg(src)
            .arg(dst)
            .output()
            .unwrap_or_else(|e| {
                panic!("{python}: {e} (./scripts/test puts the tools' venv with Pillow on PATH)")
            });
        assert!(
            out.status.success(),
            "pillow_tool {cmd} {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// What Pillow says of a decoded file.
    #[derive(Debug)]
    pub struct Decoded {
        pub format: String,
        pub mode: String,
        pub size: (u32, u32),
        pub icc: bool,
        /// The pixels, RGB or RGBA.
        pub image: image::DynamicImage,
    }

    /// Decode `bytes` (any format Pillow reads, AVIF included) with Pillow.
    pub fn decode(bytes: &[u8]) -> Decoded {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("in"), dir.path().join("out.png"));
        std::fs::write(&src, bytes).unwrap();
        let info: serde_json::Value =
            serde_json::from_str(run("decode", &src, &dst).trim()).unwrap();
        Decoded {
            format: info["format"].as_str().unwrap().to_string(),
            mode: info["mode"].as_str().unwrap().to_string(),
            size: (
                info["size"][0].as_u64().unwrap() as u32,
                info["size"][1].as_u64().unwrap() as u32,
            ),
            icc: info["icc"].as_bool().unwrap(),
            image: image::open(&dst).unwrap(),
        }
    }

    /// `master` (a PNG with an ICC profile) converted to sRGB by Little CMS.
    pub fn lcms_to_srgb(master: &[u8]) -> image::DynamicImage {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("in.png"), dir.path().join("out.png"));
        std::fs::write(&src, master).unwrap();
        run("to-srgb", &src, &dst);
        image::open(&dst).unwrap()
    }
}

/// Mean SSIM of two equal-sized images on luma, 8×8 windows with stride 4 (Wang et al.'s
/// constants); images with alpha are composited over mid grey first.
pub fn ssim(a: &image::DynamicImage, b: &image::DynamicImage) -> f64 {
    use image::GenericImageView;
    assert_eq!(a.dimensions(), b.dimensions(), "SSIM needs equal sizes");
    let luma = |img: &image::DynamicImage| -> Vec<f64> {
        img.to_rgba8()
            .pixels()
            .map(|p| {
                let a = f64::from(p[3]) / 255.0;
                let c = |v: u8| f64::from(v) * a + 128.0 * (1.0 - a);
                0.299 * c(p[0]) + 0.587 * c(p[1]) + 0.114 * c(p[2])
            })
            .collect()
    };
    let (w, h) = (a.width() as usize, a.height() as usize);
    let (la, lb) = (luma(a), luma(b));
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let win = 8.min(w).min(h);
    let (mut total, mut count) = (0.0, 0usize);
    for y in (0..=h - win).step_by(4) {
        for x in (0..=w - win).step_by(4) {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for j in y..y + win {
                for i in x..x + win {
                    let (pa, pb) = (la[j * w + i], lb[j * w + i]);
                    sa += pa;
                    sb += pb;
                    saa += pa * pa;
                    sbb += pb * pb;
                    sab += pa * pb;
                }
            }
            let n = (win * win) as f64;
            let (ma, mb) = (sa / n, sb / n);
            let (va, vb, cov) = (saa / n - ma * ma, sbb / n - mb * mb, sab / n - ma * mb);
            total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2))
                / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            count += 1;
        }
    }
    total / count as f64
}
