//! jobs: crawling sources (on demand or on their cron schedules) and the indexer loop.
//! The scheduler only decides *when*; the clock passed in decides what "now" is for the data.
use crate::app::AppState;
use crate::crawl::{parse_feed, Fetched};
use crate::domain::ItemKind;
use crate::store::{FetchRecord, SourceRow};
use serde::Serialize;
use std::sync::Arc;
use tokio_cron_scheduler::{Job, JobScheduler};

/// One source's crawl, as `crawl --once` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct CrawlSummary {
    pub source: String,
    pub status: String,
    pub new_items: u64,
    pub updated_items: u64,
    pub seen_items: u64,
    pub failed_items: u64,
    pub error: Option<String>,
    pub charset: Option<String>,
}

/// Fetches, parses and stores one source. Never fails: problems end up in the summary and
/// in the source's row, and the other sources go on.
pub async fn crawl_source(state: &AppState, source: &SourceRow) -> CrawlSummary {
    let mut summary = CrawlSummary {
        source: source.name.clone(),
        status: "error".into(),
        new_items: 0,
        updated_items: 0,
        seen_items: 0,
        failed_items: 0,
        error: None,
        charset: None,
    };
    let mut record = FetchRecord {
        status: "error".into(),
        error: None,
        etag: None,
        last_modified: None,
        new_items: 0,
        seen_items: 0,
    };
    let kind = ItemKind::parse(&source.item_kind).unwrap_or(ItemKind::News);
    let fetched = state
        .http
        .fetch(
            &source.url,
            source.etag.as_deref(),
            source.last_modified.as_deref(),
        )
        .await;
    match fetched {
        Ok(Fetched::NotModified) => {
            summary.status = "not_modified".into();
            record.status = "304".into();
        }
        Ok(Fetched::Body {
            bytes,
            content_type,
            etag,
            last_modified,
        }) => match parse_feed(&bytes, content_type.as_deref(), &source.name, kind) {
            Ok((items, charset)) => {
                summary.seen_items = items.len() as u64;
                summary.charset = Some(format!("{} ({})", charset.encoding, charset.from));
                match state
                    .pipeline
                    .ingest(&state.store, items, state.clock.now())
                    .await
                {
                    Ok(report) => {
                        summary.status = "ok".into();
                        summary.new_items = report.counts.new;
                        summary.updated_items = report.counts.updated;
                        summary.failed_items = report.failed;
                        record.status = "200".into();
                        record.etag = etag;
                        record.last_modified = last_modified;
                        if !report.errors.is_empty() {
                            summary.error = Some(report.errors.join("; "));
                        }
                        state.index_notify.notify_one();
                    }
                    Err(e) => summary.error = Some(e.to_string()),
                }
            }
            Err(e) => summary.error = Some(e.to_string()),
        },
        Err(e) => summary.error = Some(e.to_string()),
    }
    record.error = summary.error.clone();
    record.new_items = summary.new_items;
    record.seen_items = summary.seen_items;
    if let Err(e) = state
        .store
        .record_fetch(source.id, &record, state.clock.now())
        .await
    {
        tracing::error!(source = %source.name, error = %e, "cannot record fetch");
    }
    if let Some(err) = &summary.error {
        tracing::warn!(source = %source.name, error = %err, "crawl problem");
    } else {
        tracing::info!(source = %source.name, new = summary.new_items, seen = summary.seen_items, "crawled");
    }
    summary
}

/// Crawls every enabled source once, at most `crawl.concurrency` at a time.
pub async fn crawl_all(
    state: &Arc<AppState>,
) -> Result<Vec<CrawlSummary>, crate::store::StoreError> {
    let sources = state.store.sources().await?;
    let permits = Arc::new(tokio::sync::Semaphore::new(
        state.settings.crawl.concurrency,
    ));
    let mut tasks = Vec::new();
    for source in sources.into_iter().filter(|s| s.enabled) {
        let state = state.clone();
        let permits = permits.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            crawl_source(&state, &source).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        match t.await {
            Ok(s) => out.push(s),
            Err(e) => tracing::error!(error = %e, "crawl task failed"),
        }
    }
    Ok(out)
}

/// Starts one cron job per enabled source, evaluated in Asia/Tokyo.
pub async fn start_scheduler(state: Arc<AppState>) -> anyhow::Result<JobScheduler> {
    let scheduler = JobScheduler::new().await?;
    for source in state
        .store
        .sources()
        .await?
        .into_iter()
        .filter(|s| s.enabled)
    {
        let name = source.name.clone();
        let st = state.clone();
        let job = Job::new_async_tz(
            source.schedule.as_str(),
            chrono_tz::Asia::Tokyo,
            move |_, _| {
                let st = st.clone();
                let name = name.clone();
                Box::pin(async move {
                    // Re-read the row: the database is authoritative (validators, enabled flag).
                    match st.store.sources().await {
                        Ok(rows) => {
                            if let Some(row) =
                                rows.into_iter().find(|r| r.name == name && r.enabled)
                            {
                                crawl_source(&st, &row).await;
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "cannot read sources"),
                    }
                })
            },
        );
        match job {
            Ok(job) => {
                scheduler.add(job).await?;
            }
            Err(e) => {
                tracing::error!(source = %source.name, error = %e, "bad schedule; source not scheduled")
            }
        }
    }
    scheduler.start().await?;
    Ok(scheduler)
}

/// Runs the indexer on its own thread (tantivy's writer blocks): it catches up at start, then
/// whenever notified and every two seconds, until `stop` is set.
pub fn spawn_indexer(
    state: Arc<AppState>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "indexer runtime");
                return;
            }
        };
        rt.block_on(async move {
            let writer = match state.index.writer() {
                Ok(w) => std::sync::Mutex::new(w),
                Err(e) => {
                    tracing::error!(error = %e, "cannot open the index writer; search will not update");
                    return;
                }
            };
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match state.index.catch_up(&state.store, &writer).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(changes = n, "index caught up"),
                    Err(e) => tracing::error!(error = %e, "indexing failed; will retry"),
                }
                tokio::select! {
                    _ = state.index_notify.notified() => {}
                    _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                }
            }
            if let Ok(w) = writer.into_inner() {
                let _ = w.wait_merging_threads();
            }
        });
    })
}

/// Keeps this node's pre-rendered status pages current: once a second it compares the stored
/// status version with the rendered one (another node may have written) and checks the clock
/// for time events (a maintenance window opening or closing, JST midnight).
pub fn spawn_status_poller(
    state: Arc<AppState>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            tick.tick().await;
            if let Err(e) = state
                .status
                .refresh(&state.store, state.clock.now(), true)
                .await
            {
                tracing::warn!(error = %e, "status pages could not be rebuilt");
            }
        }
    })
}

/// Delivers queued webhooks once a second (retries wait for their time, from the clock).
pub fn spawn_webhook_worker(
    state: Arc<AppState>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !state.notifier.enabled() {
            return;
        }
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            tick.tick().await;
            if let Err(e) = state
                .notifier
                .deliver_due(&state.store, state.clock.now())
                .await
            {
                tracing::warn!(error = %e, "webhook delivery failed");
            }
        }
    })
}
