//! Command line: parse arguments, load the config, run the chosen command.
use crate::app::{AppState, Application};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::domain::{ItemKind, RawItem};
use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Deserialize;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "kizashi",
    version,
    about = "Early warning for Japanese cashless-payment incidents"
)]
pub struct Cli {
    /// Configuration file (default: ./kizashi.toml when present, else built-in defaults).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log lines on standard error as `text` or `json` (one object per line, for log
    /// collectors).
    #[arg(long, global = true, value_name = "FORMAT", env = "KIZASHI_LOG_FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the web server, the crawl scheduler and the indexer.
    Serve {
        /// What this node does: `all` (one node), or on a shared PostgreSQL database any
        /// number of `web` nodes (pages, API, own index) and one `worker` (crawling,
        /// alerts, webhooks; HTTP for /healthz, /readyz and /metrics only).
        #[arg(long, value_enum, default_value = "all", env = "KIZASHI_ROLE")]
        role: crate::app::Role,
    },
    /// Fetch every source once, store new items and print a summary.
    Crawl {
        /// Crawl once and exit (the only mode; scheduling is `serve`'s job).
        #[arg(long, required = true)]
        once: bool,
    },
    /// Import items from JSON Lines (`-` reads standard input).
    Import { file: String },
    /// Analyze texts from standard input, one per line; JSON Lines on standard output.
    Analyze,
    /// Ask the server to rebuild the search index from the database.
    Reindex,
    /// Re-score stored items after lexicons, aliases or rules changed (items scored with
    /// another analysis version, or with --since every item published since then); a running
    /// server's index follows.
    Reanalyze {
        /// Also re-score items published since this time (RFC 3339, or a date as JST midnight).
        #[arg(long)]
        since: Option<String>,
    },
    /// Score the analyzer on a labeled set: accuracy and macro-F1 (3 classes, and positive vs
    /// negative), evidence overlap with gold spans.
    Eval {
        /// The labeled TSV.
        #[arg(long, default_value = "tests/eval/sentences.tsv")]
        file: PathBuf,
        /// dev, test or all.
        #[arg(long, default_value = "test")]
        split: String,
        /// Also list the rows the analyzer got wrong.
        #[arg(long)]
        errors: bool,
    },
    /// Replay spike detection hour by hour over stored items, as if each hour were "now"
    /// (an item counts from when it became visible), and print {"alerts": [...]} to tune
    /// thresholds on past data. Parameters default to the [alerts] configuration.
    Backtest {
        /// First "now" of the replay (RFC 3339, or a date as JST midnight).
        #[arg(long)]
        from: String,
        /// Last "now" of the replay.
        #[arg(long)]
        to: String,
        /// Fewest mentions in an hour that may alert.
        #[arg(long)]
        min_count: Option<u64>,
        /// Largest tail probability that alerts.
        #[arg(long)]
        max_p: Option<f64>,
        /// Hot hours of a service closer than this are one alert.
        #[arg(long)]
        cooldown_hours: Option<i64>,
        /// Minutes between replayed detection runs.
        #[arg(long, default_value_t = 60)]
        step_minutes: i64,
    },
    /// Replay an incident timeline (synthetic posts and articles served by a local feed server,
    /// crawled on a simulated clock) in a fresh data directory, and watch the alert fire.
    Demo {
        /// july2019 (7pay) or paypay2018 (PayPay's campaign rush and card fraud).
        #[arg(long, default_value = "july2019")]
        scenario: String,
        /// Where the demo's database and index go (must be new or empty; default: a new
        /// directory under the system's temporary directory).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Real milliseconds per ten simulated minutes once the replay is live.
        #[arg(long, default_value_t = 250)]
        tick_ms: u64,
        /// Stop after the replay and print {"alerts": [...]} instead of serving on.
        #[arg(long)]
        exit: bool,
        /// Write the scenario's items as JSON Lines for `kizashi import` and stop.
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
    },
    /// Write a consistent copy of the database to FILE while everything keeps running.
    Backup { file: PathBuf },
    /// Replace the database by a backup (stop the server first); the index is rebuilt at the
    /// next start.
    Restore { file: PathBuf },
    /// Show every source with its crawl state.
    Sources {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete items by URL, source and/or publication date range (they leave the index too).
    Delete {
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        source: Option<String>,
        /// Start of the range (RFC 3339, or a date taken as JST midnight), inclusive.
        #[arg(long)]
        from: Option<String>,
        /// End of the range, exclusive.
        #[arg(long)]
        to: Option<String>,
    },
    /// Write the public status pages, feeds and JSON as static files (with .gz and .br
    /// siblings) into DIR, for a CDN or object storage.
    ExportStatus { dir: PathBuf },
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens for scripts.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token acting for USER and print it once (only its hash is stored).
    Add {
        name: String,
        #[arg(long)]
        user: String,
        /// read: GET the read APIs (search, timeseries); write: also /api/v1/ (incidents,
        /// components, maintenance). Never more than the user's own role.
        #[arg(long)]
        scope: String,
    },
    /// Revoke a token.
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create an account and print its one-time setup link (valid 24 hours).
    Add {
        name: String,
        /// admin (users, components), operator (incidents, maintenance) or viewer (dashboard,
        /// search). Admins and operators must enrol TOTP.
        #[arg(long)]
        role: String,
    },
    /// Lift a sign-in lockout.
    Unlock { name: String },
    /// Reset password and 2FA: end every session and token of the user now, and print a new
    /// one-time setup link.
    Reset { name: String },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format.as_deref() == Some("json"));
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let clock: SharedClock = Arc::new(SystemClock);
    match runtime.block_on(run(cli.command, settings, clock)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to standard error, filtered by `KIZASHI_LOG`; JSON lines on request.
fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KIZASHI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tantivy=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn run(command: Command, settings: Settings, clock: SharedClock) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { role } => {
            if role != crate::app::Role::All && !settings.database.is_postgres() {
                tracing::warn!(
                    ?role,
                    "a single-role node on SQLite: the other role's node must share its data \
                     directory on this machine; use database_url = \"postgres://…\" for several"
                );
            }
            let app = Application::build_as(settings.clone(), clock, role).await?;
            let bind = settings.bind;
            println!(
                "kizashi listening on http://{}:{}/ (role {}, data in {})",
                bind.ip(),
                app.port(),
                format!("{role:?}").to_lowercase(),
                settings.data_dir.display()
            );
            app.run_until_stopped().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Crawl { .. } => {
            let state = AppState::open(settings, clock).await?;
            let summary = crate::jobs::crawl_all(&state).await?;
            if summary.is_empty() {
                eprintln!("no sources configured; add [[sources]] to kizashi.toml");
            }
            let mut out = std::io::stdout().lock();
            for s in &summary {
                writeln!(out, "{}", serde_json::to_string(s)?)?;
            }
            let failed = summary.iter().filter(|s| s.status == "error").count();
            eprintln!("crawled {} sources, {failed} failed", summary.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { file } => import(settings, clock, &file).await,
        Command::Analyze => {
            let dicts = crate::app::load_dictionaries(&settings)?;
            let pipeline = crate::pipeline::Pipeline::new(&dicts)?;
            let stdin = std::io::stdin().lock();
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for line in stdin.lines() {
                let text = line.context("reading standard input")?;
                let analysis = pipeline.analyze_text(&text)?;
                let mut v = serde_json::to_value(&analysis)?;
                v["text"] = serde_json::Value::String(text);
                writeln!(out, "{}", serde_json::to_string(&v)?)?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval {
            file,
            split,
            errors,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let rows = crate::evaluate::parse_tsv(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let rows: Vec<_> = rows
                .into_iter()
                .filter(|r| split == "all" || r.split == split)
                .collect();
            if rows.is_empty() {
                anyhow::bail!("no rows in split {split:?} (use dev, test or all)");
            }
            let dicts = crate::app::load_dictionaries(&settings)?;
            let pipeline = crate::pipeline::Pipeline::new(&dicts)?;
            let mut pairs = Vec::new();
            let (mut with_gold, mut overlapping) = (0, 0);
            for r in &rows {
                let a = pipeline.analyze_text(&r.text)?;
                let predicted = match &r.target {
                    Some(t) => a
                        .targets
                        .iter()
                        .find(|x| &x.service == t)
                        .map(|x| x.label)
                        .unwrap_or(a.sentiment.label),
                    None => a.sentiment.label,
                };
                pairs.push((r.label, predicted));
                if !r.evidence.is_empty() && predicted == r.label {
                    with_gold += 1;
                    if crate::evaluate::evidence_overlaps(&a.sentiment.evidence, &r.evidence) {
                        overlapping += 1;
                    }
                }
                if errors && predicted != r.label {
                    println!(
                        "{}\t{}\tgold={}\tgot={}\t{:+.2}\t{}\t{:?}",
                        r.id,
                        r.style,
                        r.label.as_str(),
                        predicted.as_str(),
                        a.sentiment.score,
                        r.text,
                        a.sentiment.evidence
                    );
                }
            }
            let scores = crate::evaluate::score(&pairs);
            println!(
                "{}",
                serde_json::json!({
                    "split": split,
                    "scores": scores,
                    "evidence_overlap": { "rows": with_gold, "overlapping": overlapping },
                })
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Backtest {
            from,
            to,
            min_count,
            max_p,
            cooldown_hours,
            step_minutes,
        } => {
            let t = |name: &str, v: &str| {
                crate::aggregate::parse_time(v).map_err(|e| anyhow::anyhow!("--{name}: {e}"))
            };
            let (from, to) = (t("from", &from)?, t("to", &to)?);
            if to <= from {
                anyhow::bail!("--to must be after --from");
            }
            if to - from > 3 * 366 * 86_400_000 {
                anyhow::bail!("replay at most three years at a time");
            }
            if !(1..=24 * 60).contains(&step_minutes) {
                anyhow::bail!("--step-minutes must be from 1 to 1440");
            }
            let mut params = settings.alerts.params;
            params.min_count = min_count.unwrap_or(params.min_count);
            params.max_p = max_p.unwrap_or(params.max_p);
            params.cooldown_hours = cooldown_hours.unwrap_or(params.cooldown_hours);
            let store = crate::store::Store::open_settings(&settings).await?;
            // The baseline needs the weeks before the replay.
            let start = crate::spikes::floor_hour(from)
                - params.history_hours() as i64 * crate::spikes::HOUR_MS;
            let events = store.detection_events(start, to + 1).await?;
            let alerts = crate::spikes::backtest(events, from, to, step_minutes * 60_000, &params);
            let mut out = Vec::with_capacity(alerts.len());
            for a in &alerts {
                let (from, to) = crate::alerting::example_window(a);
                let ids = store
                    .alert_examples(
                        &a.service,
                        a.category.as_deref(),
                        from,
                        to,
                        crate::alerting::EXAMPLES,
                    )
                    .await?;
                let items = store.items(&ids).await?;
                out.push(crate::alerting::alert_json(a, None, &items));
            }
            println!("{}", serde_json::json!({ "alerts": out }));
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            scenario,
            data_dir,
            tick_ms,
            exit,
            export,
        } => {
            if let Some(path) = export {
                let mut f = std::io::BufWriter::new(
                    std::fs::File::create(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                );
                let n = crate::demo::run::export(&scenario, &mut f)?;
                f.flush()?;
                eprintln!("wrote {n} items to {}", path.display());
                return Ok(ExitCode::SUCCESS);
            }
            let dir = match data_dir {
                Some(d) => {
                    if d.exists() && std::fs::read_dir(&d)?.next().is_some() {
                        anyhow::bail!(
                            "--data-dir {} is not empty; the demo needs a directory of its own",
                            d.display()
                        );
                    }
                    d
                }
                None => std::env::temp_dir()
                    .join(format!("kizashi-demo-{scenario}-{}", std::process::id())),
            };
            let run = crate::demo::run::run(crate::demo::run::DemoOptions {
                scenario: &scenario,
                data_dir: &dir,
                bind: settings.bind,
                live_tick: std::time::Duration::from_millis(tick_ms.min(60_000)),
                verbose: !exit,
            })
            .await?;
            if exit {
                println!("{}", serde_json::json!({ "alerts": run.alerts }));
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "replay done: {} alerts. Still serving http://{}:{}/alerts (data in {}); Ctrl-C stops.",
                run.alerts.len(),
                settings.bind.ip(),
                run.port,
                dir.display()
            );
            tokio::signal::ctrl_c().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { file } => {
            let store = crate::store::Store::open_settings(&settings).await?;
            store.backup(&file).await?;
            println!(
                "{}",
                serde_json::json!({ "backup": file.display().to_string(), "items": store.item_count().await? })
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { file } => {
            crate::store::Store::restore(&settings.database, &file, clock.now()).await?;
            let store = crate::store::Store::open_settings(&settings).await?;
            println!(
                "{}",
                serde_json::json!({ "restored": file.display().to_string(), "items": store.item_count().await?, "reindex": "at the next start of kizashi serve" })
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Sources { json } => {
            let store = crate::store::Store::open_settings(&settings).await?;
            store.seed_once(&settings, clock.now()).await?;
            let rows = crate::jobs::source_statuses(&store, clock.now()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in &rows {
                    println!(
                        "{:<20} {:<6} items={:<6} last={} status={} next={}{}",
                        r.name,
                        r.kind,
                        r.total_items,
                        r.last_fetch_at.as_deref().unwrap_or("-"),
                        r.last_status.as_deref().unwrap_or("-"),
                        r.next_run_at.as_deref().unwrap_or("-"),
                        r.last_error
                            .as_deref()
                            .map(|e| format!(" error={e}"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete {
            url,
            source,
            from,
            to,
        } => {
            let time = |name: &str, v: Option<String>| -> anyhow::Result<Option<i64>> {
                v.map(|s| {
                    crate::aggregate::parse_time(&s).map_err(|e| anyhow::anyhow!("--{name}: {e}"))
                })
                .transpose()
            };
            let filter = crate::store::DeleteFilter {
                url: url.map(|u| crate::pipeline::canonical_url(&u).unwrap_or(u)),
                source,
                from: time("from", from)?,
                to: time("to", to)?,
            };
            if filter.url.is_none()
                && filter.source.is_none()
                && filter.from.is_none()
                && filter.to.is_none()
            {
                eprintln!("error: give at least one of --url, --source, --from, --to");
                return Ok(ExitCode::from(2));
            }
            let store = crate::store::Store::open_settings(&settings).await?;
            let n = store.delete_items(&filter, clock.now()).await?;
            println!("{}", serde_json::json!({ "deleted": n }));
            Ok(ExitCode::SUCCESS)
        }
        Command::Reanalyze { since } => {
            let since = since
                .map(|s| {
                    crate::aggregate::parse_time(&s).map_err(|e| anyhow::anyhow!("--since: {e}"))
                })
                .transpose()?;
            let state = AppState::open(settings, clock).await?;
            let report = state
                .pipeline
                .reanalyze(&state.store, since, state.clock.now())
                .await?;
            for e in &report.errors {
                eprintln!("skipped: {e}");
            }
            println!(
                "{}",
                serde_json::json!({
                    "version": state.pipeline.version(),
                    "rescored": report.counts.updated,
                    "failed": report.failed,
                })
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::User(UserCommand::Add { name, role }) => {
            let role = crate::auth::Role::parse(&role).map_err(anyhow::Error::msg)?;
            let store = crate::store::Store::open_settings(&settings).await?;
            let token = crate::auth::create_user(&store, &name, role, clock.now()).await?;
            crate::auth::audit(
                &store,
                crate::store::AuditEntry {
                    at: clock.now().timestamp_millis(),
                    actor: "(command line)".into(),
                    ip: "local".into(),
                    action: "user_add".into(),
                    target: format!("user:{name}"),
                    before: None,
                    after: Some(format!("role {}", role.as_str())),
                },
            )
            .await;
            println!("{}/setup/{token}", settings.status.public_url);
            eprintln!(
                "created {name} ({}); open the link above within 24 hours to set a password{}",
                role.as_str(),
                if role.needs_totp() {
                    " and two-factor authentication"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::User(UserCommand::Reset { name }) => {
            let store = crate::store::Store::open_settings(&settings).await?;
            let token = crate::auth::reset_user(&store, &name, clock.now()).await?;
            crate::auth::audit(
                &store,
                crate::store::AuditEntry {
                    at: clock.now().timestamp_millis(),
                    actor: "(command line)".into(),
                    ip: "local".into(),
                    action: "user_reset".into(),
                    target: format!("user:{name}"),
                    before: None,
                    after: Some("password and 2FA reset; sessions and tokens ended".into()),
                },
            )
            .await;
            println!("{}/setup/{token}", settings.status.public_url);
            eprintln!(
                "every session and API token of {name} has ended; open the link within 24 hours"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::User(UserCommand::Unlock { name }) => {
            let store = crate::store::Store::open_settings(&settings).await?;
            store
                .unlock_user(&name, clock.now().timestamp_millis())
                .await?;
            println!("unlocked {name}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCommand::Add { name, user, scope }) => {
            let scope = crate::auth::TokenScope::parse(&scope).map_err(anyhow::Error::msg)?;
            let store = crate::store::Store::open_settings(&settings).await?;
            let token = crate::auth::create_token(&store, &name, &user, scope, clock.now()).await?;
            println!("{token}");
            eprintln!(
                "created {} token {name} for {user}; send it as `Authorization: Bearer …`; it is not shown again",
                scope.as_str()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCommand::Revoke { name }) => {
            let store = crate::store::Store::open_settings(&settings).await?;
            store
                .revoke_api_token(&name, clock.now().timestamp_millis())
                .await?;
            println!("revoked {name}");
            Ok(ExitCode::SUCCESS)
        }
        Command::ExportStatus { dir } => {
            let store = crate::store::Store::open_settings(&settings).await?;
            let site =
                crate::status::StatusSite::new(settings.status.clone(), crate::web::css_name());
            let rendered = site.refresh(&store, clock.now(), true).await?;
            let n = crate::status::export(&rendered, &dir)
                .with_context(|| format!("writing into {}", dir.display()))?;
            let css = dir.join("static").join(crate::web::css_name());
            std::fs::create_dir_all(dir.join("static"))?;
            std::fs::write(&css, crate::web::css())?;
            println!(
                "wrote {n} status documents (status version {}) and the stylesheet to {}",
                rendered.version,
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Reindex => {
            let store = crate::store::Store::open_settings(&settings).await?;
            let current: i64 = store
                .meta("reindex_generation")
                .await?
                .and_then(|g| g.parse().ok())
                .unwrap_or(0);
            store
                .set_meta("reindex_generation", &(current + 1).to_string())
                .await?;
            println!(
                "reindex requested (generation {}): a running `kizashi serve` rebuilds the index now, otherwise the next start does",
                current + 1
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One line of an import file.
#[derive(Debug, Deserialize)]
struct ImportLine {
    url: String,
    title: String,
    body: String,
    published_at: String,
    source: String,
    kind: String,
    #[serde(default)]
    author: Option<String>,
}

/// Parses one line of an import file into a raw item (also used by the ingest benchmarks).
pub fn parse_import_line(line: &str) -> Result<RawItem, String> {
    let l: ImportLine = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let published = chrono::DateTime::parse_from_rfc3339(l.published_at.trim())
        .map_err(|e| format!("published_at {:?} is not RFC 3339: {e}", l.published_at))?;
    let source = l.source.trim();
    if source.is_empty() || source.chars().count() > 100 {
        return Err("source must be 1 to 100 characters".into());
    }
    if l.title.trim().is_empty() && l.body.trim().is_empty() {
        return Err("title and body are both empty".into());
    }
    Ok(RawItem {
        source: source.to_string(),
        guid: None,
        url: l.url,
        title: l.title,
        body: l.body,
        published_at: Some(published.with_timezone(&chrono::Utc)),
        author: l.author.filter(|a| !a.trim().is_empty()),
        kind: ItemKind::parse(&l.kind)?,
        bookmarks: None,
        tags: Vec::new(),
    })
}

/// Items per import transaction.
const IMPORT_BATCH: usize = 5000;

async fn import(settings: Settings, clock: SharedClock, file: &str) -> anyhow::Result<ExitCode> {
    let reader: Box<dyn BufRead> = if file == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("cannot open {file}"))?,
        ))
    };
    let state = AppState::open(settings, clock).await?;
    // Two stages overlap: while one batch is written (one transaction), the next is analyzed
    // on every core.
    type Analyzing =
        tokio::task::JoinHandle<Result<crate::pipeline::Prepared, crate::store::StoreError>>;
    let analyze = |state: &AppState, batch: Vec<RawItem>| -> Analyzing {
        let (pipeline, store) = (state.pipeline.clone(), state.store.clone());
        tokio::spawn(async move { pipeline.prepare_batch(&store, batch, true).await })
    };
    async fn store(
        state: &AppState,
        analyzing: Analyzing,
    ) -> anyhow::Result<crate::pipeline::IngestReport> {
        let prepared = analyzing.await.context("analysis task failed")??;
        Ok(state
            .pipeline
            .store_batch(&state.store, prepared, state.clock.now())
            .await?)
    }
    let mut analyzing: Option<Analyzing> = None;
    let mut batch = Vec::new();
    let mut report = crate::pipeline::IngestReport::default();
    let mut bad = 0u64;
    let mut read = 0u64;
    for (n, line) in reader.lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("line {}: {e}", n + 1);
                bad += 1;
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        read += 1;
        match parse_import_line(&line) {
            Ok(item) => batch.push(item),
            Err(e) => {
                eprintln!("line {}: {e}", n + 1);
                bad += 1;
            }
        }
        if batch.len() >= IMPORT_BATCH {
            let next = analyze(&state, std::mem::take(&mut batch));
            if let Some(prev) = analyzing.replace(next) {
                merge(&mut report, store(&state, prev).await?);
            }
        }
    }
    let last = analyze(&state, batch);
    for prepared in analyzing.into_iter().chain([last]) {
        merge(&mut report, store(&state, prepared).await?);
    }
    for e in &report.errors {
        eprintln!("skipped: {e}");
    }
    println!(
        "{}",
        serde_json::json!({
            "read": read,
            "new": report.counts.new,
            "updated": report.counts.updated,
            "unchanged": report.counts.unchanged,
            "failed": report.failed + bad,
        })
    );
    Ok(ExitCode::SUCCESS)
}

fn merge(into: &mut crate::pipeline::IngestReport, r: crate::pipeline::IngestReport) {
    into.counts += r.counts;
    into.failed += r.failed;
    into.errors.extend(r.errors);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_lines_are_parsed_at_the_edge() {
        let ok = r#"{"url":"https://e.jp/1","title":"t","body":"b","published_at":"2019-07-03T10:00:00+09:00","source":"nhk","kind":"news"}"#;
        assert!(parse_import_line(ok).is_ok());
        for bad in [
            r#"{"url":"https://e.jp/1","title":"t","body":"b","published_at":"yesterday","source":"nhk","kind":"news"}"#,
            r#"{"url":"https://e.jp/1","title":"t","body":"b","published_at":"2019-07-03T10:00:00+09:00","source":"nhk","kind":"blog"}"#,
            r#"{"title":"t"}"#,
            "not json",
        ] {
            assert!(parse_import_line(bad).is_err(), "{bad}");
        }
    }
}
