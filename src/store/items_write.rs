//! Writing new items in bulk: one transaction writes a batch with a handful of multi-row
//! statements per table instead of half a dozen statements per item (each statement is a
//! round trip to the database thread or server). Same rows as writing items one by one:
//! near-duplicate groups are found against stored items and against earlier items of the
//! batch, and the hourly rollups receive the batch's contributions summed per row.
use super::{ms, Dialect, NewItem, Result};
use crate::pipeline::{minhash_bands, minhash_similarity, MINHASH_BANDS};
use std::collections::HashMap;

/// Rows per multi-row statement: the widest (items, 32 columns) stays far below SQLite's 32,766
/// and PostgreSQL's 65,535 bind parameters.
const ROWS_PER_STATEMENT: usize = 200;

/// A new item's near-duplicate group, before the batch has ids.
#[derive(Clone, Copy)]
enum Group {
    /// A stored group.
    Stored(i64),
    /// The group of an earlier item of this batch (by its index in the batch).
    Batch(usize),
}

/// One new item with what is computed for it before the insert.
struct Pending<'a> {
    item: &'a NewItem,
    published: i64,
    quality: &'static str,
    visible: i64,
    group: Option<Group>,
    bands: Option<[i64; MINHASH_BANDS]>,
}

/// `n` unused item ids. SQLite: after the largest id, what it would pick itself (the write
/// transaction holds the database's write lock). PostgreSQL: from the id sequence.
async fn reserve_ids(dialect: Dialect, tx: &mut sqlx::AnyConnection, n: usize) -> Result<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    match dialect {
        Dialect::Sqlite => {
            let max: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM items")
                .fetch_one(&mut *tx)
                .await?;
            Ok((1..=n as i64).map(|i| max + i).collect())
        }
        Dialect::Postgres => Ok(sqlx::query_scalar(
            "SELECT nextval(pg_get_serial_sequence('items', 'id')) FROM generate_series(1, $1)",
        )
        .bind(n as i64)
        .fetch_all(&mut *tx)
        .await?),
    }
}

/// Inserts items that are not stored yet (identities unique within `items` and absent from
/// the database), in order; returns their ids in the same order.
pub(super) async fn insert_new(
    dialect: Dialect,
    tx: &mut sqlx::AnyConnection,
    items: &[&NewItem],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<i64>> {
    let now_ms = ms(now);
    let mut rows: Vec<Pending> = Vec::with_capacity(items.len());
    for item in items {
        let (published, quality) = super::clamp_date(item.published_at, now_ms);
        let bands = item.minhash.as_ref().map(minhash_bands);
        let group = match (&item.minhash, &bands) {
            (Some(sig), Some(b)) => match super::near_duplicate(tx, sig, published).await? {
                Some(g) => Some(Group::Stored(g)),
                None => batch_duplicate(&rows, sig, b, published),
            },
            _ => None,
        };
        rows.push(Pending {
            item,
            published,
            quality: quality.as_str(),
            visible: if item.imported { published } else { now_ms },
            group,
            bands,
        });
    }

    // Ids are taken before the insert, so every row is written once with its group (leaders
    // name their group after themselves); an UPDATE afterwards rewrote each whole row.
    let ids = reserve_ids(dialect, tx, rows.len()).await?;
    insert_items(dialect, tx, &rows, &ids, now_ms).await?;
    insert_services(dialect, tx, &rows, &ids).await?;
    insert_categories(dialect, tx, &rows, &ids).await?;
    add_rollups(dialect, tx, &rows).await?;
    insert_rows(
        dialect,
        tx,
        ("INSERT INTO changes (item_id, at)", ""),
        2,
        ROWS_PER_STATEMENT * 4,
        &ids,
        |q, id| q.bind(*id).bind(now_ms),
    )
    .await?;
    Ok(ids)
}

/// A query whose arguments are bound one row at a time.
type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Runs `head VALUES (…),(…) tail` over `rows`, `per_statement` rows a statement, each row's
/// `width` values bound by `bind`. Statements sized by the batch are not cached: they would
/// evict the steady ones.
async fn insert_rows<T: Sync>(
    dialect: Dialect,
    tx: &mut sqlx::AnyConnection,
    (head, tail): (&str, &str),
    width: usize,
    per_statement: usize,
    rows: &[T],
    bind: impl for<'q> Fn(AnyQuery<'q>, &'q T) -> AnyQuery<'q> + Sync,
) -> Result<()> {
    for chunk in rows.chunks(per_statement) {
        let sql = format!(
            "{head} VALUES {} {tail}",
            placeholders(dialect, chunk.len(), width)
        );
        let q = chunk
            .iter()
            .fold(sqlx::query(&sql).persistent(false), &bind);
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

/// The group of an earlier item of the batch whose signature is similar enough (the earliest,
/// as the stored lookup takes the lowest id).
fn batch_duplicate(
    rows: &[Pending],
    sig: &[u64; crate::pipeline::MINHASH_LEN],
    bands: &[i64; MINHASH_BANDS],
    published: i64,
) -> Option<Group> {
    rows.iter().enumerate().find_map(|(j, r)| {
        let other = r.item.minhash.as_ref()?;
        let shares_band = r.bands.as_ref()?.iter().zip(bands).any(|(a, b)| a == b);
        let close = (r.published - published).abs() <= super::DUP_WINDOW_MS;
        (shares_band && close && minhash_similarity(sig, other) >= super::DUP_MIN_SIMILARITY)
            .then_some(r.group.unwrap_or(Group::Batch(j)))
    })
}

/// The group row `j` joins: a stored group, the group of an earlier item of the batch (always
/// a leader), or its own id.
fn group_id(rows: &[Pending], ids: &[i64], j: usize) -> i64 {
    match rows[j].group {
        Some(Group::Stored(g)) => g,
        Some(Group::Batch(k)) => ids[k],
        None => ids[j],
    }
}

/// `count` rows of `width` numbered parameters, e.g. `($1,$2),($3,$4)`; with width 1 a plain
/// list `$1,$2` (for IN).
///
/// SQLite gets anonymous `?` parameters: the driver looks each numbered one up by name, a
/// scan of all of them, which made a 6,000-parameter statement cost more than its insert.
pub(super) fn placeholders(dialect: Dialect, count: usize, width: usize) -> String {
    let group = width;
    let mut s = String::with_capacity(count * width * 5);
    for row in 0..count {
        if row > 0 {
            s.push(',');
        }
        if group > 1 {
            s.push('(');
        }
        for col in 0..width {
            if col > 0 {
                s.push(',');
            }
            match dialect {
                Dialect::Sqlite => s.push('?'),
                Dialect::Postgres => {
                    s.push('$');
                    s.push_str(&(row * width + col + 1).to_string());
                }
            }
        }
        if group > 1 {
            s.push(')');
        }
    }
    s
}

async fn insert_items(
    dialect: Dialect,
    tx: &mut sqlx::AnyConnection,
    rows: &[Pending<'_>],
    ids: &[i64],
    now_ms: i64,
) -> Result<()> {
    // (row, id, group, analysis as JSON, MinHash signature as text)
    let mut full = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let analysis = serde_json::to_string(&r.item.analysis)
            .map_err(|e| super::StoreError::Corrupt(e.to_string()))?;
        let signature = r.item.minhash.map(|sig| {
            sig.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        });
        full.push((r, ids[i], group_id(rows, ids, i), analysis, signature));
    }
    insert_rows(
        dialect,
        tx,
        (
            "INSERT INTO items (id, identity, source, guid, url, title, body, author, kind,
                published_at, first_seen_at, date_quality, content_hash,
                sentiment_label, sentiment_score, analysis, tokens, analysis_version,
                updated_at, minhash, mh_b0, mh_b1, mh_b2, mh_b3, mh_b4, mh_b5, mh_b6,
                mh_b7, dup_group, bookmarks, tags, visible_at)",
            "",
        ),
        32,
        ROWS_PER_STATEMENT,
        &full,
        |q, (r, id, group, analysis, signature)| {
            let item = r.item;
            let band = |i: usize| r.bands.map(|b| b[i]);
            q.bind(*id)
                .bind(&item.identity)
                .bind(&item.source)
                .bind(&item.guid)
                .bind(&item.url)
                .bind(&item.title)
                .bind(&item.body)
                .bind(&item.author)
                .bind(item.kind.as_str())
                .bind(r.published)
                .bind(now_ms)
                .bind(r.quality)
                .bind(&item.content_hash)
                .bind(item.analysis.sentiment.label.as_str())
                .bind(item.analysis.sentiment.score)
                .bind(analysis.as_str())
                .bind(item.tokens.stored())
                .bind(item.analysis_version)
                .bind(now_ms)
                .bind(signature.as_deref())
                .bind(band(0))
                .bind(band(1))
                .bind(band(2))
                .bind(band(3))
                .bind(band(4))
                .bind(band(5))
                .bind(band(6))
                .bind(band(7))
                .bind(*group)
                .bind(item.bookmarks)
                .bind(item.tags.join("\n"))
                .bind(r.visible)
        },
    )
    .await
}

async fn insert_services(
    dialect: Dialect,
    tx: &mut sqlx::AnyConnection,
    rows: &[Pending<'_>],
    ids: &[i64],
) -> Result<()> {
    let pairs: Vec<(usize, &crate::domain::TargetSentiment)> = rows
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.item.analysis.targets.iter().map(move |t| (i, t)))
        .collect();
    insert_rows(
        dialect,
        tx,
        (
            "INSERT INTO item_services (item_id, service, label, score, published_at, kind,
                author, bookmarks)",
            "",
        ),
        8,
        ROWS_PER_STATEMENT * 2,
        &pairs,
        |q, (i, t)| {
            let r = &rows[*i];
            q.bind(ids[*i])
                .bind(&t.service)
                .bind(t.label.as_str())
                .bind(t.score)
                .bind(r.published)
                .bind(r.item.kind.as_str())
                .bind(&r.item.author)
                .bind(r.item.bookmarks)
        },
    )
    .await
}

async fn insert_categories(
    dialect: Dialect,
    tx: &mut sqlx::AnyConnection,
    rows: &[Pending<'_>],
    ids: &[i64],
) -> Result<()> {
    let pairs: Vec<(i64, &str)> = rows
        .iter()
        .zip(ids)
        .flat_map(|(r, id)| {
            r.item
                .analysis
                .categories
                .iter()
                .map(move |c| (*id, c.name.as_str()))
        })
        .collect();
    insert_rows(
        dialect,
        tx,
        ("INSERT INTO item_categories (item_id, category)", ""),
        2,
        ROWS_PER_STATEMENT * 4,
        &pairs,
        |q, (id, category)| q.bind(*id).bind(*category),
    )
    .await
}

/// The batch's contributions to the hourly rollups, summed per row (the same rows
/// `super::rollup` derives with SQL for one item), added with one upsert per chunk.
async fn add_rollups(
    dialect: Dialect,
    tx: &mut sqlx::AnyConnection,
    rows: &[Pending<'_>],
) -> Result<()> {
    type Key<'a> = (i64, &'a str, &'a str, &'a str, &'a str);
    let mut sums: HashMap<Key, (i64, f64)> = HashMap::new();
    fn add<'a>(sums: &mut HashMap<Key<'a>, (i64, f64)>, key: Key<'a>, score: f64) {
        let e = sums.entry(key).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += score;
    }
    for r in rows {
        let a = &r.item.analysis;
        let hour = (r.published / 3_600_000) * 3_600_000;
        let kind = r.item.kind.as_str();
        for t in &a.targets {
            add(
                &mut sums,
                (hour, &t.service, "", kind, t.label.as_str()),
                t.score,
            );
            for c in &a.categories {
                add(
                    &mut sums,
                    (hour, &t.service, &c.name, kind, t.label.as_str()),
                    t.score,
                );
            }
        }
        let label = a.sentiment.label.as_str();
        add(&mut sums, (hour, "*", "", kind, label), a.sentiment.score);
        for c in &a.categories {
            add(
                &mut sums,
                (hour, "*", &c.name, kind, label),
                a.sentiment.score,
            );
        }
    }
    // A fixed order keeps lock and page order stable between runs.
    let mut sums: Vec<(Key, (i64, f64))> = sums.into_iter().collect();
    sums.sort_by(|a, b| a.0.cmp(&b.0));
    insert_rows(
        dialect,
        tx,
        (
            "INSERT INTO rollups (hour, service, category, kind, label, n, score_sum)",
            "ON CONFLICT (service, category, hour, kind, label)
             DO UPDATE SET n = rollups.n + excluded.n,
                           score_sum = rollups.score_sum + excluded.score_sum",
        ),
        7,
        ROWS_PER_STATEMENT * 2,
        &sums,
        |q, ((hour, service, category, kind, label), (n, sum))| {
            q.bind(*hour)
                .bind(*service)
                .bind(*category)
                .bind(*kind)
                .bind(*label)
                .bind(*n)
                .bind(*sum)
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::{placeholders, Dialect};

    #[test]
    fn placeholders_number_rows_and_columns() {
        assert_eq!(placeholders(Dialect::Postgres, 2, 2), "($1,$2),($3,$4)");
        assert_eq!(placeholders(Dialect::Postgres, 3, 1), "$1,$2,$3");
        assert_eq!(placeholders(Dialect::Sqlite, 2, 2), "(?,?),(?,?)");
    }
}
