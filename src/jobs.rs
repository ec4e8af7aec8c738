//! jobs: crawling sources (on demand or on their cron schedules) and the indexer loop.
//! The scheduler only decides *when*; the clock passed in decides what "now" is for the data.
use crate::app::AppState;
use crate::crawl::{parse_feed, Fetched, SourceCtx};
use crate::domain::ItemKind;
use crate::store::{FetchRecord, SourceRow};
use serde::Serialize;
use std::sync::Arc;
use tokio_cron_scheduler::{Job, JobScheduler};

/// One source's crawl, as `crawl --once` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct CrawlSummary {
    pub source: String,
    /// ok | not_modified | error | backing_off
    pub status: String,
    pub new_items: u64,
    pub updated_items: u64,
    pub seen_items: u64,
    pub failed_items: u64,
    pub error: Option<String>,
    pub charset: Option<String>,
    /// The feed answered 200 with the same bytes for longer than `crawl.stale_after_hours`.
    pub stale: bool,
    pub backoff_until: Option<String>,
    /// Items that dropped out of the feed and answered 404/410 at their URL.
    pub deleted_items: u64,
}

/// Exponential backoff: base × 2^(failures−1), capped at six hours, never shorter than the
/// server's Retry-After.
pub fn backoff_delay(
    base: std::time::Duration,
    failures: i64,
    retry_after: Option<std::time::Duration>,
) -> std::time::Duration {
    let exp = base.saturating_mul(1u32 << (failures.clamp(1, 16) - 1) as u32);
    let delay = exp.min(std::time::Duration::from_secs(6 * 3600));
    retry_after.map_or(delay, |r| r.max(delay))
}

/// Fetches, parses and stores one source. Never fails: problems end up in the summary and
/// in the source's row, and the other sources go on.
pub async fn crawl_source(state: &AppState, source: &SourceRow) -> CrawlSummary {
    let now = state.clock.now();
    let mut summary = CrawlSummary {
        source: source.name.clone(),
        status: "error".into(),
        new_items: 0,
        updated_items: 0,
        seen_items: 0,
        failed_items: 0,
        error: None,
        charset: None,
        stale: false,
        backoff_until: None,
        deleted_items: 0,
    };
    if let Some(until) = source.backoff_until.filter(|u| *u > now.timestamp_millis()) {
        summary.status = "backing_off".into();
        summary.backoff_until = Some(crate::aggregate::jst_rfc3339(until));
        return summary;
    }
    let mut record = FetchRecord::default();
    let ctx = SourceCtx {
        name: &source.name,
        item_kind: ItemKind::parse(&source.item_kind).unwrap_or(ItemKind::News),
        tz: source.timezone.parse().unwrap_or(chrono_tz::Asia::Tokyo),
        url: Some(&source.url),
    };
    let kind =
        crate::config::SourceKind::parse(&source.kind).unwrap_or(crate::config::SourceKind::Feed);
    // Credentials never enter the database: they come from the settings by source name.
    let credentials = state
        .settings
        .sources
        .iter()
        .find(|s| s.name.as_str() == source.name)
        .and_then(|s| s.credentials.as_ref());
    let fetched = state
        .http
        .fetch_source(&crate::crawl::SourceRequest {
            kind,
            url: &source.url,
            query: source.query.as_deref(),
            credentials,
            etag: source.etag.as_deref(),
            last_modified: source.last_modified.as_deref(),
        })
        .await;
    let mut retry_after = None;
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
        }) => {
            let body_hash = crate::pipeline::hash_hex(&bytes);
            let unchanged_since = source
                .body_changed_at
                .filter(|_| source.body_hash.as_deref() == Some(body_hash.as_str()));
            summary.stale = unchanged_since.is_some_and(|t| {
                now.timestamp_millis() - t > state.settings.crawl.stale_after.num_milliseconds()
            });
            record.body_hash = Some(body_hash);
            match parse_feed(&bytes, content_type.as_deref(), &ctx) {
                Ok(mut parsed) => {
                    if source.fetch_article {
                        enrich_with_articles(state, &mut parsed.items).await;
                    }
                    if let Some(days) = source.verify_deletions_days {
                        let gone = verify_deletions(state, source, &parsed.items, days, now).await;
                        summary.deleted_items = gone;
                    }
                    summary.seen_items = parsed.items.len() as u64;
                    summary.charset = Some(parsed.charset.to_string());
                    match state.pipeline.ingest(&state.store, parsed.items, now).await {
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
                Err(e) => {
                    crate::metrics::global().stage_error(crate::metrics::Stage::Parse, 1);
                    record.status = "200".into();
                    summary.error = Some(e.to_string());
                }
            }
        }
        Err(e) => {
            crate::metrics::global().stage_error(crate::metrics::Stage::Fetch, 1);
            retry_after = e.retry_after();
            record.status = match &e {
                crate::crawl::CrawlError::Status { status, .. } => status.to_string(),
                _ => "error".into(),
            };
            summary.error = Some(e.to_string());
        }
    }
    if summary.status == "error" {
        record.failures = source.failures + 1;
        let delay = backoff_delay(
            state.settings.crawl.backoff_base,
            record.failures,
            retry_after,
        );
        let until = now.timestamp_millis() + delay.as_millis() as i64;
        record.backoff_until = Some(until);
        summary.backoff_until = Some(crate::aggregate::jst_rfc3339(until));
    }
    if summary.stale {
        let warning = format!(
            "feed answers 200 but its content has not changed for more than {} hours",
            state.settings.crawl.stale_after.num_hours()
        );
        summary.error = Some(
            summary
                .error
                .map_or(warning.clone(), |e| format!("{e}; {warning}")),
        );
    }
    record.error = summary.error.clone();
    record.new_items = summary.new_items;
    record.seen_items = summary.seen_items;
    record.charset = summary.charset.clone();
    if let Err(e) = state.store.record_fetch(source.id, &record, now).await {
        tracing::error!(source = %source.name, error = %e, "cannot record fetch");
    }
    if let Some(err) = &summary.error {
        tracing::warn!(source = %source.name, error = %err, "crawl problem");
    } else {
        tracing::info!(source = %source.name, new = summary.new_items, seen = summary.seen_items, "crawled");
    }
    summary
}

/// Most URLs checked for deletion in one crawl of one source.
const MAX_DELETION_CHECKS: usize = 20;

/// Items deleted at the source: recent items of this source that are no longer in the feed are
/// fetched at their URL; a 404 or 410 deletes them (and so removes them from the index).
async fn verify_deletions(
    state: &AppState,
    source: &SourceRow,
    present: &[crate::domain::RawItem],
    days: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> u64 {
    let since = now.timestamp_millis() - days * 86_400_000;
    let Ok(recent) = state.store.recent_items_of(&source.name, since).await else {
        return 0;
    };
    let in_feed: std::collections::HashSet<String> = present
        .iter()
        .filter_map(|r| {
            crate::pipeline::canonical_url(&r.url).map(|u| crate::pipeline::identity(r, &u))
        })
        .collect();
    let mut deleted = 0;
    // A bounded number of checks per crawl keeps this polite however many items left the feed.
    for (identity, url) in recent
        .into_iter()
        .filter(|(id, _)| !in_feed.contains(id))
        .take(MAX_DELETION_CHECKS)
    {
        let gone = matches!(
            state.http.fetch(&url, None, None).await,
            Err(crate::crawl::CrawlError::Status {
                status: 404 | 410,
                ..
            })
        );
        if gone {
            let filter = crate::store::DeleteFilter {
                url: Some(url.clone()),
                source: Some(source.name.clone()),
                ..Default::default()
            };
            match state.store.delete_items(&filter, now).await {
                Ok(n) => deleted += n,
                Err(e) => {
                    tracing::error!(%identity, error = %e, "cannot delete an item gone at the source")
                }
            }
        }
    }
    if deleted > 0 {
        state.index_notify.notify_one();
    }
    deleted
}

/// Replaces the feed's summary of each item not stored yet by the main text of its page, when
/// robots.txt allows the fetch and the page says more. A failed page keeps the summary.
async fn enrich_with_articles(state: &AppState, items: &mut [crate::domain::RawItem]) {
    for item in items.iter_mut() {
        let Some(url) = crate::pipeline::canonical_url(&item.url) else {
            continue;
        };
        let identity = crate::pipeline::identity(item, &url);
        if state.store.has_identity(&identity).await.unwrap_or(true) {
            continue;
        }
        match state.http.fetch_article(&item.url).await {
            Ok(Some(a)) if a.text.chars().count() > item.body.chars().count() => item.body = a.text,
            Ok(_) => {}
            Err(e) => tracing::debug!(url = %item.url, error = %e, "article not fetched"),
        }
    }
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
    // Retention: every night at 03:30 JST, items past their source's retention period go.
    let st = state.clone();
    let retention = Job::new_async_tz("0 30 3 * * *", chrono_tz::Asia::Tokyo, move |_, _| {
        let st = st.clone();
        Box::pin(async move {
            match st.store.apply_retention(st.clock.now()).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(deleted = n, "retention applied");
                    st.index_notify.notify_one();
                }
                Err(e) => tracing::error!(error = %e, "retention failed"),
            }
        })
    })?;
    scheduler.add(retention).await?;
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
            // One indexer per index root: a second process sharing the data directory follows
            // the holder's generations instead of writing.
            let lock = match state.index.lock_for_writing() {
                Ok(Some(lock)) => lock,
                Ok(None) => {
                    tracing::warn!("another kizashi process indexes this data directory; following its index");
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        if let Err(e) = state.index.follow_owner() {
                            tracing::warn!(error = %e, "cannot follow the shared index");
                        }
                        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    }
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot lock the index directory; search will not update");
                    return;
                }
            };
            state.index.remove_stale_generations(&lock);
            let writer = match state.index.writer() {
                Ok(w) => std::sync::Mutex::new(w),
                Err(e) => {
                    tracing::error!(error = %e, "cannot open the index writer; search will not update");
                    return;
                }
            };
            let mut follower = None;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match state
                    .index
                    .catch_up(&state.store, &writer, &mut follower, &stop)
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(changes = n, "index caught up"),
                    Err(crate::search::SearchError::Stopped) => {
                        tracing::info!("index rebuild abandoned for shutdown; the next start builds again")
                    }
                    Err(e) => {
                        crate::metrics::global().stage_error(crate::metrics::Stage::Index, 1);
                        tracing::error!(error = %e, "indexing failed; will retry")
                    }
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

/// A source as `kizashi sources --json` and the admin page show it.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub name: String,
    pub url: String,
    pub kind: String,
    pub item_kind: String,
    pub schedule: String,
    pub enabled: bool,
    pub last_fetch_at: Option<String>,
    pub last_status: Option<String>,
    pub new_items: i64,
    pub seen_items: i64,
    pub total_items: i64,
    pub next_run_at: Option<String>,
    pub last_error: Option<String>,
    pub backoff_until: Option<String>,
    pub charset_decision: Option<String>,
}

/// Every source with its crawl state at `now`. The next run is the first scheduled time at or
/// after the end of any backoff.
pub async fn source_statuses(
    store: &crate::store::Store,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<SourceStatus>, crate::store::StoreError> {
    use crate::aggregate::jst_rfc3339;
    let totals = store.items_per_source().await?;
    Ok(store
        .sources()
        .await?
        .into_iter()
        .map(|s| {
            let after = s.backoff_until.unwrap_or(0).max(now.timestamp_millis());
            let next_run_at = crate::config::parse_schedule(&s.schedule)
                .ok()
                .and_then(|cron| {
                    let start =
                        chrono::TimeZone::timestamp_millis_opt(&chrono_tz::Asia::Tokyo, after)
                            .single()?;
                    cron.find_next_occurrence(&start, true)
                        .ok()
                        .map(|t| t.to_rfc3339())
                });
            SourceStatus {
                total_items: totals.get(&s.name).copied().unwrap_or(0),
                next_run_at: next_run_at.filter(|_| s.enabled),
                last_fetch_at: s.last_fetch_at.map(jst_rfc3339),
                backoff_until: s
                    .backoff_until
                    .filter(|u| *u > now.timestamp_millis())
                    .map(jst_rfc3339),
                name: s.name,
                url: s.url,
                kind: s.kind,
                item_kind: s.item_kind,
                schedule: s.schedule,
                enabled: s.enabled,
                last_status: s.last_status,
                new_items: s.new_items,
                seen_items: s.seen_items,
                last_error: s.last_error,
                charset_decision: s.charset_decision,
            }
        })
        .collect())
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
                .deliver_due(&state.store, &state.http, state.clock.now())
                .await
            {
                tracing::warn!(error = %e, "webhook delivery failed");
            }
        }
    })
}

/// Runs early-warning detection every `alerts.check_every` (off when `alerts.enabled` is
/// false). The first run comes one interval after start, when the index and crawl settled.
pub fn spawn_alert_detector(
    state: Arc<AppState>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !state.settings.alerts.enabled {
            return;
        }
        let every = state.settings.alerts.check_every;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            tick.tick().await;
            if let Err(e) = crate::alerting::detect_now(&state).await {
                tracing::warn!(error = %e, "alert detection failed");
            }
        }
    })
}
