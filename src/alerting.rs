//! alerting: the live early-warning detector (the `spikes` core over the stored rollups, the
//! results kept in the alerts table and announced through the webhooks) and the alert's
//! outward shape, shared by the API, the Atom feed, webhooks and `kizashi backtest`.
use crate::app::AppState;
use crate::spikes::{floor_hour, hot_hours, step, Alert, AlertState, Change, HOUR_MS};
use crate::store::{Store, StoreError, StoredItem};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// Example items kept per alert.
pub const EXAMPLES: i64 = 3;

/// Runs detection once at the clock's `now`: judges the current and previous hour, groups
/// the hot ones into alerts, stores what changed and queues webhooks for opened and
/// resolved alerts. Returns the ids of the alerts opened.
pub async fn detect_now(state: &AppState) -> Result<Vec<i64>, StoreError> {
    let now = state.clock.now();
    let p = state.settings.alerts.params;
    let now_ms = now.timestamp_millis();
    let from = floor_hour(now_ms) - p.history_hours() as i64 * HOUR_MS;
    let mut counts = state
        .store
        .detection_counts(from, floor_hour(now_ms) + HOUR_MS)
        .await?;
    add_saved_searches(state, &mut counts, from, floor_hour(now_ms) + HOUR_MS).await?;
    let hots = hot_hours(&counts, now_ms, &p);
    let mut alerts = state.store.unresolved_alerts().await?;
    let changes = step(&mut alerts, hots, now_ms, &p);
    let mut opened = Vec::new();
    for change in changes {
        let i = match change {
            Change::Opened(i) | Change::Updated(i) | Change::Resolved(i) => i,
        };
        let a = &mut alerts[i];
        let (from, to) = example_window(a);
        let examples = state
            .store
            .alert_examples(&a.service, a.category.as_deref(), from, to, EXAMPLES)
            .await?;
        a.id = state.store.save_alert(a, &examples, now).await?;
        let event = match change {
            Change::Opened(_) => {
                opened.push(a.id);
                "alert.opened"
            }
            Change::Resolved(_) => "alert.resolved",
            Change::Updated(_) => continue,
        };
        tracing::info!(alert = a.id, service = %a.service, category = ?a.category, event, "alert");
        announce(state, a.id, event, now).await;
    }
    Ok(opened)
}

/// Where an alert's example items come from: its first hot hours (what set it off), not the
/// whole incident it grew into.
pub fn example_window(a: &Alert) -> (i64, i64) {
    let to = a.last_hot_at.min(a.started_at + 2 * HOUR_MS) + HOUR_MS;
    (a.started_at, to)
}

/// Prefix of the series of a saved search (alert rules the team wrote as queries).
pub const SAVED_PREFIX: &str = "saved-search:";

/// Saved searches are alert rules too: each one's matching items per hour (from the index)
/// is a series `saved-search:{id}`, judged like a service's volume.
async fn add_saved_searches(
    state: &AppState,
    counts: &mut crate::spikes::Counts,
    from: i64,
    to: i64,
) -> Result<(), StoreError> {
    for (id, _, query) in state.store.saved_searches().await? {
        let Some(mut req) = crate::web::saved_search_request(state, &query) else {
            continue;
        };
        req.from = Some(req.from.map_or(from, |f| f.max(from)));
        req.to = Some(req.to.map_or(to, |t| t.min(to)));
        match state.index.matching_times(&req) {
            Ok(times) => {
                let key = format!("{SAVED_PREFIX}{id}");
                for t in times {
                    counts.add(&key, None, t, 1, 0);
                }
            }
            Err(e) => tracing::warn!(error = %e, saved_search = id, "saved search not judged"),
        }
    }
    Ok(())
}

/// Queues the webhooks for an alert event; a failure to queue is logged, never fatal.
pub async fn announce(state: &AppState, id: i64, event: &str, now: DateTime<Utc>) {
    if !state.notifier.enabled() {
        return;
    }
    let payload = match alert_json_by_id(&state.store, id).await {
        Ok(Some(v)) => v,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, alert = id, "alert could not be read for its webhook");
            return;
        }
    };
    let text = slack_text(&payload, event, &state.settings.status.public_url);
    let body = json!({ "event": event, "alert": payload });
    if let Err(e) = state
        .notifier
        .enqueue(
            &state.store,
            crate::notify::Topic::Alert,
            event,
            &body,
            &text,
            now,
        )
        .await
    {
        tracing::error!(error = %e, alert = id, "alert webhook could not be queued");
    }
}

/// A one-line message for chat: what, where, how strong, and the link.
pub fn slack_text(alert: &Value, event: &str, base_url: &str) -> String {
    let what = match alert["category"].as_str() {
        Some(c) => format!("{} / {}", alert["service"].as_str().unwrap_or(""), c),
        None => alert["service"].as_str().unwrap_or("").to_string(),
    };
    let verb = match event {
        "alert.resolved" => "resolved",
        "alert.acknowledged" => "acknowledged",
        _ => "opened",
    };
    let figures = if alert["metric"] == "negative_share" {
        format!(
            "negative share {:.0}% (usual {:.0}%)",
            alert["observed"].as_f64().unwrap_or(0.0) * 100.0,
            alert["expected"].as_f64().unwrap_or(0.0) * 100.0
        )
    } else {
        format!(
            "{} mentions in an hour (expected {})",
            alert["observed"], alert["expected"]
        )
    };
    format!(
        ":warning: kizashi alert {verb}: {what} — {figures}, since {} <{}/alerts/{}>",
        alert["started_at"].as_str().unwrap_or(""),
        base_url.trim_end_matches('/'),
        alert["id"]
    )
}

/// The alert's JSON (the `/api/alerts` shape), with its example items.
pub fn alert_json(a: &Alert, id: Option<i64>, examples: &[StoredItem]) -> Value {
    let t = crate::aggregate::jst_rfc3339;
    json!({
        "id": id,
        "service": a.service,
        "category": a.category,
        "metric": a.metric.as_str(),
        "started_at": t(a.started_at),
        "detected_at": t(a.detected_at),
        "last_hot_at": t(a.last_hot_at),
        "observed": a.observed,
        "expected": a.expected,
        "score": a.score,
        "state": a.state.as_str(),
        "examples": examples.iter().map(|i| json!({
            "id": i.id,
            "title": if i.title.trim().is_empty() {
                i.body.chars().take(80).collect::<String>()
            } else {
                i.title.clone()
            },
            "url": i.url,
            "source": i.source,
            "kind": i.kind,
            "published_at": t(i.published_at),
            "sentiment": i.sentiment_label.as_str(),
        })).collect::<Vec<_>>(),
    })
}

pub async fn alert_json_by_id(store: &Store, id: i64) -> Result<Option<Value>, StoreError> {
    match store.alert(id).await? {
        Some(row) => Ok(Some(stored_alert_json(store, &row).await?)),
        None => Ok(None),
    }
}

/// A stored alert's JSON: `alert_json` with its example items read and who changed its state.
pub async fn stored_alert_json(
    store: &Store,
    row: &crate::store::AlertRow,
) -> Result<Value, StoreError> {
    let items = store.items(&row.examples).await?;
    let mut v = alert_json(&row.alert, Some(row.alert.id), &items);
    v["state_by"] = json!(row.state_by);
    v["state_at"] = json!(row.state_at.map(crate::aggregate::jst_rfc3339));
    Ok(v)
}

/// A person changes an alert's state; announced like detection's changes.
pub async fn set_state(
    state: &AppState,
    id: i64,
    to: AlertState,
    by: &str,
) -> Result<(), StoreError> {
    let now = state.clock.now();
    state.store.set_alert_state(id, to, by, now).await?;
    let event = match to {
        AlertState::Open => "alert.reopened",
        AlertState::Acknowledged => "alert.acknowledged",
        AlertState::Resolved => "alert.resolved",
    };
    announce(state, id, event, now).await;
    Ok(())
}
