//! store: the only module that writes SQL. The database is the source of truth; every write to
//! an item appends to `changes` in the same transaction, so the search index can follow.
use crate::config::{Settings, SourceConfig};
use crate::domain::{Analysis, DateQuality, ItemKind};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

mod auth;
mod status;
pub use auth::{AuditEntry, SetupCompletion, UserRow};
pub use status::{ComponentInput, IncidentChange, MaintenanceInput, NewIncident, WebhookDelivery};

/// Tokens kept for indexing: (normalized text, byte start, byte end, position).
pub type IndexToken = (String, usize, usize, usize);

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StoredTokens {
    pub title: Vec<IndexToken>,
    pub body: Vec<IndexToken>,
}

/// An analyzed item, ready to store.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub identity: String,
    pub source: String,
    pub guid: Option<String>,
    pub url: String,
    pub title: String,
    pub body: String,
    pub author: Option<String>,
    pub kind: ItemKind,
    /// The source's date, if any (clamped here against first seen).
    pub published_at: Option<DateTime<Utc>>,
    pub content_hash: String,
    pub analysis: Analysis,
    pub tokens: StoredTokens,
    pub analysis_version: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UpsertCounts {
    pub new: u64,
    pub updated: u64,
    pub unchanged: u64,
}

impl std::ops::AddAssign for UpsertCounts {
    fn add_assign(&mut self, o: Self) {
        self.new += o.new;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
    }
}

/// An item as stored.
#[derive(Debug, Clone)]
pub struct StoredItem {
    pub id: i64,
    pub source: String,
    pub url: String,
    pub title: String,
    pub body: String,
    pub author: Option<String>,
    pub kind: String,
    pub published_at: i64,
    pub first_seen_at: i64,
    pub sentiment_label: String,
    pub sentiment_score: f64,
    pub services: Vec<String>,
    pub categories: Vec<String>,
    pub tokens: StoredTokens,
}

#[derive(Debug, Clone)]
pub struct SourceRow {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub url: String,
    pub schedule: String,
    pub item_kind: String,
    pub enabled: bool,
    pub last_fetch_at: Option<i64>,
    pub last_status: Option<String>,
    pub last_error: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// What a fetch of a source ended with.
#[derive(Debug, Clone)]
pub struct FetchRecord {
    pub status: String,
    pub error: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub new_items: u64,
    pub seen_items: u64,
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl Store {
    /// Opens (creating if needed) the SQLite database in `data_dir` and runs migrations.
    pub async fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(data_dir.join("kizashi.sqlite"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }

    /// A write transaction. SQLite takes the write lock up front (BEGIN IMMEDIATE), so two
    /// writers wait for each other (busy timeout) instead of failing on a lock upgrade.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.get(0)))
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Seeds sources and watched services from the config on the first start only; afterwards
    /// the database is authoritative. Returns whether seeding happened.
    pub async fn seed_once(&self, settings: &Settings, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let done: Option<String> = sqlx::query("SELECT value FROM meta WHERE key = 'seeded_at'")
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.get(0));
        if done.is_some() {
            return Ok(false);
        }
        for s in &settings.sources {
            insert_source(&mut tx, s, now).await?;
        }
        for (position, slug) in settings.services.iter().enumerate() {
            sqlx::query(
                "INSERT INTO services (slug, watched, position, created_at) VALUES ($1, 1, $2, $3)
                 ON CONFLICT (slug) DO NOTHING",
            )
            .bind(slug.as_str())
            .bind(position as i64)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("INSERT INTO meta (key, value) VALUES ('seeded_at', $1)")
            .bind(now.to_rfc3339())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn watched_services(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query("SELECT slug FROM services WHERE watched = 1 ORDER BY position, slug")
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| r.get(0))
                .collect(),
        )
    }

    pub async fn sources(&self) -> Result<Vec<SourceRow>> {
        let rows = sqlx::query(
            "SELECT id, name, kind, url, schedule, item_kind, enabled, last_fetch_at, last_status,
                    last_error, etag, last_modified
             FROM sources ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| SourceRow {
                id: r.get(0),
                name: r.get(1),
                kind: r.get(2),
                url: r.get(3),
                schedule: r.get(4),
                item_kind: r.get(5),
                enabled: r.get::<i64, _>(6) != 0,
                last_fetch_at: r.get(7),
                last_status: r.get(8),
                last_error: r.get(9),
                etag: r.get(10),
                last_modified: r.get(11),
            })
            .collect())
    }

    pub async fn record_fetch(
        &self,
        source_id: i64,
        rec: &FetchRecord,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE sources SET last_fetch_at = $1, last_status = $2, last_error = $3,
                    etag = COALESCE($4, etag), last_modified = COALESCE($5, last_modified),
                    new_items = $6, seen_items = $7
             WHERE id = $8",
        )
        .bind(ms(now))
        .bind(&rec.status)
        .bind(&rec.error)
        .bind(&rec.etag)
        .bind(&rec.last_modified)
        .bind(rec.new_items as i64)
        .bind(rec.seen_items as i64)
        .bind(source_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores items in one transaction: new identities are inserted, changed content updates
    /// in place, identical content is left alone. Each insert or update appends a change.
    pub async fn upsert_items(
        &self,
        items: &[NewItem],
        now: DateTime<Utc>,
    ) -> Result<UpsertCounts> {
        let mut counts = UpsertCounts::default();
        let mut tx = self.write_tx().await?;
        for item in items {
            let existing = sqlx::query(
                "SELECT id, content_hash, analysis_version FROM items WHERE identity = $1",
            )
            .bind(&item.identity)
            .fetch_optional(&mut *tx)
            .await?;
            let analysis_json = serde_json::to_string(&item.analysis)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let tokens_json = serde_json::to_string(&item.tokens)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let id: i64 = match existing {
                Some(row)
                    if row.get::<String, _>(1) == item.content_hash
                        && row.get::<i64, _>(2) == item.analysis_version =>
                {
                    counts.unchanged += 1;
                    continue;
                }
                Some(row) => {
                    let id: i64 = row.get(0);
                    // first_seen_at never changes; the publication date is re-clamped to it.
                    let first_seen: i64 =
                        sqlx::query("SELECT first_seen_at FROM items WHERE id = $1")
                            .bind(id)
                            .fetch_one(&mut *tx)
                            .await?
                            .get(0);
                    let (published, quality) = clamp_date(item.published_at, first_seen);
                    sqlx::query(
                        "UPDATE items SET url = $1, title = $2, body = $3, author = $4, kind = $5,
                            published_at = $6, date_quality = $7, content_hash = $8,
                            sentiment_label = $9, sentiment_score = $10, analysis = $11,
                            tokens = $12, analysis_version = $13, updated_at = $14, guid = $15
                         WHERE id = $16",
                    )
                    .bind(&item.url)
                    .bind(&item.title)
                    .bind(&item.body)
                    .bind(&item.author)
                    .bind(item.kind.as_str())
                    .bind(published)
                    .bind(quality.as_str())
                    .bind(&item.content_hash)
                    .bind(item.analysis.sentiment.label.as_str())
                    .bind(item.analysis.sentiment.score)
                    .bind(&analysis_json)
                    .bind(&tokens_json)
                    .bind(item.analysis_version)
                    .bind(ms(now))
                    .bind(&item.guid)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM item_services WHERE item_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM item_categories WHERE item_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    counts.updated += 1;
                    id
                }
                None => {
                    let (published, quality) = clamp_date(item.published_at, ms(now));
                    let id: i64 = sqlx::query(
                        "INSERT INTO items (identity, source, guid, url, title, body, author, kind,
                            published_at, first_seen_at, date_quality, content_hash,
                            sentiment_label, sentiment_score, analysis, tokens, analysis_version,
                            updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                            $16, $17, $18)
                         RETURNING id",
                    )
                    .bind(&item.identity)
                    .bind(&item.source)
                    .bind(&item.guid)
                    .bind(&item.url)
                    .bind(&item.title)
                    .bind(&item.body)
                    .bind(&item.author)
                    .bind(item.kind.as_str())
                    .bind(published)
                    .bind(ms(now))
                    .bind(quality.as_str())
                    .bind(&item.content_hash)
                    .bind(item.analysis.sentiment.label.as_str())
                    .bind(item.analysis.sentiment.score)
                    .bind(&analysis_json)
                    .bind(&tokens_json)
                    .bind(item.analysis_version)
                    .bind(ms(now))
                    .fetch_one(&mut *tx)
                    .await?
                    .get(0);
                    counts.new += 1;
                    id
                }
            };
            for t in &item.analysis.targets {
                sqlx::query(
                    "INSERT INTO item_services (item_id, service, label, score) VALUES ($1, $2, $3, $4)",
                )
                .bind(id)
                .bind(&t.service)
                .bind(t.label.as_str())
                .bind(t.score)
                .execute(&mut *tx)
                .await?;
            }
            for c in &item.analysis.categories {
                sqlx::query("INSERT INTO item_categories (item_id, category) VALUES ($1, $2)")
                    .bind(id)
                    .bind(&c.name)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("INSERT INTO changes (item_id, at) VALUES ($1, $2)")
                .bind(id)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(counts)
    }

    /// The newest change sequence number (0 when nothing was ever written).
    pub async fn last_change(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM changes")
            .fetch_one(&self.pool)
            .await?
            .get(0))
    }

    /// Changes after `seq`, oldest first: (seq, item id).
    pub async fn changes_after(&self, seq: i64, limit: i64) -> Result<Vec<(i64, i64)>> {
        Ok(
            sqlx::query("SELECT seq, item_id FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(seq)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
        )
    }

    /// Item ids in ascending order after `after_id`, for a full rebuild.
    pub async fn item_ids_after(&self, after_id: i64, limit: i64) -> Result<Vec<i64>> {
        Ok(
            sqlx::query("SELECT id FROM items WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| r.get(0))
                .collect(),
        )
    }

    /// Loads items by id (missing ids are skipped), in the order asked.
    pub async fn items(&self, ids: &[i64]) -> Result<Vec<StoredItem>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(200) {
            let list = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(",");
            let services = self
                .labels_of("item_services", "service", &list, chunk)
                .await?;
            let categories = self
                .labels_of("item_categories", "category", &list, chunk)
                .await?;
            let sql = format!(
                "SELECT id, source, url, title, body, author, kind, published_at, first_seen_at,
                        sentiment_label, sentiment_score, tokens
                 FROM items WHERE id IN ({list})"
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&self.pool).await? {
                let id: i64 = r.get(0);
                let tokens: String = r.get(11);
                out.push(StoredItem {
                    id,
                    source: r.get(1),
                    url: r.get(2),
                    title: r.get(3),
                    body: r.get(4),
                    author: r.get(5),
                    kind: r.get(6),
                    published_at: r.get(7),
                    first_seen_at: r.get(8),
                    sentiment_label: r.get(9),
                    sentiment_score: r.get(10),
                    tokens: serde_json::from_str(&tokens)
                        .map_err(|e| StoreError::Corrupt(format!("tokens of item {id}: {e}")))?,
                    services: services.get(&id).cloned().unwrap_or_default(),
                    categories: categories.get(&id).cloned().unwrap_or_default(),
                });
            }
        }
        let pos: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        out.sort_by_key(|it| pos.get(&it.id).copied().unwrap_or(usize::MAX));
        Ok(out)
    }

    /// Sorted labels per item from a pair table (`item_services`, `item_categories`).
    async fn labels_of(
        &self,
        table: &str,
        column: &str,
        placeholders: &str,
        ids: &[i64],
    ) -> Result<HashMap<i64, Vec<String>>> {
        let sql = format!(
            "SELECT item_id, {column} FROM {table} WHERE item_id IN ({placeholders}) ORDER BY item_id, {column}"
        );
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(id);
        }
        let mut map: HashMap<i64, Vec<String>> = HashMap::new();
        for r in q.fetch_all(&self.pool).await? {
            map.entry(r.get(0)).or_default().push(r.get(1));
        }
        Ok(map)
    }

    /// Publication times (epoch ms) of items that mention `service`, in [from, to).
    pub async fn service_mention_times(
        &self,
        service: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<i64>> {
        Ok(sqlx::query(
            "SELECT i.published_at FROM items i JOIN item_services s ON s.item_id = i.id
             WHERE s.service = $1 AND i.published_at >= $2 AND i.published_at < $3",
        )
        .bind(service)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect())
    }

    /// Earliest and latest publication time of items mentioning `service` (any service: None).
    pub async fn mention_span(&self, service: Option<&str>) -> Result<Option<(i64, i64)>> {
        let row = match service {
            Some(s) => {
                sqlx::query(
                    "SELECT MIN(i.published_at), MAX(i.published_at) FROM items i
                 JOIN item_services s ON s.item_id = i.id WHERE s.service = $1",
                )
                .bind(s)
                .fetch_one(&self.pool)
                .await?
            }
            None => {
                sqlx::query("SELECT MIN(published_at), MAX(published_at) FROM items")
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        let (a, b): (Option<i64>, Option<i64>) = (row.get(0), row.get(1));
        Ok(a.zip(b))
    }

    pub async fn item_count(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM items")
            .fetch_one(&self.pool)
            .await?
            .get(0))
    }
}

async fn insert_source(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    s: &SourceConfig,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO sources (name, kind, url, schedule, item_kind, enabled, created_at)
         VALUES ($1, $2, $3, $4, $5, 1, $6) ON CONFLICT (name) DO NOTHING",
    )
    .bind(s.name.as_str())
    .bind(s.kind.as_str())
    .bind(s.url.as_str())
    .bind(&s.schedule)
    .bind(s.item_kind.as_str())
    .bind(ms(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An item's chart time: the source's date, clamped to first seen when it lies in the future;
/// first seen when the source gave none.
pub fn clamp_date(published: Option<DateTime<Utc>>, first_seen_ms: i64) -> (i64, DateQuality) {
    match published {
        None => (first_seen_ms, DateQuality::Missing),
        Some(p) if ms(p) > first_seen_ms => (first_seen_ms, DateQuality::ClampedFuture),
        Some(p) => (ms(p), DateQuality::Exact),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn future_dates_clamp_to_first_seen() {
        let seen = Utc.with_ymd_and_hms(2019, 7, 3, 0, 0, 0).unwrap();
        let past = seen - chrono::Duration::hours(1);
        let future = seen + chrono::Duration::days(3);
        assert_eq!(
            clamp_date(Some(past), ms(seen)),
            (ms(past), DateQuality::Exact)
        );
        assert_eq!(
            clamp_date(Some(future), ms(seen)),
            (ms(seen), DateQuality::ClampedFuture)
        );
        assert_eq!(clamp_date(None, ms(seen)), (ms(seen), DateQuality::Missing));
    }
}
