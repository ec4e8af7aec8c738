//! Recall across Japanese variation, precision, the query language, facets and export.
//! Word pairs here appear in no list inside the project: the rules must carry them.
use crate::{enc, spawn_app_with, test_settings, TestApp};
use kizashi::domain::{ItemKind, RawItem};

const DOCS: &[(&str, &str)] = &[
    ("numerals", "新しく3段階認証の仕組みを導入した"),
    ("longvowel", "コンピューターの設定を見直した"),
    ("longvowel2", "プリンタの調子が悪い"),
    ("okurigana", "口座の取り扱いを停止する"),
    ("inflection", "朝からアプリにログインできなかった"),
    ("compound", "生体認証に対応した新しい端末"),
    ("split", "カードを不正に送金された"),
    ("kyoto", "京都で会議がある"),
    ("tokyo", "東京都で会議がある"),
    ("unknown", "ふわもこペイの新サービス"),
    ("formula", "=HYPERLINK(\"http://evil\") と書いた投稿"),
];

async fn app_with_docs() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path(), &[]), Some(dir)).await;
    let raws: Vec<RawItem> = DOCS
        .iter()
        .enumerate()
        .map(|(i, (id, text))| RawItem {
            source: "recall".into(),
            guid: Some((*id).into()),
            url: format!("https://example.jp/{id}"),
            title: String::new(),
            body: (*text).into(),
            published_at: Some(crate::test_now() - chrono::Duration::hours(i as i64 + 1)),
            author: Some(format!("user{i}")),
            kind: if *id == "formula" {
                ItemKind::Social
            } else {
                ItemKind::News
            },
            bookmarks: None,
            tags: if *id == "compound" {
                vec!["決済".into()]
            } else {
                Vec::new()
            },
        })
        .collect();
    app.state
        .pipeline
        .ingest(&app.state.store, raws, crate::test_now())
        .await
        .unwrap();
    app.state.index_notify.notify_one();
    app.wait_indexed().await;
    app
}

async fn ids(app: &TestApp, q: &str) -> Vec<String> {
    app.hit_slugs(&format!("/api/search?q={}&per_page=100", enc(q)))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn japanese_variation_is_found_and_precision_holds() {
    let app = app_with_docs().await;
    // (query, document that must be found)
    let rows = [
        ("三段階認証", "numerals"),
        ("コンピュータ", "longvowel"),
        ("プリンター", "longvowel2"),
        ("取扱い", "okurigana"),
        ("ログインできない", "inflection"),
        ("認証", "compound"),
        ("不正送金", "split"),
        ("もこペイ", "unknown"),
    ];
    for (q, want) in rows {
        let found = ids(&app, q).await;
        assert!(
            found.contains(&want.to_string()),
            "{q} should find {want}: {found:?}"
        );
    }
    // 京都 ranks 京都 above 東京都; an exact phrase ranks first.
    let found = ids(&app, "京都").await;
    assert_eq!(
        found.first().map(String::as_str),
        Some("kyoto"),
        "{found:?}"
    );
    let found = ids(&app, "\"東京都で会議\"").await;
    assert_eq!(found, ["tokyo"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_language_facets_and_export() {
    let app = app_with_docs().await;
    // fields, NOT/-, OR
    assert_eq!(ids(&app, "会議 -東京都").await, ["kyoto"]);
    assert_eq!(ids(&app, "会議 NOT 東京都").await, ["kyoto"]);
    let mut either = ids(&app, "端末 OR プリンタ").await;
    either.sort();
    assert_eq!(either, ["compound", "longvowel2"]);
    assert_eq!(ids(&app, "kind:social").await, ["formula"]);
    assert_eq!(
        ids(&app, "tag:決済").await,
        ["compound"],
        "the source's own subjects"
    );
    assert_eq!(ids(&app, "source:recall 生体認証").await, ["compound"]);
    // sentiment and category filters as parameters
    let (_, body) = app
        .get_json("/api/search?category=suspension&per_page=100")
        .await;
    assert_eq!(body["total"], 1, "停止 → suspension: {body}");
    // relative ranges from the clock: the first items are an hour and two hours old
    let (_, body) = app.get_json("/api/search?range=24h&per_page=100").await;
    assert_eq!(body["total"], DOCS.len());
    let (status, _) = app.get_json("/api/search?range=1y").await;
    assert_eq!(status, 400);
    // facets on the API
    let (_, body) = app
        .get_json(&format!("/api/search?q={}", enc("会議")))
        .await;
    assert_eq!(body["facets"]["kind"]["news"], 2, "{body}");
    assert_eq!(body["facets"]["source"]["recall"], 2);
    // CSV: BOM, header, formula cells neutralized; JSON Lines: one object per item
    let csv = app
        .client
        .get(format!("{}/api/search.csv?q={}", app.base, enc("投稿")))
        .send()
        .await
        .unwrap();
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = csv.bytes().await.unwrap();
    assert!(csv.starts_with("\u{feff}id,".as_bytes()));
    let text = String::from_utf8(csv.to_vec()).unwrap();
    assert!(
        text.contains(",\"'=HYPERLINK(\"\"http://evil\"\") と書いた投稿\","),
        "{text}"
    );
    let jsonl = app
        .client
        .get(format!("{}/api/search.jsonl?q={}", app.base, enc("会議")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    // news export as snippet, not full text; the field is there
    assert!(rows.iter().all(|r| r["kind"] == "news"
        && r["url"]
            .as_str()
            .unwrap()
            .starts_with("https://example.jp/")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_searches_are_shared_and_become_dashboard_panels() {
    let app = app_with_docs().await;
    let post = |body: serde_json::Value| {
        app.client
            .post(format!("{}/api/saved-searches", app.base))
            .json(&body)
            .send()
    };
    let r = post(serde_json::json!({ "name": "会議の話題", "query": "q=会議&kind=news" }))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    for bad in [
        serde_json::json!({ "name": "", "query": "q=x" }),
        serde_json::json!({ "name": "x", "query": "per_page=1000" }),
        serde_json::json!({ "name": "x", "query": "service=nopay" }),
    ] {
        assert_eq!(post(bad.clone()).await.unwrap().status(), 400, "{bad}");
    }
    let (_, list) = app.get_json("/api/saved-searches").await;
    assert_eq!(list[0]["name"], "会議の話題");
    assert_eq!(list[0]["url"], "/search?q=会議&kind=news");
    // A panel on the dashboard, counting what the query matches (the window holds both items).
    let (_, html) = app.get_text("/?from=2019-07-01&to=2019-07-06").await;
    assert!(
        html.contains(&format!("id=\"service-saved-{id}\"")),
        "panel present"
    );
    assert!(html.contains(&format!("id=\"service-saved-{id}\" data-service=\"saved-{id}\">\n    <h2>🔎 会議の話題 <span class=\"total\">合計 <strong data-total=\"2\">")), "{html}");
    // The search page's form saves too, then shows the search.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .post(format!("{}/saved-searches", app.base))
        .form(&[("name", "端末"), ("query", "q=端末")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/search?q=端末");
    let r = app
        .client
        .delete(format!("{}/api/saved-searches/{id}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = app
        .client
        .delete(format!("{}/api/saved-searches/{id}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// `kizashi reindex` builds a new generation beside the live one: search answers in full all
/// along, follows new items meanwhile, and moves to the new directory when it is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_answers_in_full_while_a_new_generation_is_built() {
    const N: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path(), &[]), Some(dir)).await;
    let raw = |i: usize, body: String| RawItem {
        source: "reindex".into(),
        guid: Some(format!("r{i}")),
        url: format!("https://example.jp/r{i}"),
        title: String::new(),
        body,
        published_at: Some(crate::test_now() - chrono::Duration::minutes(i as i64 + 1)),
        author: Some(format!("user{}", i % 50)),
        kind: ItemKind::Social,
        bookmarks: None,
        tags: Vec::new(),
    };
    let raws: Vec<RawItem> = (0..N)
        .map(|i| {
            let word = if i % 4 == 0 { "障害" } else { "還元" };
            raw(i, format!("決済アプリ{i}番で{word}のお知らせ"))
        })
        .collect();
    let store = &app.state.store;
    app.state
        .pipeline
        .ingest(store, raws, crate::test_now())
        .await
        .unwrap();
    app.state.index_notify.notify_one();
    app.wait_indexed().await;
    let total = |body: &serde_json::Value| body["total"].as_u64().unwrap_or(u64::MAX);
    let (_, before) = app
        .get_json(&format!("/api/search?q={}", enc("障害")))
        .await;
    assert_eq!(total(&before), (N / 4) as u64);
    let old_dir = app.state.index.live_dir();
    assert!(old_dir.is_dir());

    store.set_meta("reindex_generation", "1").await.unwrap();
    app.state.index_notify.notify_one();
    let (mut during, mut polls, mut added) = (0, 0, false);
    for _ in 0..3000 {
        let (code, body) = app
            .get_json(&format!("/api/search?q={}&per_page=5", enc("障害")))
            .await;
        assert_eq!(code, 200, "{body}");
        polls += 1;
        let (_, health) = app.get_json("/healthz").await;
        let rebuilding = !health["index"]["rebuild"].is_null();
        if rebuilding {
            during += 1;
            // Every item, old or new, is found while the next generation is being built.
            let want = (N / 4) as u64 + u64::from(added);
            assert!(
                total(&body) >= (N / 4) as u64 && total(&body) <= want,
                "{body}"
            );
            if !added {
                app.state
                    .pipeline
                    .ingest(
                        store,
                        vec![raw(N, "停電で障害が発生".into())],
                        crate::test_now(),
                    )
                    .await
                    .unwrap();
                app.state.index_notify.notify_one();
                added = true;
            }
        } else if app.state.index.committed_watermark().unwrap().generation == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        app.state.index.committed_watermark().unwrap().generation,
        1,
        "switched"
    );
    assert!(
        during > 0,
        "no search ran during the rebuild ({polls} polls)"
    );
    let new_dir = app.state.index.live_dir();
    assert_ne!(new_dir, old_dir);
    assert!(!old_dir.exists(), "the old generation is removed");
    assert_eq!(
        std::fs::read_to_string(new_dir.parent().unwrap().join("CURRENT")).unwrap(),
        new_dir.file_name().unwrap().to_str().unwrap()
    );
    app.wait_indexed().await;
    let (_, after) = app
        .get_json(&format!("/api/search?q={}", enc("障害")))
        .await;
    assert_eq!(
        total(&after),
        (N / 4 + 1) as u64,
        "the item added meanwhile is in"
    );
    let (_, ok) = app
        .get_json(&format!("/api/search?q={}", enc("停電")))
        .await;
    assert_eq!(total(&ok), 1);
}

/// Two processes sharing a data directory: the first indexer locks the index root; another
/// one does not write or clean up there, but follows the holder's generations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_indexer_on_the_same_root_follows_instead_of_writing() {
    let app = app_with_docs().await;
    let root = app.state.index.live_dir().parent().unwrap().to_path_buf();
    let other = kizashi::search::SearchIndex::open(
        &root,
        app.state.pipeline.analyzer(),
        Default::default(),
    )
    .unwrap();
    assert!(
        other.lock_for_writing().unwrap().is_none(),
        "the app's indexer holds the root"
    );
    app.state
        .store
        .set_meta("reindex_generation", "1")
        .await
        .unwrap();
    app.state.index_notify.notify_one();
    for _ in 0..200 {
        if app.state.index.committed_watermark().unwrap().generation == 1
            && app.state.index.rebuild_progress().is_none()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(app.state.index.committed_watermark().unwrap().generation, 1);
    other.follow_owner().unwrap();
    assert_eq!(other.live_dir(), app.state.index.live_dir());
    assert_eq!(other.committed_watermark().unwrap().generation, 1);
    let req = kizashi::search::SearchRequest {
        q: "京都".into(),
        limit: 10,
        ..Default::default()
    };
    let found = other.search(&app.state.store, &req).await.unwrap();
    assert!(found.total >= 1, "the follower searches the new generation");
}

/// A shutdown during a rebuild abandons it between batches: the error says so, the half-built
/// directory is gone and the live generation is untouched (the next start builds again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_stopped_by_shutdown_leaves_the_live_generation() {
    let app = app_with_docs().await;
    let root = tempfile::tempdir().unwrap();
    let index = kizashi::search::SearchIndex::open(
        root.path(),
        app.state.pipeline.analyzer(),
        Default::default(),
    )
    .unwrap();
    let live = index.live_dir();
    let writer = std::sync::Mutex::new(index.writer().unwrap());
    let stop = std::sync::atomic::AtomicBool::new(true);
    let err = index
        .catch_up(&app.state.store, &writer, &mut None, &stop)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kizashi::search::SearchError::Stopped),
        "{err}"
    );
    let dirs: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs, vec![live.clone()], "only the live generation is left");
    assert!(index.rebuild_progress().is_none());
    // Without the stop it completes and switches.
    stop.store(false, std::sync::atomic::Ordering::SeqCst);
    let n = index
        .catch_up(&app.state.store, &writer, &mut None, &stop)
        .await
        .unwrap();
    assert!(n >= 10, "{n}");
    assert_ne!(index.live_dir(), live);
}
