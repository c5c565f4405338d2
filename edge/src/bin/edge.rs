//! `edge`: the local CloudFront emulator (`serve`) and the pipeline on a file (`transform`).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use edge::guard::Guard;
use edge::key::key_to_uri;
use edge::local::{self, pages, seed, ServeOptions, StoreLocation};
use edge::observe::{self, LogFormat};
use edge::policy::Policy;
use edge::service::{self, Origin, RenderBudget};
use edge::sign::SigningKeys;
use edge::transform::Limits;

#[derive(Parser)]
#[command(
    name = "edge",
    version,
    about = "imgedge on one machine: URL → variant → bucket → cache"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a bucket through the local CloudFront emulator.
    Serve(ServeArgs),
    /// Render one variant of an image file.
    Transform(TransformArgs),
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long, env = "IMGEDGE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A directory (seeded with samples when empty) or s3://bucket[/prefix].
    #[arg(long, env = "IMGEDGE_STORE", default_value = "./.imgedge/bucket")]
    store: StoreLocation,
    /// Size bound of the in-memory edge cache.
    #[arg(long, env = "IMGEDGE_CACHE_BYTES", default_value_t = ServeOptions::default().cache_bytes)]
    cache_bytes: u64,
    /// Do not put sample masters into an empty directory store.
    #[arg(long, env = "IMGEDGE_NO_SEED")]
    no_seed: bool,
    /// Signing keys (one hex secret per line, `#` comments): every request with a query
    /// then needs a valid `sig` (DESIGN.md §10).
    #[arg(long, env = "IMGEDGE_SIGNING_KEYS_FILE")]
    signing_keys: Option<PathBuf>,
    /// Policy and presets (policy.json, DESIGN.md §10).
    #[arg(long, env = "IMGEDGE_POLICY_FILE")]
    policy: Option<PathBuf>,
    /// Seconds an origin request may take before it is answered 504 `timeout`.
    #[arg(long, env = "IMGEDGE_REQUEST_TIMEOUT", default_value_t = local::DEFAULT_REQUEST_TIMEOUT.as_secs_f64())]
    request_timeout: f64,
    /// Master pixels rendered at once; a render that finds no room within
    /// --render-queue-ms is a 503 `busy` (memory grows with the pixels being rendered).
    #[arg(long, env = "IMGEDGE_RENDER_BUDGET_PIXELS", default_value_t = DEFAULT_RENDER_BUDGET_PIXELS)]
    render_budget_pixels: u64,
    /// How long a render waits for room in the budget.
    #[arg(long, env = "IMGEDGE_RENDER_QUEUE_MS", default_value_t = 2000)]
    render_queue_ms: u64,
    #[command(flatten)]
    limits: Limits,
}

/// Two masters at the default pixel limit at once.
const DEFAULT_RENDER_BUDGET_PIXELS: u64 = 100_000_000;

#[derive(Args)]
struct TransformArgs {
    /// The master image (png, jpg, jpeg or webp; the format comes from the extension).
    input: PathBuf,
    /// The URL query, e.g. 'w=512&fmt=webp'.
    #[arg(long, default_value = "")]
    query: String,
    /// An Accept header, for fmt=auto.
    #[arg(long)]
    accept: Option<String>,
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    limits: Limits,
}

/// glibc raises its mmap threshold to the size of each large block freed, so after the first
/// render the buffers of later ones (MBs each, on many threads) come from its arenas, which
/// keep the memory: RSS at rest doubled in 90 s of soak (53 → 114 MB) with a flat live heap.
/// A fixed threshold keeps every render buffer in `mmap` (at rest 29 → 27 MB; scripts/soak,
/// docs/reliability.md). Set before any thread starts.
fn return_render_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a malloc parameter; it is called once, before the runtime
    // starts any other thread.
    unsafe {
        // Blocks above 128 KiB (glibc's initial threshold) from mmap, returned when freed.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn main() -> anyhow::Result<ExitCode> {
    return_render_memory();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<ExitCode> {
    let terminal = std::io::stderr().is_terminal();
    let log_format = LogFormat::choose(
        std::env::var("IMGEDGE_LOG_FORMAT").ok().as_deref(),
        terminal,
    )
    .map_err(anyhow::Error::msg)?;
    observe::init_tracing(log_format, "info,aws=warn", terminal);
    match Cli::parse().command {
        Command::Serve(args) => serve(args, log_format).await.map(|()| ExitCode::SUCCESS),
        Command::Transform(args) => transform(args),
    }
}

async fn serve(args: ServeArgs, log_format: LogFormat) -> anyhow::Result<()> {
    // Both files are checked before anything starts: a bad one names its wrong line/entry.
    let guard = Guard {
        keys: args
            .signing_keys
            .as_deref()
            .map(SigningKeys::read)
            .transpose()?,
        policy: args.policy.as_deref().map(Policy::read).transpose()?,
    };
    let store = args.store.open().await.context("cannot open the store")?;
    if matches!(args.store, StoreLocation::Fs(_)) && !args.no_seed {
        let seeded = seed::seed_if_empty(&*store, &seed::today_utc()).await?;
        if !seeded.is_empty() {
            println!(
                "seeded {} sample masters into {}",
                seeded.len(),
                store.describe()
            );
        }
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("imgedge edge serving {} on {base}/", store.describe());
    if let Ok(keys) = store.list("").await {
        if let Some(first) = pages::masters(&keys).first() {
            let path = key_to_uri(first);
            for query in [
                "",
                "w=512&fmt=webp",
                "w=800&h=450&fmt=jpeg&q=70",
                "w=320&dpr=2&fmt=auto",
            ] {
                println!("  {base}{}", pages::link(guard.keys.as_ref(), &path, query));
            }
        }
    }
    if let Some(keys) = &guard.keys {
        println!(
            "signed URLs required ({} key(s)); sign with: generator sign --signing-keys FILE URL",
            keys.len()
        );
    }
    let request_timeout = Duration::try_from_secs_f64(args.request_timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--request-timeout must be a positive number of seconds")?;
    let origin = Arc::new(
        Origin::new(store, args.limits)
            .with_policy(guard.policy.clone())
            .with_render_budget(RenderBudget::new(
                args.render_budget_pixels,
                Duration::from_millis(args.render_queue_ms),
            )),
    );
    let options = ServeOptions {
        cache_bytes: args.cache_bytes,
        guard,
        log_format,
        request_timeout,
    };
    local::serve(listener, origin, options, local::shutdown_signal()).await?;
    println!("imgedge edge stopped");
    Ok(())
}

fn transform(args: TransformArgs) -> anyhow::Result<ExitCode> {
    let master = std::fs::read(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let extension = args
        .input
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("");
    match service::transform_file(
        &master,
        extension,
        &args.query,
        args.accept.as_deref(),
        &args.limits,
    ) {
        Ok(bytes) => {
            std::fs::write(&args.output, bytes)
                .with_context(|| format!("cannot write {}", args.output.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}", e.to_json());
            Ok(ExitCode::FAILURE)
        }
    }
}
