//! `generator`: synth sample masters, upload them to the bucket, invalidate CloudFront.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use edge::policy::Policy;
use edge::sign::SigningKeys;
use generator::upload::{self, FileOutcome, FileReport};
use generator::{naming, synth, Action, BatchReport, Config, Retry, Uploader};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio_util::sync::CancellationToken;

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
    /// Upload the PNGs of DIR to outputs/YYYY-MM-DD/image_NNN.png.
    Upload(UploadArgs),
    /// Print each URL signed with the first key of the keys file (DESIGN.md §10).
    Sign {
        /// Hex secrets, one per line (`#` comments); the first signs.
        #[arg(long, env = "IMGEDGE_SIGNING_KEYS_FILE")]
        signing_keys: PathBuf,
        /// URLs (https://host/path?query or /path?query), signed exactly as written.
        #[arg(required = true)]
        urls: Vec<String>,
    },
    /// Create one CloudFront invalidation for the given paths (e.g. '/outputs/2025-02-01/*').
    Invalidate {
        #[arg(long)]
        distribution_id: String,
        #[arg(required = true)]
        paths: Vec<String>,
        #[command(flatten)]
        retry: RetryArgs,
    },
}

#[derive(clap::Args)]
struct UploadArgs {
    /// Directory of PNGs (not recursive; hidden files ignored).
    dir: PathBuf,
    #[arg(long)]
    bucket: String,
    /// Key prefix; {date} is replaced by --date.
    #[arg(long, default_value = "outputs/{date}/")]
    prefix: String,
    /// Date for {date}, YYYY-MM-DD (default: today, UTC).
    #[arg(long)]
    date: Option<String>,
    /// Uploads in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    concurrency: u32,
    /// Replace changed images in place (deletes their variants, invalidates CloudFront)
    /// instead of writing image_NNN_vN.png.
    #[arg(long)]
    overwrite: bool,
    /// CloudFront distribution to invalidate after --overwrite.
    #[arg(long)]
    distribution_id: Option<String>,
    /// CloudFront domain (or base URL such as http://127.0.0.1:8080) for the URLs reported.
    #[arg(long)]
    cdn_domain: Option<String>,
    /// Show what would happen; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    json: bool,
    /// Sign the variant URLs reported (hex secrets, one per line; the first signs).
    #[arg(long, env = "IMGEDGE_SIGNING_KEYS_FILE")]
    signing_keys: Option<PathBuf>,
    /// Make these variants at upload so no viewer waits for their render: queries or
    /// preset names of --policy, comma-separated ('thumb,w=512&fmt=webp').
    #[arg(long, value_delimiter = ',')]
    eager: Vec<String>,
    /// The deployment's policy.json: preset names for --eager, widths for each srcset.
    #[arg(long, env = "IMGEDGE_POLICY_FILE")]
    policy: Option<PathBuf>,
    #[command(flatten)]
    retry: RetryArgs,
}

#[derive(clap::Args)]
struct RetryArgs {
    /// Attempts per S3/CloudFront call (retries throttling, 5xx, timeouts, connection errors).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    max_attempts: u32,
    /// First retry delay in milliseconds (then exponential with jitter).
    #[arg(long, default_value_t = 500)]
    retry_backoff_ms: u64,
}

impl RetryArgs {
    fn retry(&self) -> Retry {
        Retry {
            max_attempts: self.max_attempts,
            initial_backoff: Duration::from_millis(self.retry_backoff_ms),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Synth {
                count,
                size,
                seed,
                out,
            } => synth(count, size, seed, &out).map(|()| ExitCode::SUCCESS),
            Command::Upload(args) => upload(args).await,
            Command::Sign { signing_keys, urls } => {
                let keys = SigningKeys::read(&signing_keys)?;
                for url in urls {
                    println!("{}", keys.sign_url(&url));
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Invalidate {
                distribution_id,
                paths,
                retry,
            } => invalidate(&distribution_id, &paths, retry.retry()).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--eager` entries as queries: a preset name of the policy becomes its query; anything
/// else must be a valid query of the URL API (checked on a PNG master here, before any
/// upload, so a typo stops the batch at once).
fn eager_queries(entries: &[String], policy: Option<&Policy>) -> Result<Vec<String>> {
    entries
        .iter()
        .map(|entry| entry.trim())
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let query = match policy.and_then(|p| p.preset(entry)) {
                Some(query) => query.to_string(),
                None if !entry.contains('=') => bail!(
                    "--eager {entry}: not a query, and not a preset of {}",
                    if policy.is_some() {
                        "the policy"
                    } else {
                        "a policy (give --policy FILE)"
                    }
                ),
                None => entry.to_string(),
            };
            if let Some(policy) = policy {
                policy
                    .check(&query)
                    .map_err(|e| anyhow::anyhow!("--eager {entry}: {}", e.message))?;
            }
            edge::spec::VariantSpec::parse(&query, edge::format::Format::Png, None)
                .map_err(|e| anyhow::anyhow!("--eager {entry}: {}", e.message))?;
            Ok(query)
        })
        .collect()
}

fn synth(count: u32, size: u32, seed: u64, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for index in 1..=count {
        let path = out.join(synth::file_name(index));
        std::fs::write(&path, synth::synth_png(index, size, seed))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

async fn upload(args: UploadArgs) -> Result<ExitCode> {
    let date = match &args.date {
        Some(text) => naming::parse_date(text)?,
        None => time::OffsetDateTime::now_utc().date(),
    };
    let prefix = naming::expand_prefix(&args.prefix, date)?;
    let files =
        upload::list_dir(&args.dir).with_context(|| format!("reading {}", args.dir.display()))?;
    let mut config = Config::from_env(&args.bucket, prefix).await;
    config.overwrite = args.overwrite;
    config.distribution_id = args.distribution_id;
    config.cdn_domain = args.cdn_domain;
    config.concurrency = args.concurrency as usize;
    config.dry_run = args.dry_run;
    config.retry = args.retry.retry();
    config.signing_keys = args
        .signing_keys
        .as_deref()
        .map(SigningKeys::read)
        .transpose()?;
    let policy = args.policy.as_deref().map(Policy::read).transpose()?;
    config.eager = eager_queries(&args.eager, policy.as_ref())?;
    if let Some(widths) = policy.as_ref().and_then(Policy::widths) {
        config.srcset_widths = widths.to_vec();
    }
    let uploader = Uploader::new(config);

    // First Ctrl-C: start nothing new, let uploads in flight finish, report.
    // Second Ctrl-C: leave at once.
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping: finishing uploads in flight (Ctrl-C again to quit now)");
            on_signal.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });

    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(files.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {msg}")
                .expect("valid template"),
        );
        bar
    });
    let started = Instant::now();
    let on_done = |report: &FileReport| {
        let line = describe(report);
        match &progress {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(line);
            }
            None => eprintln!("{line}"),
        }
    };
    let report = uploader.upload_files(&files, &stop, &on_done).await;
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    let elapsed = started.elapsed();

    if args.json {
        let json = serde_json::to_string_pretty(&summary_json(&uploader, &report, elapsed))?;
        // A closed pipe (`| head`) is not worth a panic; the exit status still tells.
        let _ = writeln!(std::io::stdout().lock(), "{json}");
    } else {
        print_summary(&uploader, &report, elapsed);
    }
    Ok(if report.interrupted {
        ExitCode::from(130)
    } else if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn describe(report: &FileReport) -> String {
    let name = file_name(&report.path);
    match &report.outcome {
        FileOutcome::Done(image) => {
            let what = match image.action {
                Action::New => "uploaded",
                Action::Versioned => "versioned",
                Action::Overwritten => "overwritten",
                Action::Skipped => "skipped (unchanged)",
            };
            let built = image.eager.iter().filter(|v| v.built).count();
            match image.eager.len() {
                0 => format!("{what} {name} → {}", image.key),
                n => format!(
                    "{what} {name} → {} (+{n} eager variants, {built} made)",
                    image.key
                ),
            }
        }
        FileOutcome::Failed(e) => format!("FAILED {name}: {e}"),
        FileOutcome::NotAttempted => format!("not attempted {name} (stopped)"),
    }
}

fn summary_json(uploader: &Uploader, report: &BatchReport, elapsed: Duration) -> serde_json::Value {
    let mut groups: [(Action, Vec<serde_json::Value>); 4] = [
        (Action::New, vec![]),
        (Action::Versioned, vec![]),
        (Action::Overwritten, vec![]),
        (Action::Skipped, vec![]),
    ];
    let (mut failed, mut not_attempted) = (vec![], vec![]);
    for file in &report.files {
        let name = file_name(&file.path);
        match &file.outcome {
            FileOutcome::Done(image) => {
                let mut entry = serde_json::to_value(image).expect("serialisable");
                entry["file"] = json!(name);
                let group = groups
                    .iter_mut()
                    .find(|(a, _)| *a == image.action)
                    .expect("every action has a group");
                group.1.push(entry);
            }
            FileOutcome::Failed(e) => failed.push(json!({"file": name, "error": e.to_string()})),
            FileOutcome::NotAttempted => not_attempted.push(json!(name)),
        }
    }
    let [(_, uploaded), (_, versioned), (_, overwritten), (_, skipped)] = groups;
    let config = uploader.config();
    json!({
        "bucket": config.bucket,
        "prefix": config.prefix,
        "dry_run": config.dry_run,
        "interrupted": report.interrupted,
        "ok": report.success(),
        "seconds": elapsed.as_secs_f64(),
        "counts": {
            "uploaded": uploaded.len(), "versioned": versioned.len(), "overwritten": overwritten.len(),
            "skipped": skipped.len(), "failed": failed.len(), "not_attempted": not_attempted.len(),
        },
        "uploaded": uploaded,
        "versioned": versioned,
        "overwritten": overwritten,
        "skipped": skipped,
        "failed": failed,
        "not_attempted": not_attempted,
        "invalidation": report.invalidation,
        "invalidation_error": report.invalidation_error.as_ref().map(|e| e.to_string()),
        "warnings": report.warnings,
    })
}

fn print_summary(uploader: &Uploader, report: &BatchReport, elapsed: Duration) {
    let count = |action: Action| {
        report
            .files
            .iter()
            .filter(|f| matches!(&f.outcome, FileOutcome::Done(i) if i.action == action))
            .count()
    };
    let failed: Vec<&FileReport> = report
        .files
        .iter()
        .filter(|f| matches!(f.outcome, FileOutcome::Failed(_)))
        .collect();
    let not_attempted = report
        .files
        .iter()
        .filter(|f| matches!(f.outcome, FileOutcome::NotAttempted))
        .count();
    let config = uploader.config();
    println!(
        "{}s3://{}/{}: {} uploaded, {} versioned, {} overwritten, {} skipped, {} failed, {} not attempted in {:.1}s",
        if config.dry_run { "(dry run) " } else { "" },
        config.bucket,
        config.prefix,
        count(Action::New),
        count(Action::Versioned),
        count(Action::Overwritten),
        count(Action::Skipped),
        failed.len(),
        not_attempted,
        elapsed.as_secs_f64()
    );
    for file in failed {
        println!("  {}", describe(file));
    }
    if let Some(inv) = &report.invalidation {
        println!(
            "invalidation {} on {}: {}",
            inv.id.as_deref().unwrap_or("(dry run)"),
            inv.distribution_id,
            inv.paths.join(" ")
        );
    }
    if let Some(e) = &report.invalidation_error {
        println!("invalidation FAILED: {e}");
    }
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
    if report.interrupted {
        println!("interrupted: files not attempted were not uploaded; every file listed as uploaded is complete in S3");
    }
}

async fn invalidate(distribution_id: &str, paths: &[String], retry: Retry) -> Result<ExitCode> {
    if let Some(bad) = paths.iter().find(|p| !p.starts_with('/')) {
        bail!("invalidation path {bad:?} must start with '/'");
    }
    let wildcards = paths.iter().filter(|p| p.contains('*')).count();
    if wildcards > naming::MAX_WILDCARD_PATHS {
        bail!(
            "{wildcards} wildcard paths: CloudFront allows at most {} in progress; use a common prefix with '*'",
            naming::MAX_WILDCARD_PATHS
        );
    }
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = upload::cloudfront_client(&aws, retry);
    let id =
        upload::create_invalidation(&client, distribution_id, paths, retry.max_attempts).await?;
    println!(
        "invalidation {id} on {distribution_id}: {}",
        paths.join(" ")
    );
    Ok(ExitCode::SUCCESS)
}
