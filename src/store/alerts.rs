//! Alerts, and the hourly counts detection and charts read (the rollups kept with every item
//! write, see `rollup` in the parent module).
use super::{ms, Result, Store, StoreError};
use crate::spikes::{Alert, AlertState, Counts, Event, Metric};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// A stored alert with what only the store knows.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub alert: Alert,
    pub examples: Vec<i64>,
    pub updated_at: i64,
    pub state_by: Option<String>,
    pub state_at: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub service: Option<String>,
    pub state: Option<AlertState>,
    /// Continue after this (detected_at, id), newest first.
    pub before: Option<(i64, i64)>,
    pub limit: i64,
}

/// One rollup row summed over what a chart asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    pub hour: i64,
    pub kind: String,
    pub label: String,
    pub n: i64,
    pub score_sum: f64,
}

fn alert_of(r: &sqlx::any::AnyRow) -> Result<AlertRow> {
    let metric: String = r.get("metric");
    let state: String = r.get("state");
    let examples: String = r.get("examples");
    Ok(AlertRow {
        alert: Alert {
            id: r.get("id"),
            service: r.get("service"),
            category: r.get("category"),
            metric: Metric::parse(&metric)
                .ok_or_else(|| StoreError::Corrupt(format!("alert metric {metric:?}")))?,
            started_at: r.get("started_at"),
            detected_at: r.get("detected_at"),
            last_hot_at: r.get("last_hot_at"),
            last_category_hot_at: r.get("last_category_hot_at"),
            observed: r.get("observed"),
            expected: r.get("expected"),
            score: r.get("score"),
            state: AlertState::parse(&state).map_err(StoreError::Corrupt)?,
        },
        examples: examples.split(',').filter_map(|s| s.parse().ok()).collect(),
        updated_at: r.get("updated_at"),
        state_by: r.get("state_by"),
        state_at: r.get("state_at"),
    })
}

fn join_ids(ids: &[i64]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl Store {
    /// Hourly counts per (service, category) over [from, to) from the rollups: everything
    /// stored is visible to the live detector.
    pub async fn detection_counts(&self, from: i64, to: i64) -> Result<Counts> {
        let hours = ((to - from) / crate::spikes::HOUR_MS).max(0) as usize + 1;
        let mut counts = Counts::new(from, hours);
        let rows = sqlx::query(
            "SELECT service, category, hour, CAST(SUM(n) AS BIGINT),
                    CAST(SUM(CASE WHEN label = 'negative' THEN n ELSE 0 END) AS BIGINT)
             FROM rollups WHERE service <> '*' AND hour >= $1 AND hour < $2
             GROUP BY service, category, hour",
        )
        .bind(counts.start)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        for r in rows {
            let category: String = r.get(1);
            let n: i64 = r.get(3);
            let negative: i64 = r.get(4);
            counts.add(
                &r.get::<String, _>(0),
                (!category.is_empty()).then_some(category.as_str()),
                r.get(2),
                n.max(0) as u64,
                negative.max(0) as u64,
            );
        }
        Ok(counts)
    }

    /// Every (item, service) mention published in [from, to), with when it became visible,
    /// for replays.
    pub async fn detection_events(&self, from: i64, to: i64) -> Result<Vec<Event>> {
        Ok(self
            .mention_events(from, to)
            .await?
            .into_iter()
            .map(|m| Event {
                visible: m.visible.max(m.published),
                published: m.published,
                service: m.service,
                categories: m.categories,
                negative: m.negative,
            })
            .collect())
    }

    /// Unresolved alerts, oldest first (what detection groups new hot hours into).
    pub async fn unresolved_alerts(&self) -> Result<Vec<Alert>> {
        sqlx::query("SELECT * FROM alerts WHERE state <> 'resolved' ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| alert_of(r).map(|a| a.alert))
            .collect()
    }

    /// Stores a new alert (id 0) or updates one; returns its id.
    pub async fn save_alert(&self, a: &Alert, examples: &[i64], now: DateTime<Utc>) -> Result<i64> {
        if a.id == 0 {
            let id: i64 = sqlx::query(
                "INSERT INTO alerts (service, category, metric, started_at, detected_at,
                    last_hot_at, observed, expected, score, state, examples, updated_at,
                    last_category_hot_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
            )
            .bind(&a.service)
            .bind(&a.category)
            .bind(a.metric.as_str())
            .bind(a.started_at)
            .bind(a.detected_at)
            .bind(a.last_hot_at)
            .bind(a.observed)
            .bind(a.expected)
            .bind(a.score)
            .bind(a.state.as_str())
            .bind(join_ids(examples))
            .bind(ms(now))
            .bind(a.last_category_hot_at)
            .fetch_one(&self.pool)
            .await?
            .get(0);
            return Ok(id);
        }
        // Detection never reopens what a person resolved meanwhile, nor undoes an
        // acknowledgement.
        sqlx::query(
            "UPDATE alerts SET category = $2, last_hot_at = $3, observed = $4, expected = $5,
                score = $6, examples = $7, updated_at = $8, last_category_hot_at = $10,
                state = CASE WHEN state = 'resolved' THEN state
                             WHEN $9 = 'resolved' THEN 'resolved' ELSE state END,
                state_by = CASE WHEN state <> 'resolved' AND $9 = 'resolved' THEN 'kizashi'
                                ELSE state_by END,
                state_at = CASE WHEN state <> 'resolved' AND $9 = 'resolved' THEN $8
                                ELSE state_at END
             WHERE id = $1",
        )
        .bind(a.id)
        .bind(&a.category)
        .bind(a.last_hot_at)
        .bind(a.observed)
        .bind(a.expected)
        .bind(a.score)
        .bind(join_ids(examples))
        .bind(ms(now))
        .bind(a.state.as_str())
        .bind(a.last_category_hot_at)
        .execute(&self.pool)
        .await?;
        Ok(a.id)
    }

    /// A person acknowledges or resolves an alert (or reopens it).
    pub async fn set_alert_state(
        &self,
        id: i64,
        state: AlertState,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<AlertRow> {
        let done = sqlx::query(
            "UPDATE alerts SET state = $2, state_by = $3, state_at = $4, updated_at = $4
             WHERE id = $1",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(by)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("alert {id}")));
        }
        self.alert(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("alert {id}")))
    }

    pub async fn alert(&self, id: i64) -> Result<Option<AlertRow>> {
        sqlx::query("SELECT * FROM alerts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(alert_of)
            .transpose()
    }

    /// Alerts detected in [from, to), newest first, one page.
    pub async fn alerts(&self, f: &AlertFilter) -> Result<Vec<AlertRow>> {
        let (before_at, before_id) = f.before.unwrap_or((i64::MAX, i64::MAX));
        sqlx::query(
            "SELECT * FROM alerts
             WHERE ($1 IS NULL OR detected_at >= $1) AND ($2 IS NULL OR detected_at < $2)
               AND ($3 IS NULL OR service = $3) AND ($4 IS NULL OR state = $4)
               AND (detected_at < $5 OR (detected_at = $5 AND id < $6))
             ORDER BY detected_at DESC, id DESC LIMIT $7",
        )
        .bind(f.from)
        .bind(f.to)
        .bind(&f.service)
        .bind(f.state.map(|s| s.as_str()))
        .bind(before_at)
        .bind(before_id)
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(alert_of)
        .collect()
    }

    pub async fn open_alert_count(&self) -> Result<i64> {
        Ok(
            sqlx::query("SELECT COUNT(*) FROM alerts WHERE state = 'open'")
                .fetch_one(&self.pool)
                .await?
                .get(0),
        )
    }

    /// Example items of an alert: the most negative mentions of the service (and category)
    /// published in [from, to).
    pub async fn alert_examples(
        &self,
        service: &str,
        category: Option<&str>,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<i64>> {
        Ok(sqlx::query(
            "SELECT i.id FROM items i JOIN item_services s ON s.item_id = i.id AND s.service = $1
             WHERE i.published_at >= $2 AND i.published_at < $3
               AND ($4 IS NULL OR EXISTS (SELECT 1 FROM item_categories c
                                          WHERE c.item_id = i.id AND c.category = $4))
             ORDER BY s.score, i.published_at, i.id LIMIT $5",
        )
        .bind(service)
        .bind(from)
        .bind(to)
        .bind(category)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect())
    }

    /// Rollup rows for a chart over whole hours in [from, to): `service` None is every item
    /// ('*'), `category` None every category.
    pub async fn rollup_rows(
        &self,
        service: Option<&str>,
        category: Option<&str>,
        kind: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<RollupRow>> {
        self.rollup_rows_by(service, category, kind, from, to, crate::spikes::HOUR_MS)
            .await
    }

    /// Like `rollup_rows`, summed into JST buckets of `step` ms in the database (`hour` is
    /// then the bucket start).
    pub async fn rollup_rows_by(
        &self,
        service: Option<&str>,
        category: Option<&str>,
        kind: Option<&str>,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<RollupRow>> {
        sqlx::query(
            "SELECT ((hour + 32400000) / $6) * $6 - 32400000 AS b, kind, label, CAST(SUM(n) AS BIGINT),
                    SUM(score_sum)
             FROM rollups
             WHERE service = $1 AND category = $2 AND hour >= $3 AND hour < $4
               AND ($5 IS NULL OR kind = $5)
             GROUP BY b, kind, label HAVING SUM(n) > 0",
        )
        .bind(service.unwrap_or("*"))
        .bind(category.unwrap_or(""))
        .bind(from)
        .bind(to)
        .bind(kind)
        .bind(step.max(crate::spikes::HOUR_MS))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| {
            Ok(RollupRow {
                hour: r.get(0),
                kind: r.get(1),
                label: r.get(2),
                n: r.get(3),
                score_sum: r.get(4),
            })
        })
        .collect()
    }

    /// Distinct social authors per bucket over [from, to): bucket start → authors. With a
    /// service, from the service's pairs (a covering index range); otherwise from the items.
    pub async fn social_authors(
        &self,
        service: Option<&str>,
        category: Option<&str>,
        from: i64,
        to: i64,
        interval: crate::aggregate::Interval,
    ) -> Result<Vec<(i64, i64)>> {
        let step = interval.millis();
        // Buckets on JST boundaries: shift by nine hours before dividing.
        let q = match (service, category) {
            (Some(_), None) => sqlx::query(
                "SELECT ((published_at + 32400000) / $4) * $4 - 32400000 AS b,
                        COUNT(DISTINCT author)
                 FROM item_services
                 WHERE service = $3 AND published_at >= $1 AND published_at < $2
                   AND kind = 'social' AND author IS NOT NULL
                 GROUP BY b",
            )
            .bind(from)
            .bind(to)
            .bind(service)
            .bind(step),
            (Some(_), Some(_)) => sqlx::query(
                "SELECT ((s.published_at + 32400000) / $5) * $5 - 32400000 AS b,
                        COUNT(DISTINCT s.author)
                 FROM item_services s
                 WHERE s.service = $3 AND s.published_at >= $1 AND s.published_at < $2
                   AND s.kind = 'social' AND s.author IS NOT NULL
                   AND EXISTS (SELECT 1 FROM item_categories c
                               WHERE c.item_id = s.item_id AND c.category = $4)
                 GROUP BY b",
            )
            .bind(from)
            .bind(to)
            .bind(service)
            .bind(category)
            .bind(step),
            _ => sqlx::query(
                "SELECT ((i.published_at + 32400000) / $5) * $5 - 32400000 AS b,
                        COUNT(DISTINCT i.author)
                 FROM items i
                 WHERE i.kind = 'social' AND i.published_at >= $1 AND i.published_at < $2
                   AND i.author IS NOT NULL
                   AND ($3 IS NULL OR EXISTS (SELECT 1 FROM item_services s
                                              WHERE s.item_id = i.id AND s.service = $3))
                   AND ($4 IS NULL OR EXISTS (SELECT 1 FROM item_categories c
                                              WHERE c.item_id = i.id AND c.category = $4))
                 GROUP BY b",
            )
            .bind(from)
            .bind(to)
            .bind(service)
            .bind(category)
            .bind(step),
        };
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| Ok((r.get(0), r.get(1))))
            .collect()
    }

    /// Earliest and latest hour with rollup counts for `service` (every item: None).
    pub async fn rollup_span(&self, service: Option<&str>) -> Result<Option<(i64, i64)>> {
        let r = sqlx::query(
            "SELECT MIN(hour), MAX(hour) FROM rollups WHERE service = $1 AND category = '' AND n > 0",
        )
        .bind(service.unwrap_or("*"))
        .fetch_one(&self.pool)
        .await?;
        let lo: Option<i64> = r.get(0);
        let hi: Option<i64> = r.get(1);
        Ok(lo.zip(hi))
    }

    /// Category counts per hour for a service ('*': every item) over [from, to).
    pub async fn rollup_categories(
        &self,
        service: Option<&str>,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<(i64, String, i64)>> {
        sqlx::query(
            "SELECT ((hour + 32400000) / $4) * $4 - 32400000 AS b, category, CAST(SUM(n) AS BIGINT) FROM rollups
             WHERE service = $1 AND category <> '' AND hour >= $2 AND hour < $3
             GROUP BY b, category HAVING SUM(n) > 0",
        )
        .bind(service.unwrap_or("*"))
        .bind(from)
        .bind(to)
        .bind(step.max(crate::spikes::HOUR_MS))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| Ok((r.get(0), r.get(1), r.get(2))))
        .collect()
    }

    /// Mentions per (service, hour, sentiment label) of every service over [from, to): share
    /// of voice and side-by-side sentiment.
    pub async fn rollup_services(
        &self,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<(String, RollupRow)>> {
        sqlx::query(
            "SELECT service, ((hour + 32400000) / $3) * $3 - 32400000 AS b, kind, label, CAST(SUM(n) AS BIGINT),
                    SUM(score_sum)
             FROM rollups
             WHERE category = '' AND hour >= $1 AND hour < $2 AND service <> '*'
             GROUP BY service, b, kind, label HAVING SUM(n) > 0",
        )
        .bind(from)
        .bind(to)
        .bind(step.max(crate::spikes::HOUR_MS))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| {
            Ok((
                r.get(0),
                RollupRow {
                    hour: r.get(1),
                    kind: r.get(2),
                    label: r.get(3),
                    n: r.get(4),
                    score_sum: r.get(5),
                },
            ))
        })
        .collect()
    }

    /// The items that matter most in a window for a service: most bookmarked, then most
    /// strongly felt, then newest.
    pub async fn top_items(
        &self,
        service: &str,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<(i64, f64, String)>> {
        sqlx::query(
            "SELECT item_id, score, label FROM item_services
             WHERE service = $1 AND published_at >= $2 AND published_at < $3
             ORDER BY COALESCE(bookmarks, 0) DESC, ABS(score) DESC, published_at DESC, item_id
             LIMIT $4",
        )
        .bind(service)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| Ok((r.get(0), r.get(1), r.get(2))))
        .collect()
    }
}
