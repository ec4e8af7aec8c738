//! The store on both engines: the schema each engine's migrations build is the same
//! (tables, columns with normalized types, keys, indexes, foreign keys, triggers), and the
//! change sequence and once-only rules behave alike. Many tests elsewhere (rollups, accounts,
//! status) also run on both through `crate::engines`.
use crate::{engines, fresh_postgres, test_now};
use kizashi::store::Store;
use sqlx::{Connection, Row};
use std::collections::{BTreeMap, BTreeSet};

/// One engine's schema, normalized so the two can be compared.
#[derive(Debug, Default, PartialEq)]
struct Schema {
    /// table → [(column, type, not null)] in column order
    columns: BTreeMap<String, Vec<(String, &'static str, bool)>>,
    /// table → primary-key columns in key order
    primary_keys: BTreeMap<String, Vec<String>>,
    /// table → {(unique, columns)} for every other index, named or made by UNIQUE
    indexes: BTreeMap<String, BTreeSet<(bool, String)>>,
    /// (table, column, referenced table, referenced column, on delete)
    foreign_keys: BTreeSet<(String, String, String, String, String)>,
    triggers: BTreeSet<(String, String)>,
}

fn kind_of(declared: &str) -> &'static str {
    match declared.to_ascii_lowercase().as_str() {
        "integer" | "bigint" | "int" | "int8" | "bigserial" => "integer",
        "text" => "text",
        "double precision" | "real" | "float8" => "real",
        other => panic!("type {other:?} has no normalized kind: add it here or avoid it"),
    }
}

async fn sqlite_schema(dir: &std::path::Path) -> Schema {
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.join("kizashi.sqlite").display()
    ))
    .await
    .unwrap();
    let mut s = Schema::default();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
           AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for t in &tables {
        let mut pk: Vec<(i64, String)> = Vec::new();
        for r in sqlx::query(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info($1) ORDER BY cid",
        )
        .bind(t)
        .fetch_all(&pool)
        .await
        .unwrap()
        {
            let (name, ty, notnull, k): (String, String, i64, i64) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            if k > 0 {
                pk.push((k, name.clone()));
            }
            // A primary-key column is never NULL, whatever SQLite's pragma says of rowid aliases.
            s.columns.entry(t.clone()).or_default().push((
                name,
                kind_of(&ty),
                notnull != 0 || k > 0,
            ));
        }
        pk.sort();
        s.primary_keys
            .insert(t.clone(), pk.into_iter().map(|(_, c)| c).collect());
        for r in sqlx::query("SELECT name, \"unique\", origin FROM pragma_index_list($1)")
            .bind(t)
            .fetch_all(&pool)
            .await
            .unwrap()
        {
            let (name, unique, origin): (String, i64, String) = (r.get(0), r.get(1), r.get(2));
            if origin == "pk" {
                continue;
            }
            let cols: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                    .bind(&name)
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            s.indexes
                .entry(t.clone())
                .or_default()
                .insert((unique != 0, cols.join(",")));
        }
        for r in sqlx::query(
            "SELECT \"table\", \"from\", \"to\", on_delete FROM pragma_foreign_key_list($1)",
        )
        .bind(t)
        .fetch_all(&pool)
        .await
        .unwrap()
        {
            s.foreign_keys.insert((
                t.clone(),
                r.get(1),
                r.get(0),
                r.get(2),
                r.get::<String, _>(3).to_ascii_lowercase(),
            ));
        }
    }
    for r in sqlx::query("SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'")
        .fetch_all(&pool)
        .await
        .unwrap()
    {
        s.triggers.insert((r.get(0), r.get(1)));
    }
    pool.close().await;
    s
}

async fn postgres_schema(url: &str) -> Schema {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let mut s = Schema::default();
    for r in sqlx::query(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    {
        let (t, name, ty, nullable): (String, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        s.columns
            .entry(t)
            .or_default()
            .push((name, kind_of(&ty), nullable == "NO"));
    }
    for r in sqlx::query(
        "SELECT t.relname::text, ix.indisprimary, ix.indisunique,
                array_to_string(ARRAY(
                    SELECT a.attname::text FROM unnest(ix.indkey::int2[]) WITH ORDINALITY k(att, ord)
                    JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.att ORDER BY k.ord),
                ',')
         FROM pg_index ix JOIN pg_class t ON t.oid = ix.indrelid
              JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = 'public' AND t.relname <> '_sqlx_migrations'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    {
        let (t, primary, unique, cols): (String, bool, bool, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        if primary {
            s.primary_keys
                .insert(t, cols.split(',').map(String::from).collect());
        } else {
            s.indexes.entry(t).or_default().insert((unique, cols));
        }
    }
    // Tables without a primary key appear in SQLite's list with an empty one.
    for t in s.columns.keys() {
        s.primary_keys.entry(t.clone()).or_default();
    }
    for r in sqlx::query(
        "SELECT c.conrelid::regclass::text, a.attname::text, c.confrelid::regclass::text,
                af.attname::text, c.confdeltype::text
         FROM pg_constraint c
         JOIN LATERAL unnest(c.conkey, c.confkey) AS k(att, refatt) ON true
         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.att
         JOIN pg_attribute af ON af.attrelid = c.confrelid AND af.attnum = k.refatt
         WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    {
        let on_delete = match r.get::<String, _>(4).as_str() {
            "a" => "no action",
            "c" => "cascade",
            "r" => "restrict",
            "n" => "set null",
            "d" => "set default",
            other => panic!("confdeltype {other}"),
        };
        s.foreign_keys.insert((
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            on_delete.to_string(),
        ));
    }
    for r in sqlx::query(
        "SELECT DISTINCT event_object_table::text, trigger_name::text FROM information_schema.triggers
         WHERE trigger_schema = 'public'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    {
        s.triggers.insert((r.get(0), r.get(1)));
    }
    c.close().await.unwrap();
    s
}

/// After migration both engines hold the same schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_engines_migrate_to_the_same_schema() {
    let Some(pg) = fresh_postgres("schema").await else {
        crate::skipped(
            "both_engines_migrate_to_the_same_schema",
            "(PostgreSQL only)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).await.unwrap().close().await;
    let lite = sqlite_schema(dir.path()).await;
    Store::connect(pg.database.as_ref().unwrap())
        .await
        .unwrap()
        .close()
        .await;
    let post = postgres_schema(&pg.postgres_url().unwrap()).await;
    assert!(lite.columns.len() >= 25, "{:?}", lite.columns.keys());
    assert_eq!(
        lite.columns.keys().collect::<Vec<_>>(),
        post.columns.keys().collect::<Vec<_>>(),
        "tables"
    );
    for (t, cols) in &lite.columns {
        assert_eq!(Some(cols), post.columns.get(t), "columns of {t}");
    }
    assert_eq!(lite.primary_keys, post.primary_keys, "primary keys");
    for t in lite.columns.keys() {
        assert_eq!(lite.indexes.get(t), post.indexes.get(t), "indexes of {t}");
    }
    assert_eq!(lite.foreign_keys, post.foreign_keys, "foreign keys");
    assert_eq!(lite.triggers, post.triggers, "triggers");
    // Migrating again is a no-op on both.
    Store::open(dir.path()).await.unwrap().close().await;
    Store::connect(pg.database.as_ref().unwrap())
        .await
        .unwrap()
        .close()
        .await;
}

/// The store's basic contract on each engine: meta, sources seeded once, fetch records,
/// saved searches, the change sequence, the status version, once-only TOTP steps and
/// recovery codes, sessions, and the append-only audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_contract_holds_on_every_engine() {
    for db in engines("store_contract").await {
        let dir = tempfile::tempdir().unwrap();
        let settings = db.apply(crate::test_settings(
            dir.path(),
            &[("news", "https://example.jp/feed", "news")],
        ));
        let store = Store::open_settings(&settings).await.unwrap();
        let e = db.engine;
        let now = test_now();
        let t = now.timestamp_millis();

        store.set_meta("k", "v1").await.unwrap();
        store.set_meta("k", "v2").await.unwrap();
        assert_eq!(store.meta("k").await.unwrap().as_deref(), Some("v2"), "{e}");
        assert!(store.seed_once(&settings, now).await.unwrap(), "{e}");
        assert!(!store.seed_once(&settings, now).await.unwrap(), "{e}");
        let sources = store.sources().await.unwrap();
        assert_eq!(sources.len(), 1, "{e}");
        assert!(sources[0].enabled, "{e}");
        assert!(
            store.set_source_enabled("news", false).await.unwrap(),
            "{e}"
        );
        assert!(!store.sources().await.unwrap()[0].enabled, "{e}");
        let rec = kizashi::store::FetchRecord {
            status: "200".into(),
            etag: Some("\"e1\"".into()),
            body_hash: Some("h1".into()),
            new_items: 3,
            ..Default::default()
        };
        store.record_fetch(sources[0].id, &rec, now).await.unwrap();
        let s = &store.sources().await.unwrap()[0];
        assert_eq!(
            (s.etag.as_deref(), s.new_items, s.body_changed_at),
            (Some("\"e1\""), 3, Some(t)),
            "{e}"
        );
        assert!(!store.watched_services().await.unwrap().is_empty(), "{e}");

        let id = store.save_search("fraud", "不正", now).await.unwrap();
        assert_eq!(
            store.save_search("fraud", "不正利用", now).await.unwrap(),
            id,
            "{e}"
        );
        assert_eq!(
            store.saved_searches().await.unwrap(),
            vec![(id, "fraud".to_string(), "不正利用".to_string())],
            "{e}"
        );

        assert_eq!(store.last_change().await.unwrap(), 0, "{e}");
        assert_eq!(store.changes_after(0, 10).await.unwrap(), vec![], "{e}");

        let v = store.status_version().await.unwrap();
        let input = kizashi::store::ComponentInput {
            id: "pay".into(),
            name: Some("決済".into()),
            description: None,
            group: Some("アプリ".into()),
            position: None,
            status: Some(kizashi::domain::status::ComponentStatus::Operational),
        };
        store.put_component(&input, now).await.unwrap();
        assert!(
            store.status_version().await.unwrap() > v,
            "{e}: a status write bumps the version"
        );
        assert_eq!(store.components().await.unwrap().len(), 1, "{e}");

        // Accounts: a TOTP step and a recovery code count once; sessions and the audit log.
        let uid = store
            .insert_user("ops", "operator", "setup-hash", t + 3_600_000, "PENDING", t)
            .await
            .unwrap();
        assert!(store.accept_totp_step(uid, 100).await.unwrap(), "{e}");
        assert!(
            !store.accept_totp_step(uid, 100).await.unwrap(),
            "{e}: replayed step"
        );
        assert!(
            !store.accept_totp_step(uid, 99).await.unwrap(),
            "{e}: older step"
        );
        assert!(store.accept_totp_step(uid, 101).await.unwrap(), "{e}");
        store
            .create_session("sess-hash", uid, "csrf", "127.0.0.1", t, t + 60_000)
            .await
            .unwrap();
        assert!(
            store.session("sess-hash", t).await.unwrap().is_some(),
            "{e}"
        );
        assert!(
            store
                .session("sess-hash", t + 60_001)
                .await
                .unwrap()
                .is_none(),
            "{e}"
        );
        let entry = kizashi::store::AuditEntry {
            at: t,
            actor: "ops".into(),
            ip: "127.0.0.1".into(),
            action: "test".into(),
            target: "audit".into(),
            before: None,
            after: Some("x".into()),
        };
        store.audit(&entry).await.unwrap();
        assert_eq!(store.audit_entries(10).await.unwrap().len(), 1, "{e}");
        if let Some(url) = db.postgres_url() {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            for sql in ["UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"] {
                let err = sqlx::query(sql).execute(&mut c).await.unwrap_err();
                assert!(err.to_string().contains("append-only"), "{sql}: {err}");
            }
        }
        store.close().await;
    }
}

/// PostgreSQL hands out sequence numbers when a transaction inserts and shows them when it
/// commits: a slow writer's change can appear after a quicker writer's later number. The
/// follower waits for the hole and applies the change when it appears; after a restart it
/// rechecks a window below its mark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_committed_out_of_order_is_still_followed() {
    use kizashi::store::{ChangeFollower, Dialect};
    let Some(pg) = fresh_postgres("late_commit").await else {
        crate::skipped(
            "a_change_committed_out_of_order_is_still_followed",
            "(PostgreSQL only)",
        );
        return;
    };
    let store = Store::connect(pg.database.as_ref().unwrap()).await.unwrap();
    assert_eq!(store.dialect(), Dialect::Postgres);
    let url = pg.postgres_url().unwrap();
    let mut slow = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut quick = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut follower = ChangeFollower::new(0, store.dialect());
    sqlx::query("BEGIN").execute(&mut slow).await.unwrap();
    let late: i64 =
        sqlx::query_scalar("INSERT INTO changes (item_id, at) VALUES (101, 0) RETURNING seq")
            .fetch_one(&mut slow)
            .await
            .unwrap();
    let early: i64 =
        sqlx::query_scalar("INSERT INTO changes (item_id, at) VALUES (102, 0) RETURNING seq")
            .fetch_one(&mut quick)
            .await
            .unwrap();
    assert!(late < early);
    assert_eq!(
        follower.next(&store, 100).await.unwrap(),
        vec![(early, 102)]
    );
    assert_eq!((follower.hwm(), follower.holes()), (early, 1));
    assert_eq!(follower.next(&store, 100).await.unwrap(), vec![]);
    sqlx::query("COMMIT").execute(&mut slow).await.unwrap();
    assert_eq!(follower.next(&store, 100).await.unwrap(), vec![(late, 101)]);
    assert_eq!((follower.hwm(), follower.holes()), (early, 0));
    // A rolled-back number stays a hole until LATE_COMMIT_WAIT; nothing is applied for it.
    sqlx::query("BEGIN").execute(&mut slow).await.unwrap();
    sqlx::query("INSERT INTO changes (item_id, at) VALUES (103, 0)")
        .execute(&mut slow)
        .await
        .unwrap();
    sqlx::query("ROLLBACK").execute(&mut slow).await.unwrap();
    let last: i64 =
        sqlx::query_scalar("INSERT INTO changes (item_id, at) VALUES (104, 0) RETURNING seq")
            .fetch_one(&mut quick)
            .await
            .unwrap();
    assert_eq!(follower.next(&store, 100).await.unwrap(), vec![(last, 104)]);
    assert_eq!(follower.holes(), 1);
    // After a restart the window below the stored mark is read again (harmless: applying a
    // change is delete-then-add by id).
    let mut restarted = ChangeFollower::new(last, store.dialect());
    assert_eq!(
        restarted.next(&store, 100).await.unwrap(),
        vec![(late, 101), (early, 102), (last, 104)]
    );
    // SQLite commits in order: no holes, no window.
    let dir = tempfile::tempdir().unwrap();
    let lite = Store::open(dir.path()).await.unwrap();
    let mut f = ChangeFollower::new(5, lite.dialect());
    assert_eq!((f.holes(), f.next(&lite, 10).await.unwrap()), (0, vec![]));
    store.close().await;
}

/// The near-duplicate lookup reads the partial band indexes (news only) on both engines:
/// each `mh_bN = $n` must be seen to imply the index's NOT NULL condition, else every lookup
/// scans the items.
#[tokio::test]
async fn near_duplicate_lookups_use_the_partial_band_indexes() {
    for db in engines("near_duplicate_lookups_use_the_partial_band_indexes").await {
        let dir = tempfile::tempdir().unwrap();
        let settings = db.apply(crate::test_settings(dir.path(), &[]));
        Store::open_settings(&settings).await.unwrap();
        // Literal values in place of the parameters, highest number first ($10 before $1):
        // eight band keys of one item, and a window of six days around it.
        let minute = 60_000i64;
        let mut sql = kizashi::store::NEAR_DUPLICATE_SQL
            .replace("$10", &(5_000 * minute + 3 * 1_440 * minute).to_string())
            .replace("$9", &(5_000 * minute - 3 * 1_440 * minute).to_string());
        for n in (1..=8).rev() {
            sql = sql.replace(&format!("${n}"), &(5_000 * 8 + n - 1).to_string());
        }
        let plan: Vec<String> = match db.postgres_url() {
            None => {
                let path = dir.path().join("kizashi.sqlite");
                let mut c =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .unwrap();
                sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get::<String, _>(3))
                    .collect()
            }
            Some(url) => {
                let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                // PostgreSQL plans by statistics: 20,000 news items, one a minute, each with
                // its own band keys (on an empty table any plan is cheapest).
                sqlx::query(
                    "INSERT INTO items (identity, source, url, title, body, kind, published_at,
                         first_seen_at, date_quality, content_hash, sentiment_label,
                         sentiment_score, analysis, tokens, analysis_version, updated_at,
                         mh_b0, mh_b1, mh_b2, mh_b3, mh_b4, mh_b5, mh_b6, mh_b7)
                     SELECT 'i' || g, 's', 'u' || g, '', '', 'news', g * 60000, 0, 'exact', '',
                         'neutral', 0, '{}', '', 1, 0, g * 8, g * 8 + 1, g * 8 + 2, g * 8 + 3,
                         g * 8 + 4, g * 8 + 5, g * 8 + 6, g * 8 + 7
                     FROM generate_series(1, 20000) AS g",
                )
                .execute(&mut c)
                .await
                .unwrap();
                sqlx::query("ANALYZE items").execute(&mut c).await.unwrap();
                sqlx::query(&format!("EXPLAIN {sql}"))
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get::<String, _>(0))
                    .collect()
            }
        };
        for band in 0..8 {
            let index = format!("items_mh_b{band}");
            assert!(
                plan.iter().any(|line| line.contains(&index)),
                "{}: {index} unused: {plan:#?}",
                db.engine
            );
        }
        assert!(
            !plan
                .iter()
                .any(|line| line.contains("SCAN items") || line.contains("Seq Scan on items")),
            "{}: {plan:#?}",
            db.engine
        );
    }
}

/// A batch is written with a few multi-row statements, and must give the rows writing its
/// items one by one gives: near-duplicates found among stored items and among earlier items
/// of the same batch, an identity met twice in a batch stored once and then updated, one
/// change per write, and tokens read back exactly as the pipeline made them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_writes_what_item_by_item_writes_would() {
    for db in engines("a_batch_writes_what_item_by_item_writes_would").await {
        a_batch_writes_what_item_by_item_writes_would_on(db).await;
    }
}

async fn a_batch_writes_what_item_by_item_writes_would_on(db: crate::TestDb) {
    use kizashi::domain::{ItemKind, RawItem};
    let e = db.engine;
    let dir = tempfile::tempdir().unwrap();
    let app = crate::spawn_app_on(crate::test_settings(dir.path(), &[]), dir, db).await;
    let (store, pipeline) = (&app.state.store, &app.state.pipeline);
    let now = kizashi::clock::Clock::now(&*app.state.clock);
    // Two unrelated stories; a different lead keeps a story a near-duplicate of itself.
    let story = |lead: &str| {
        let rest = if lead.starts_with("セブン") {
            "同社によると、不正アクセスは七月一日の午後から続き、利用者の一部で身に覚えの\
             ない決済が確認された。同社は新規のチャージを停止し、二段階認証の導入を急ぐと説明した。\
             被害額は調査中で、警察にも相談しているという。会見は午後五時から本社で開かれた。"
        } else if lead.starts_with("ファミ") {
            "夕方から決済の処理が遅れ、コンビニのレジで支払いが完了しない例が相次いだ。\
             運営会社は原因となったサーバーの設定を元に戻し、夜には通常どおり使えるようになったと\
             説明した。二重に請求された利用者には順次返金するという。"
        } else {
            "キャンペーン初日の朝から利用が集中し、アプリにログインできない状態が昼過ぎまで\
             続いた。運営会社は回線を増強して対応したと発表し、還元の期限を一週間延ばすことを\
             決めた。店舗ではレジに長い列ができ、現金で支払う客も目立った。"
        };
        format!("{lead}。{rest}")
    };
    let raw = |path: &str, kind: ItemKind, body: String| RawItem {
        source: "batch".into(),
        guid: None,
        url: format!("https://example.jp/{path}"),
        title: String::new(),
        body,
        published_at: Some(now - chrono::Duration::hours(1)),
        author: None,
        kind,
        bookmarks: None,
        tags: Vec::new(),
    };
    let first = pipeline
        .ingest(
            store,
            vec![raw("a", ItemKind::News, story("セブンペイで不正利用"))],
            now,
        )
        .await
        .unwrap();
    assert_eq!(first.counts.new, 1, "{e}");
    let changes_before = store.last_change().await.unwrap();

    let batch = vec![
        // near-duplicate of the stored story
        raw("b", ItemKind::News, story("セブンペイで不正利用、被害拡大")),
        // a new story and its near-duplicate later in the same batch
        raw("c", ItemKind::News, story("ペイペイで障害が発生")),
        raw("d", ItemKind::News, story("ペイペイで障害が発生、復旧へ")),
        // the same identity as "c" again, with other text: stored once, then updated
        raw("c", ItemKind::News, story("ペイペイで大規模な障害")),
        raw("e", ItemKind::Social, "ファミペイ使えない".into()),
    ];
    let expected: Vec<RawItem> = batch.clone();
    let report = pipeline.ingest(store, batch, now).await.unwrap();
    assert_eq!(
        (
            report.counts.new,
            report.counts.updated,
            report.counts.unchanged
        ),
        (4, 1, 0),
        "{e}"
    );
    assert_eq!(
        store.last_change().await.unwrap() - changes_before,
        5,
        "{e}: one change per write"
    );
    let group = |path: &'static str| async move {
        store
            .dup_group_of(&format!("https://example.jp/{path}"))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{path} is stored with a group"))
    };
    let ids = store.item_ids_after(0, 100).await.unwrap();
    let items = store.items(&ids).await.unwrap();
    let id_of = |path: &str| {
        items
            .iter()
            .find(|i| i.url.ends_with(&format!("/{path}")))
            .map(|i| i.id)
            .unwrap_or_else(|| panic!("{path} is stored"))
    };
    assert_eq!(
        group("a").await,
        id_of("a"),
        "{e}: a group is named after its first member"
    );
    assert_eq!(
        group("b").await,
        id_of("a"),
        "{e}: joins the stored story's group"
    );
    assert_eq!(group("c").await, id_of("c"), "{e}");
    assert_eq!(
        group("d").await,
        id_of("c"),
        "{e}: joins a group begun in the same batch"
    );
    assert_eq!(
        group("e").await,
        id_of("e"),
        "{e}: an item with no near-duplicate is its own group"
    );
    // A batch longer than one multi-row statement (200 rows): a member in a later statement
    // than its leader still gets the leader's id.
    let mut long: Vec<RawItem> = (0..450)
        .map(|i| {
            raw(
                &format!("p{i}"),
                ItemKind::Social,
                format!("投稿その{i}、使えない"),
            )
        })
        .collect();
    long[10] = raw("lead", ItemKind::News, story("ファミペイで障害が発生"));
    long[320] = raw(
        "follow",
        ItemKind::News,
        story("ファミペイで障害が発生、続報"),
    );
    let report = pipeline.ingest(store, long, now).await.unwrap();
    assert_eq!(report.counts.new, 450, "{e}");
    let ids = store.item_ids_after(0, 1000).await.unwrap();
    let all = store.items(&ids).await.unwrap();
    let id_of_url = |path: &str| {
        all.iter()
            .find(|i| i.url.ends_with(&format!("/{path}")))
            .map(|i| i.id)
            .unwrap_or_else(|| panic!("{path} is stored"))
    };
    assert_eq!(group("lead").await, id_of_url("lead"), "{e}");
    assert_eq!(
        group("follow").await,
        id_of_url("lead"),
        "{e}: joins a group begun 310 rows earlier in the batch"
    );
    assert_eq!(group("p449").await, id_of_url("p449"), "{e}");
    let c = items.iter().find(|i| i.url.ends_with("/c")).unwrap();
    assert_eq!(
        c.body, expected[3].body,
        "{e}: the later version of c is stored"
    );
    // Tokens come back exactly as the pipeline made them.
    for item in &items {
        let raw = expected
            .iter()
            .rev()
            .find(|r| r.url == item.url)
            .cloned()
            .unwrap_or_else(|| raw("a", ItemKind::News, story("セブンペイで不正利用")));
        let made = pipeline.prepare(raw).unwrap();
        assert_eq!(
            &item.tokens,
            made.tokens.tokens(),
            "{e}: tokens of {}",
            item.url
        );
    }
}
