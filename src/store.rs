//! store: the only module that writes SQL. The database is the source of truth; every write to
//! an item appends to `changes` in the same transaction, so the search index can follow.
use crate::config::{Database, Settings, SourceConfig};
use crate::domain::{Analysis, DateQuality, ItemKind};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor, Row};
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

mod alerts;
mod auth;
mod items_write;
mod status;
mod tokens;
pub use alerts::{AlertFilter, AlertRow, RollupRow};
pub use auth::{AuditEntry, SetupCompletion, UserRow};
pub use status::{ComponentInput, IncidentChange, MaintenanceInput, NewIncident, WebhookDelivery};
pub use tokens::EncodedTokens;

/// A token kept for indexing: normalized text, byte offsets in the original text, position,
/// and — when they differ from the text — base form and reading.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IndexToken {
    #[serde(rename = "t")]
    pub text: String,
    #[serde(rename = "s")]
    pub start: usize,
    #[serde(rename = "e")]
    pub end: usize,
    #[serde(rename = "p")]
    pub position: usize,
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub reading: Option<String>,
}

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
    pub bookmarks: Option<i64>,
    pub tags: Vec<String>,
    /// The source's date, if any (clamped here against first seen).
    pub published_at: Option<DateTime<Utc>>,
    pub content_hash: String,
    pub analysis: Analysis,
    pub tokens: EncodedTokens,
    pub analysis_version: i64,
    /// MinHash signature of the text for near-duplicate grouping (news only).
    pub minhash: Option<[u64; crate::pipeline::MINHASH_LEN]>,
    /// Imported history becomes visible (to spike detection) at its publication time;
    /// crawled items when first seen.
    pub imported: bool,
}

/// Near duplicates: estimated Jaccard similarity at least this, published within this many
/// days of each other.
const DUP_MIN_SIMILARITY: f64 = 0.6;
const DUP_WINDOW_MS: i64 = 3 * 86_400_000;

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
    /// The full analysis with its evidence (JSON of `domain::Analysis`).
    pub analysis: String,
    pub guid: Option<String>,
    pub bookmarks: Option<i64>,
    pub tags: Vec<String>,
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
    pub new_items: i64,
    pub seen_items: i64,
    pub timezone: String,
    pub retention_days: Option<i64>,
    pub failures: i64,
    pub backoff_until: Option<i64>,
    pub charset_decision: Option<String>,
    pub body_hash: Option<String>,
    pub body_changed_at: Option<i64>,
    pub query: Option<String>,
    pub fetch_article: bool,
    pub verify_deletions_days: Option<i64>,
}

/// What a fetch of a source ended with.
#[derive(Debug, Clone, Default)]
pub struct FetchRecord {
    pub status: String,
    pub error: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub new_items: u64,
    pub seen_items: u64,
    pub charset: Option<String>,
    /// Hash of a 200 body; None for 304s and failures.
    pub body_hash: Option<String>,
    /// Consecutive failures after this fetch (0 on success).
    pub failures: i64,
    pub backoff_until: Option<i64>,
}

/// An (item, service) mention as detection replays see it.
#[derive(Debug, Clone, PartialEq)]
pub struct MentionEvent {
    pub item_id: i64,
    pub published: i64,
    /// When kizashi could first see the item (first seen; publication time for imports).
    pub visible: i64,
    pub service: String,
    pub categories: Vec<String>,
    pub negative: bool,
}

/// Which items `delete_items` removes; every given condition must hold.
#[derive(Debug, Clone, Default)]
pub struct DeleteFilter {
    pub url: Option<String>,
    pub source: Option<String>,
    /// epoch ms, half-open [from, to) on the publication time
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// The SQL engine behind the pool. Queries are written once, in SQL both engines accept
/// (`$n` placeholders, `ON CONFLICT`, `RETURNING`, `COALESCE`, `CASE`, `CAST(SUM(…) AS
/// BIGINT)`); this decides only what cannot be shared: connection setup, migrations, how a
/// write transaction begins, and the SQLite-only backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The PostgreSQL advisory lock key that `write_tx` holds ("kizashi" in ASCII, truncated).
const WRITE_LOCK: i64 = 0x006b_697a_6173_6869;

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl Store {
    /// Opens (creating if needed) the SQLite database in `data_dir` and runs migrations.
    pub async fn open(data_dir: &Path) -> Result<Self> {
        Self::connect(&Database::Sqlite(data_dir.join("kizashi.sqlite"))).await
    }

    /// Opens the database the settings name (`database_url`, else SQLite in `data_dir`).
    pub async fn open_settings(settings: &Settings) -> Result<Self> {
        Self::connect(&settings.database).await
    }

    /// Connects to `db` and runs its engine's migrations.
    pub async fn connect(db: &Database) -> Result<Self> {
        sqlx::any::install_default_drivers();
        match db {
            Database::Sqlite(path) => {
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
                let io = |source| StoreError::DataDir {
                    path: dir.unwrap_or(Path::new(".")).display().to_string(),
                    source,
                };
                if let Some(dir) = dir {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let path = std::path::absolute(path).map_err(io)?;
                // The URL only names the file (and creates it); the pragmas the old
                // SqliteConnectOptions set are run on every new connection instead. A page
                // cache of 64 MiB (grown only as used) keeps a write batch's pages: with the
                // default 2 MiB, importing 20,000 items read 260,000 pages back (now 75,000)
                // and took 14.0 s (now 12.8 s).
                let url = SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .to_url_lossy();
                let pool = AnyPoolOptions::new()
                    .max_connections(4)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                                 PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;
                                 PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;
                                 PRAGMA wal_autocheckpoint = 16384;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(AnyConnectOptions::from_url(&url)?)
                    .await?;
                sqlx::migrate!("./src/store/migrations/sqlite")
                    .run(&pool)
                    .await?;
                Ok(Self {
                    pool,
                    dialect: Dialect::Sqlite,
                })
            }
            Database::Postgres(url) => {
                let pool = AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url.expose())
                    .await?;
                sqlx::migrate!("./src/store/migrations/postgres")
                    .run(&pool)
                    .await?;
                Ok(Self {
                    pool,
                    dialect: Dialect::Postgres,
                })
            }
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// A write transaction, one at a time on either engine. SQLite takes the write lock up
    /// front (BEGIN IMMEDIATE), so two writers wait for each other (busy timeout) instead of
    /// failing on a lock upgrade. PostgreSQL takes one transaction-scoped advisory lock,
    /// so these transactions read what the previous one committed, as on SQLite: two
    /// crawls storing the same syndicated story put it in one near-duplicate group, and two
    /// nodes seeding at once do not collide. (Single statements outside `write_tx`, such as
    /// the once-only TOTP and recovery-code updates, are conditional and hold on their own.)
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => {
                let mut tx = self.pool.begin().await?;
                // (The function returns void, which the Any driver cannot read: select 1.)
                sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)")
                    .bind(WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        })
    }

    /// Writes a consistent copy of the live database to `path` (SQLite `VACUUM INTO`: a read
    /// transaction, so writers go on). Refuses to overwrite an existing file.
    pub async fn backup(&self, path: &Path) -> Result<()> {
        if self.dialect == Dialect::Postgres {
            return Err(StoreError::Invalid(
                "backup copies the SQLite file; on PostgreSQL use pg_dump".into(),
            ));
        }
        if path.exists() {
            return Err(StoreError::Corrupt(format!(
                "{} exists; choose a new file",
                path.display()
            )));
        }
        sqlx::query("VACUUM INTO $1")
            .bind(path.display().to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Replaces the SQLite database `db` by the backup at `file` (the server must be
    /// stopped), after checking it is a kizashi database; the search index is rebuilt at the
    /// next start. The replaced database is kept beside it. PostgreSQL restores with
    /// pg_restore.
    pub async fn restore(db: &Database, file: &Path, now: DateTime<Utc>) -> Result<()> {
        let Database::Sqlite(live) = db else {
            return Err(StoreError::Invalid(
                "restore replaces the SQLite file; on PostgreSQL use pg_restore".into(),
            ));
        };
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(file)
            .read_only(true);
        let probe = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let ok = sqlx::query("SELECT COUNT(*) FROM items")
            .fetch_one(&probe)
            .await
            .is_ok()
            && sqlx::query("SELECT COUNT(*) FROM changes")
                .fetch_one(&probe)
                .await
                .is_ok();
        probe.close().await;
        if !ok {
            return Err(StoreError::Corrupt(format!(
                "{} is not a kizashi backup",
                file.display()
            )));
        }
        let data_dir = live.parent().unwrap_or(Path::new("."));
        let io = |e: std::io::Error| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source: e,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let beside = |suffix: &str| {
            let mut name = live.file_name().unwrap_or_default().to_os_string();
            name.push(suffix);
            live.with_file_name(name)
        };
        if live.exists() {
            let aside = beside(&format!(".before-restore-{}", std::process::id()));
            std::fs::rename(live, aside).map_err(io)?;
        }
        for ext in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(beside(ext));
        }
        std::fs::copy(file, live).map_err(io)?;
        // The index reflects the old database: a new generation makes the server rebuild it.
        let store = Store::connect(db).await?;
        // (The restore time: no earlier index can carry that generation.)
        store
            .set_meta("reindex_generation", &ms(now).to_string())
            .await?;
        store.close().await;
        Ok(())
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
            // Sources added to the config later are added too (by name); existing ones are the
            // database's to change.
            for s in &settings.sources {
                insert_source(&mut tx, s, now).await?;
            }
            tx.commit().await?;
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
        // Nodes starting together on one PostgreSQL database: the first seeds, the rest agree.
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('seeded_at', $1) ON CONFLICT (key) DO NOTHING",
        )
        .bind(now.to_rfc3339())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Turns a source's crawling on or off; returns whether it was enabled before.
    pub async fn set_source_enabled(&self, name: &str, enabled: bool) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let before: Option<i64> = sqlx::query("SELECT enabled FROM sources WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.get(0));
        let before = before.ok_or_else(|| StoreError::NotFound(format!("source {name:?}")))?;
        sqlx::query("UPDATE sources SET enabled = $2 WHERE name = $1")
            .bind(name)
            .bind(i64::from(enabled))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(before != 0)
    }

    /// Every service row: (slug, watched, position).
    pub async fn services(&self) -> Result<Vec<(String, bool, i64)>> {
        Ok(
            sqlx::query("SELECT slug, watched, position FROM services ORDER BY position, slug")
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| (r.get(0), r.get::<i64, _>(1) != 0, r.get(2)))
                .collect(),
        )
    }

    /// Watches or unwatches a service and sets its place on the dashboard; returns the row
    /// before (None: the service had no row yet).
    pub async fn set_service(
        &self,
        slug: &str,
        watched: bool,
        position: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<(bool, i64)>> {
        let mut tx = self.write_tx().await?;
        let before = sqlx::query("SELECT watched, position FROM services WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| (r.get::<i64, _>(0) != 0, r.get::<i64, _>(1)));
        sqlx::query(
            "INSERT INTO services (slug, watched, position, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (slug) DO UPDATE SET watched = excluded.watched,
                 position = excluded.position",
        )
        .bind(slug)
        .bind(i64::from(watched))
        .bind(position)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(before)
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
                    last_error, etag, last_modified, new_items, seen_items, timezone,
                    retention_days, failures, backoff_until, charset_decision, body_hash,
                    body_changed_at, query, fetch_article, verify_deletions_days
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
                new_items: r.get(12),
                seen_items: r.get(13),
                timezone: r.get(14),
                retention_days: r.get(15),
                failures: r.get(16),
                backoff_until: r.get(17),
                charset_decision: r.get(18),
                body_hash: r.get(19),
                body_changed_at: r.get(20),
                query: r.get(21),
                fetch_article: r.get::<i64, _>(22) != 0,
                verify_deletions_days: r.get(23),
            })
            .collect())
    }

    /// Item counts per source name.
    pub async fn items_per_source(&self) -> Result<HashMap<String, i64>> {
        Ok(
            sqlx::query("SELECT source, COUNT(*) FROM items GROUP BY source")
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
        )
    }

    /// Deletes matching items and records each deletion in the change sequence, so the index
    /// drops them too. Refuses an empty filter. Returns how many were deleted.
    pub async fn delete_items(&self, f: &DeleteFilter, now: DateTime<Utc>) -> Result<u64> {
        if f.url.is_none() && f.source.is_none() && f.from.is_none() && f.to.is_none() {
            return Ok(0);
        }
        let mut tx = self.write_tx().await?;
        let ids: Vec<i64> = sqlx::query(
            "SELECT id FROM items WHERE ($1 IS NULL OR url = $1) AND ($2 IS NULL OR source = $2)
               AND ($3 IS NULL OR published_at >= $3) AND ($4 IS NULL OR published_at < $4)",
        )
        .bind(&f.url)
        .bind(&f.source)
        .bind(f.from)
        .bind(f.to)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
        for id in &ids {
            rollup(&mut tx, *id, -1).await?;
            for sql in [
                "DELETE FROM item_services WHERE item_id = $1",
                "DELETE FROM item_categories WHERE item_id = $1",
                "DELETE FROM items WHERE id = $1",
            ] {
                sqlx::query(sql).bind(id).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO changes (item_id, at) VALUES ($1, $2)")
                .bind(id)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    /// Applies every source's retention period at `now`; returns the number of items deleted.
    pub async fn apply_retention(&self, now: DateTime<Utc>) -> Result<u64> {
        let mut deleted = 0;
        for s in self.sources().await? {
            if let Some(days) = s.retention_days {
                let filter = DeleteFilter {
                    source: Some(s.name.clone()),
                    to: Some(ms(now) - days * 86_400_000),
                    ..DeleteFilter::default()
                };
                deleted += self.delete_items(&filter, now).await?;
            }
        }
        Ok(deleted)
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
                    new_items = $6, seen_items = $7,
                    charset_decision = COALESCE($8, charset_decision),
                    body_changed_at = CASE WHEN $9 IS NOT NULL AND (body_hash IS NULL OR body_hash <> $9)
                                           THEN $1 ELSE body_changed_at END,
                    body_hash = COALESCE($9, body_hash),
                    failures = $10, backoff_until = $11
             WHERE id = $12",
        )
        .bind(ms(now))
        .bind(&rec.status)
        .bind(&rec.error)
        .bind(&rec.etag)
        .bind(&rec.last_modified)
        .bind(rec.new_items as i64)
        .bind(rec.seen_items as i64)
        .bind(&rec.charset)
        .bind(&rec.body_hash)
        .bind(rec.failures)
        .bind(rec.backoff_until)
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
        self.upsert(items, now, false).await
    }

    /// Stores re-analyzed items: like `upsert_items`, but rewrites the analysis even when the
    /// content and version are unchanged (`reanalyze --since`).
    pub async fn rescore_items(
        &self,
        items: &[NewItem],
        now: DateTime<Utc>,
    ) -> Result<UpsertCounts> {
        self.upsert(items, now, true).await
    }

    async fn upsert(
        &self,
        items: &[NewItem],
        now: DateTime<Utc>,
        rescore: bool,
    ) -> Result<UpsertCounts> {
        let mut counts = UpsertCounts::default();
        let mut tx = self.write_tx().await?;
        // What the batch finds stored, read once inside the write transaction.
        let identities: Vec<&str> = items.iter().map(|i| i.identity.as_str()).collect();
        let mut stored = stored_rows(self.dialect, &mut tx, &identities).await?;
        // New items are written together; an identity met twice in a batch is written (the
        // new items before it first) and then compared like a stored one.
        let mut fresh: Vec<&NewItem> = Vec::new();
        let mut fresh_ids: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for item in items {
            if fresh_ids.contains(item.identity.as_str()) {
                let ids = items_write::insert_new(self.dialect, &mut tx, &fresh, now).await?;
                for (i, id) in fresh.iter().zip(ids) {
                    stored.insert(i.identity.clone(), StoredRow::of(id, i));
                }
                counts.new += fresh.len() as u64;
                fresh.clear();
                fresh_ids.clear();
            }
            match stored.get(&item.identity) {
                None => {
                    fresh_ids.insert(&item.identity);
                    fresh.push(item);
                }
                Some(row)
                    if !rescore
                        && row.content_hash == item.content_hash
                        && row.analysis_version == item.analysis_version =>
                {
                    counts.unchanged += 1;
                }
                Some(row) => {
                    let id = row.id;
                    update_item(&mut tx, id, item, now).await?;
                    stored.insert(item.identity.clone(), StoredRow::of(id, item));
                    counts.updated += 1;
                }
            }
        }
        items_write::insert_new(self.dialect, &mut tx, &fresh, now).await?;
        counts.new += fresh.len() as u64;
        tx.commit().await?;
        Ok(counts)
    }

    /// Stored items to analyze again, after `after_id` in id order: those scored with another
    /// analysis version, or — with `since` — every item published since then.
    pub async fn items_to_reanalyze(
        &self,
        version: i64,
        since: Option<i64>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<(i64, crate::domain::RawItem)>> {
        let rows = sqlx::query(
            "SELECT source, guid, url, title, body, published_at, author, kind, bookmarks, id,
                    date_quality, tags
             FROM items
             WHERE id > $1 AND (analysis_version <> $2 OR ($3 IS NOT NULL AND published_at >= $3))
             ORDER BY id LIMIT $4",
        )
        .bind(after_id)
        .bind(version)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let kind: String = r.get(7);
            let published: i64 = r.get(5);
            out.push((
                r.get::<i64, _>(9),
                crate::domain::RawItem {
                    source: r.get(0),
                    guid: r.get(1),
                    url: r.get(2),
                    title: r.get(3),
                    body: r.get(4),
                    // A date the source never gave stays missing.
                    published_at: (r.get::<String, _>(10) != DateQuality::Missing.as_str())
                        .then(|| chrono::TimeZone::timestamp_millis_opt(&Utc, published).single())
                        .flatten(),
                    author: r.get(6),
                    kind: ItemKind::parse(&kind).map_err(StoreError::Corrupt)?,
                    bookmarks: r.get(8),
                    tags: split_tags(r.get(11)),
                },
            ));
        }
        Ok(out)
    }

    /// Saved searches, by name: (id, name, query string).
    pub async fn saved_searches(&self) -> Result<Vec<(i64, String, String)>> {
        Ok(
            sqlx::query("SELECT id, name, query FROM saved_searches ORDER BY name")
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
        )
    }

    /// Saves (or replaces, by name) a search; returns its id.
    pub async fn save_search(&self, name: &str, query: &str, now: DateTime<Utc>) -> Result<i64> {
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO saved_searches (name, query, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET query = excluded.query
             RETURNING id",
        )
        .bind(name)
        .bind(query)
        .bind(ms(now))
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        tx.commit().await?;
        Ok(id)
    }

    pub async fn delete_saved_search(&self, id: i64) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let n = sqlx::query("DELETE FROM saved_searches WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    /// The largest item id (0 when empty).
    pub async fn max_item_id(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COALESCE(MAX(id), 0) FROM items")
            .fetch_one(&self.pool)
            .await?
            .get(0))
    }

    /// When the oldest change after `seq` was written (epoch ms), if any: the index lag in time.
    pub async fn oldest_change_after(&self, seq: i64) -> Result<Option<i64>> {
        Ok(sqlx::query("SELECT MIN(at) FROM changes WHERE seq > $1")
            .bind(seq)
            .fetch_one(&self.pool)
            .await?
            .get(0))
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

    /// Changes with `from < seq <= to`, oldest first: (seq, item id).
    pub async fn changes_between(&self, from: i64, to: i64) -> Result<Vec<(i64, i64)>> {
        Ok(sqlx::query(
            "SELECT seq, item_id FROM changes WHERE seq > $1 AND seq <= $2 ORDER BY seq",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
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
                        sentiment_label, sentiment_score, tokens, analysis, guid, bookmarks, tags
                 FROM items WHERE id IN ({list})"
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&self.pool).await? {
                let id: i64 = r.get(0);
                let tokens: String = r.get(11);
                let (title, body): (String, String) = (r.get(3), r.get(4));
                let tokens = StoredTokens::decode(&tokens, &title, &body)
                    .map_err(|e| StoreError::Corrupt(format!("tokens of item {id}: {e}")))?;
                out.push(StoredItem {
                    id,
                    source: r.get(1),
                    url: r.get(2),
                    title,
                    body,
                    author: r.get(5),
                    kind: r.get(6),
                    published_at: r.get(7),
                    first_seen_at: r.get(8),
                    sentiment_label: r.get(9),
                    sentiment_score: r.get(10),
                    tokens,
                    analysis: r.get(12),
                    guid: r.get(13),
                    bookmarks: r.get(14),
                    tags: split_tags(r.get(15)),
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

    /// Mentions for time series: items (optionally restricted to `ids`) that mention `service`
    /// (with the pair's sentiment), carry `category` and are of `kind`.
    pub async fn mentions(
        &self,
        service: Option<&str>,
        category: Option<&str>,
        kind: Option<&str>,
        ids: Option<&[i64]>,
    ) -> Result<Vec<crate::aggregate::Mention>> {
        let mut sql = String::from(
            "SELECT i.published_at, i.kind, i.author, COALESCE(s.label, i.sentiment_label),
                    COALESCE(s.score, i.sentiment_score)
             FROM items i ",
        );
        let mut binds: Vec<String> = Vec::new();
        if let Some(svc) = service {
            binds.push(svc.to_string());
            sql.push_str(&format!(
                "JOIN item_services s ON s.item_id = i.id AND s.service = ${} ",
                binds.len()
            ));
        } else {
            sql.push_str("LEFT JOIN item_services s ON 1 = 0 ");
        }
        if let Some(c) = category {
            binds.push(c.to_string());
            sql.push_str(&format!(
                "JOIN item_categories c ON c.item_id = i.id AND c.category = ${} ",
                binds.len()
            ));
        }
        sql.push_str("WHERE 1 = 1 ");
        if let Some(k) = kind {
            binds.push(k.to_string());
            sql.push_str(&format!("AND i.kind = ${} ", binds.len()));
        }
        let chunks: Vec<&[i64]> = match ids {
            Some([]) => return Ok(Vec::new()),
            Some(ids) => ids.chunks(500).collect(),
            None => vec![&[]],
        };
        let mut out = Vec::new();
        for chunk in chunks {
            let mut full = sql.clone();
            if ids.is_some() {
                let list: Vec<String> = (0..chunk.len())
                    .map(|i| format!("${}", binds.len() + i + 1))
                    .collect();
                full.push_str(&format!("AND i.id IN ({})", list.join(",")));
            }
            let mut q = sqlx::query(&full);
            for b in &binds {
                q = q.bind(b);
            }
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&self.pool).await? {
                let kind: String = r.get(1);
                let label: String = r.get(3);
                out.push(crate::aggregate::Mention {
                    at: r.get(0),
                    social: kind == "social",
                    author: r.get(2),
                    label: crate::domain::SentimentLabel::parse(&label)
                        .map_err(StoreError::Corrupt)?,
                    score: r.get(4),
                });
            }
        }
        Ok(out)
    }

    /// Every (item, service) mention published in [from, to), with the item's categories.
    pub async fn mention_events(&self, from: i64, to: i64) -> Result<Vec<MentionEvent>> {
        let rows = sqlx::query(
            "SELECT i.id, i.published_at, s.service, s.label,
                    COALESCE(i.visible_at, i.first_seen_at) FROM items i
             JOIN item_services s ON s.item_id = i.id
             WHERE i.published_at >= $1 AND i.published_at < $2 ORDER BY i.id",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let cats = sqlx::query(
            "SELECT c.item_id, c.category FROM item_categories c JOIN items i ON i.id = c.item_id
             WHERE i.published_at >= $1 AND i.published_at < $2",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let mut by_item: HashMap<i64, Vec<String>> = HashMap::new();
        for r in cats {
            by_item.entry(r.get(0)).or_default().push(r.get(1));
        }
        Ok(rows
            .into_iter()
            .map(|r| {
                let item_id: i64 = r.get(0);
                let label: String = r.get(3);
                MentionEvent {
                    item_id,
                    published: r.get(1),
                    visible: r.get(4),
                    service: r.get(2),
                    categories: by_item.get(&item_id).cloned().unwrap_or_default(),
                    negative: label == "negative",
                }
            })
            .collect())
    }

    /// (identity, url) of a source's items first seen at or after `since` (epoch ms).
    pub async fn recent_items_of(&self, source: &str, since: i64) -> Result<Vec<(String, String)>> {
        Ok(
            sqlx::query(
                "SELECT identity, url FROM items WHERE source = $1 AND first_seen_at >= $2",
            )
            .bind(source)
            .bind(since)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
        )
    }

    /// Whether an item with this identity is stored.
    /// Content hash and analysis version of the stored items among `identities`.
    pub async fn stored_versions(
        &self,
        identities: &[&str],
    ) -> Result<HashMap<String, (String, i64)>> {
        let mut conn = self.pool.acquire().await?;
        Ok(stored_rows(self.dialect, &mut conn, identities)
            .await?
            .into_iter()
            .map(|(identity, row)| (identity, (row.content_hash, row.analysis_version)))
            .collect())
    }

    pub async fn has_identity(&self, identity: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM items WHERE identity = $1")
            .bind(identity)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// The near-duplicate group of the item with this canonical URL.
    pub async fn dup_group_of(&self, url: &str) -> Result<Option<i64>> {
        Ok(sqlx::query("SELECT dup_group FROM items WHERE url = $1")
            .bind(url)
            .fetch_optional(&self.pool)
            .await?
            .and_then(|r| r.get(0)))
    }

    pub async fn item_count(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM items")
            .fetch_one(&self.pool)
            .await?
            .get(0))
    }
}

/// How long a reader of the change sequence waits for a skipped sequence number to appear.
/// On PostgreSQL numbers are taken when a transaction inserts and become visible when it
/// commits, so a slow transaction can commit seq 7 after a quicker one committed seq 8; a
/// number still missing after this long was rolled back (sequences never give one back).
pub const LATE_COMMIT_WAIT: Duration = Duration::from_secs(60);
/// On PostgreSQL, a reader that starts from a stored mark (after a restart) rechecks this
/// many numbers below it: holes it was waiting for when it stopped are not remembered.
pub const RESTART_RESCAN: i64 = 1_000;
/// At most this many holes are waited for; a larger gap is a rolled-back bulk write.
const MAX_HOLES: usize = 100_000;

/// Follows the change sequence from a high-water mark (the search indexer of each node).
/// SQLite has one writer and AUTOINCREMENT, so numbers appear in order and without holes and
/// this is `changes_after(hwm)`. On PostgreSQL every number skipped over is remembered as a
/// hole and looked up again on each read until it appears or `LATE_COMMIT_WAIT` passes;
/// applying a change twice is harmless (the index deletes then adds by id).
#[derive(Debug)]
pub struct ChangeFollower {
    hwm: i64,
    holes: std::collections::BTreeMap<i64, std::time::Instant>,
}

impl ChangeFollower {
    pub fn new(hwm: i64, dialect: Dialect) -> Self {
        let mut holes = std::collections::BTreeMap::new();
        if dialect == Dialect::Postgres && hwm > 0 {
            let now = std::time::Instant::now();
            for seq in (hwm - RESTART_RESCAN).max(1)..=hwm {
                holes.insert(seq, now);
            }
        }
        Self { hwm, holes }
    }

    /// The highest sequence number seen.
    pub fn hwm(&self) -> i64 {
        self.hwm
    }

    /// Sequence numbers below the mark still waited for.
    pub fn holes(&self) -> usize {
        self.holes.len()
    }

    /// The next changes to apply, oldest first: late arrivals in the holes, then up to
    /// `limit` after the mark. Empty when there is nothing new.
    pub async fn next(&mut self, store: &Store, limit: i64) -> Result<Vec<(i64, i64)>> {
        let now = std::time::Instant::now();
        self.holes
            .retain(|_, since| now.duration_since(*since) < LATE_COMMIT_WAIT);
        let mut out = Vec::new();
        if let Some(&first) = self.holes.keys().next() {
            for (seq, id) in store.changes_between(first - 1, self.hwm).await? {
                if self.holes.remove(&seq).is_some() {
                    out.push((seq, id));
                }
            }
        }
        let fresh = store.changes_after(self.hwm, limit).await?;
        for &(seq, id) in &fresh {
            for missing in self.hwm + 1..seq {
                if self.holes.len() >= MAX_HOLES {
                    break;
                }
                self.holes.insert(missing, now);
            }
            self.hwm = seq;
            out.push((seq, id));
        }
        Ok(out)
    }
}

/// What an upsert compares a batch item with.
struct StoredRow {
    id: i64,
    content_hash: String,
    analysis_version: i64,
}

impl StoredRow {
    /// The row `item` leaves once written with `id`.
    fn of(id: i64, item: &NewItem) -> Self {
        Self {
            id,
            content_hash: item.content_hash.clone(),
            analysis_version: item.analysis_version,
        }
    }
}

/// The stored rows of `identities` (inside a write transaction, or on their own).
async fn stored_rows(
    dialect: Dialect,
    tx: &mut sqlx::AnyConnection,
    identities: &[&str],
) -> Result<HashMap<String, StoredRow>> {
    let mut out = HashMap::new();
    for chunk in identities.chunks(500) {
        let sql = format!(
            "SELECT identity, id, content_hash, analysis_version FROM items
             WHERE identity IN ({})",
            items_write::placeholders(dialect, chunk.len(), 1)
        );
        let mut q = sqlx::query(&sql).persistent(false);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *tx).await? {
            out.insert(
                r.get(0),
                StoredRow {
                    id: r.get(1),
                    content_hash: r.get(2),
                    analysis_version: r.get(3),
                },
            );
        }
    }
    Ok(out)
}

/// Rewrites a stored item with new content or analysis: its rollup contribution comes out
/// and goes back in, its service and category rows are replaced, a change is recorded.
async fn update_item(
    tx: &mut sqlx::AnyConnection,
    id: i64,
    item: &NewItem,
    now: DateTime<Utc>,
) -> Result<()> {
    let analysis_json =
        serde_json::to_string(&item.analysis).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    // first_seen_at never changes; the publication date is re-clamped to it.
    let first_seen: i64 = sqlx::query("SELECT first_seen_at FROM items WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
    let (published, quality) = clamp_date(item.published_at, first_seen);
    rollup(tx, id, -1).await?;
    sqlx::query(
        "UPDATE items SET url = $1, title = $2, body = $3, author = $4, kind = $5,
            published_at = $6, date_quality = $7, content_hash = $8,
            sentiment_label = $9, sentiment_score = $10, analysis = $11,
            tokens = $12, analysis_version = $13, updated_at = $14, guid = $15,
            bookmarks = $17, tags = $18
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
    .bind(item.tokens.stored())
    .bind(item.analysis_version)
    .bind(ms(now))
    .bind(&item.guid)
    .bind(id)
    .bind(item.bookmarks)
    .bind(item.tags.join("\n"))
    .execute(&mut *tx)
    .await?;
    for table in ["item_services", "item_categories"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE item_id = $1"))
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    for t in &item.analysis.targets {
        sqlx::query(
            "INSERT INTO item_services (item_id, service, label, score, published_at, kind,
                author, bookmarks)
             SELECT $1, $2, $3, $4, published_at, kind, author, bookmarks FROM items
             WHERE id = $1",
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
    rollup(tx, id, 1).await?;
    sqlx::query("INSERT INTO changes (item_id, at) VALUES ($1, $2)")
        .bind(id)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Stored items sharing a band key with a signature, in the time window. The band indexes
/// are partial (news items only: posts carry no signature); `mh_bN = ?` implies the indexes'
/// NOT NULL condition, so each term is an index lookup. Public for the query-plan test.
#[doc(hidden)]
pub const NEAR_DUPLICATE_SQL: &str = "SELECT minhash, dup_group FROM items
    WHERE (mh_b0 = $1 OR mh_b1 = $2 OR mh_b2 = $3 OR mh_b3 = $4 OR mh_b4 = $5 OR mh_b5 = $6
           OR mh_b6 = $7 OR mh_b7 = $8)
      AND published_at >= $9 AND published_at <= $10
    ORDER BY id LIMIT 500";

/// The dup_group of a stored item whose MinHash signature is at least `DUP_MIN_SIMILARITY`
/// similar and whose publication lies within `DUP_WINDOW_MS` of `published`: candidates by
/// LSH band key, then the signatures compared.
async fn near_duplicate(
    tx: &mut sqlx::AnyConnection,
    sig: &[u64; crate::pipeline::MINHASH_LEN],
    published: i64,
) -> Result<Option<i64>> {
    let b = crate::pipeline::minhash_bands(sig);
    let mut q = sqlx::query(NEAR_DUPLICATE_SQL);
    for key in b {
        q = q.bind(key);
    }
    let rows = q
        .bind(published - DUP_WINDOW_MS)
        .bind(published + DUP_WINDOW_MS)
        .fetch_all(&mut *tx)
        .await?;
    Ok(rows.into_iter().find_map(|r| {
        let other: Option<String> = r.get(0);
        let other: Vec<u64> = other?.split(',').filter_map(|v| v.parse().ok()).collect();
        (crate::pipeline::minhash_similarity(sig, &other) >= DUP_MIN_SIMILARITY).then(|| r.get(1))
    }))
}

async fn insert_source(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    s: &SourceConfig,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO sources (name, kind, url, schedule, item_kind, enabled, created_at, timezone,
                              retention_days, query, fetch_article, verify_deletions_days)
         VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8, $9, $10, $11) ON CONFLICT (name) DO NOTHING",
    )
    .bind(s.name.as_str())
    .bind(s.kind.as_str())
    .bind(s.url.as_str())
    .bind(&s.schedule)
    .bind(s.item_kind.as_str())
    .bind(ms(now))
    .bind(s.timezone.name())
    .bind(s.retention_days.map(i64::from))
    .bind(&s.query)
    .bind(i64::from(s.fetch_article))
    .bind(s.verify_deletions_days.map(i64::from))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn split_tags(s: String) -> Vec<String> {
    s.lines()
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

/// An item's chart time: the source's date, clamped to first seen when it lies in the future;
/// first seen when the source gave none.
/// Adds (`sign` 1) or removes (−1) one item's contribution to the hourly rollups, inside the
/// transaction that writes the item: the rollups always equal a recount of the items.
async fn rollup(tx: &mut sqlx::AnyConnection, id: i64, sign: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO rollups (hour, service, category, kind, label, n, score_sum)
         SELECT hour, service, category, kind, label, $2, $2 * score FROM (
            SELECT (i.published_at / 3600000) * 3600000 AS hour, s.service AS service,
                   '' AS category, i.kind AS kind, s.label AS label, s.score AS score
            FROM items i JOIN item_services s ON s.item_id = i.id WHERE i.id = $1
            UNION ALL
            SELECT (i.published_at / 3600000) * 3600000, s.service, c.category, i.kind, s.label,
                   s.score
            FROM items i JOIN item_services s ON s.item_id = i.id
                 JOIN item_categories c ON c.item_id = i.id WHERE i.id = $1
            UNION ALL
            SELECT (i.published_at / 3600000) * 3600000, '*', '', i.kind, i.sentiment_label,
                   i.sentiment_score
            FROM items i WHERE i.id = $1
            UNION ALL
            SELECT (i.published_at / 3600000) * 3600000, '*', c.category, i.kind,
                   i.sentiment_label, i.sentiment_score
            FROM items i JOIN item_categories c ON c.item_id = i.id WHERE i.id = $1
         ) t WHERE true
         ON CONFLICT (service, category, hour, kind, label)
         DO UPDATE SET n = rollups.n + excluded.n, score_sum = rollups.score_sum + excluded.score_sum",
    )
    .bind(id)
    .bind(sign)
    .execute(&mut *tx)
    .await?;
    // Rows that fall to zero stay: they add nothing to any sum.
    Ok(())
}

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
