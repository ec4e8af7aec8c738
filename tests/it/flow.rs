//! Feed → crawl → store → index → search and time series, end to end.
use crate::fixtures::{self, FixtureServer, Response};
use crate::{enc, spawn_app_with, test_settings, TestApp};
use std::collections::BTreeMap;

async fn crawled_app() -> (TestApp, FixtureServer) {
    let server = FixtureServer::start().await;
    let base = server.base.clone();
    server.set(
        "/news.xml",
        Response {
            etag: Some("\"n1\"".into()),
            ..Response::ok("application/rss+xml", fixtures::rss2(&base, fixtures::NEWS))
        },
    );
    server.set(
        "/social.atom",
        Response::ok(
            "application/atom+xml",
            fixtures::atom(&base, fixtures::SOCIAL),
        ),
    );
    // Declared Shift_JIS in the prolog, served without an HTTP charset.
    server.set(
        "/flash.rdf",
        Response::ok(
            "application/rdf+xml",
            fixtures::rdf_shift_jis(&base, fixtures::RDF_ROWS),
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(
        dir.path(),
        &[
            ("news", &format!("{base}/news.xml"), "news"),
            ("social", &format!("{base}/social.atom"), "social"),
            ("flash", &format!("{base}/flash.rdf"), "news"),
            ("broken", &format!("{base}/missing.xml"), "news"),
        ],
    );
    let app = spawn_app_with(settings, Some(dir)).await;
    let r = app
        .client
        .post(format!("{}/api/crawl", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let summary: Vec<serde_json::Value> = r.json().await.unwrap();
    let by_name: BTreeMap<String, serde_json::Value> = summary
        .into_iter()
        .map(|s| (s["source"].as_str().unwrap().to_string(), s))
        .collect();
    assert_eq!(by_name["news"]["new_items"], fixtures::NEWS.len());
    assert_eq!(
        by_name["social"]["new_items"],
        fixtures::SOCIAL.len(),
        "{:?}",
        by_name["social"]
    );
    assert_eq!(by_name["flash"]["new_items"], fixtures::RDF_ROWS.len());
    assert_eq!(by_name["flash"]["charset"], "Shift_JIS (prolog)");
    // A broken source is reported and does not stop the others.
    assert_eq!(by_name["broken"]["status"], "error");
    assert!(by_name["broken"]["error"].as_str().unwrap().contains("404"));
    app.wait_indexed().await;
    (app, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawled_items_are_searchable_and_counted_per_jst_day() {
    let (app, server) = crawled_app().await;

    // Exact totals, computed from the fixture rows by substring.
    for q in ["不正利用", "二段階認証", "被害", "還元"] {
        let want = fixtures::count_containing(q);
        assert!(want > 0, "fixture has {q}");
        let (status, body) = app
            .get_json(&format!("/api/search?q={}&per_page=100", enc(q)))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["total"], want, "total for {q}: {body}");
        assert_eq!(body["hits"].as_array().unwrap().len(), want);
    }

    // A service name finds its aliases too (セブンペイ, ナナペイ, ７ｐａｙ), and the reverse.
    let want_7pay = fixtures::all_rows().filter(|r| r.mentions_7pay).count();
    for q in ["7pay", "セブンペイ", "7PAY"] {
        let (_, body) = app
            .get_json(&format!("/api/search?q={}&per_page=100", enc(q)))
            .await;
        assert_eq!(body["total"], want_7pay, "{q}: {body}");
    }
    // Facets count the matching items.
    let (_, body) = app
        .get_json(&format!("/api/search?q={}", enc("不正利用")))
        .await;
    let kinds = &body["facets"]["kind"];
    assert_eq!(
        kinds["news"].as_u64().unwrap_or(0) + kinds["social"].as_u64().unwrap_or(0),
        fixtures::count_containing("不正利用") as u64,
        "{body}"
    );

    // Hits carry the fixed shape, canonical URLs and highlighted snippets.
    let (_, body) = app
        .get_json(&format!("/api/search?q={}", enc("不正利用")))
        .await;
    let hit = &body["hits"][0];
    for key in [
        "id",
        "url",
        "title",
        "snippet",
        "published_at",
        "source",
        "kind",
        "services",
        "sentiment",
    ] {
        assert!(hit.get(key).is_some(), "hit has {key}: {hit}");
    }
    assert!(!hit["url"].as_str().unwrap().contains("utm_"), "{hit}");
    assert!(
        body["hits"].as_array().unwrap().iter().any(|h| h["snippet"]
            .as_str()
            .unwrap()
            .contains("<b>不正</b>")
            || h["snippet"].as_str().unwrap().contains("<b>不正利用</b>")),
        "{body}"
    );
    assert!(
        ["negative", "neutral", "positive"].contains(&hit["sentiment"]["label"].as_str().unwrap())
    );

    // Service filter uses the (item, service) pairs: PayPayドーム is not PayPay.
    let (_, body) = app
        .get_json("/api/search?service=paypay&per_page=100")
        .await;
    assert_eq!(body["total"], 1, "{body}");
    let (_, body) = app.get_json("/api/search?service=7pay&per_page=100").await;
    assert_eq!(body["total"], want_7pay, "{body}");

    // kind filter
    let (_, body) = app.get_json("/api/search?kind=social&per_page=100").await;
    assert_eq!(body["total"], fixtures::SOCIAL.len());

    // Pagination: pages partition the results.
    let (_, p1) = app
        .get_json("/api/search?service=7pay&per_page=2&page=1&sort=newest")
        .await;
    let (_, p2) = app
        .get_json("/api/search?service=7pay&per_page=2&page=2&sort=newest")
        .await;
    let ids1: Vec<_> = p1["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].clone())
        .collect();
    let ids2: Vec<_> = p2["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].clone())
        .collect();
    assert_eq!(ids1.len(), 2);
    assert_eq!(ids2.len(), 2);
    assert!(ids1.iter().all(|i| !ids2.contains(i)));
    assert!(p1["hits"][0]["published_at"].as_str() >= p2["hits"][0]["published_at"].as_str());

    // Date range, half-open, dates taken as JST.
    let want = fixtures::all_rows()
        .filter(|r| &r.published[..10] == "2019-07-03")
        .count();
    let (_, body) = app
        .get_json("/api/search?from=2019-07-03&to=2019-07-04&per_page=100")
        .await;
    assert_eq!(body["total"], want, "{body}");

    // Time series per JST day; 23:59 and 00:00 +09:00 land on their own days.
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for day in [
        "2019-07-01",
        "2019-07-02",
        "2019-07-03",
        "2019-07-04",
        "2019-07-05",
    ] {
        want.insert(format!("{day}T00:00:00+09:00"), 0);
    }
    for r in fixtures::all_rows().filter(|r| r.mentions_7pay) {
        *want
            .get_mut(&format!("{}T00:00:00+09:00", &r.published[..10]))
            .unwrap() += 1;
    }
    let (status, body) = app
        .get_json("/api/timeseries?service=7pay&interval=day&from=2019-07-01&to=2019-07-06")
        .await;
    assert_eq!(status, 200, "{body}");
    let got: BTreeMap<String, u64> = body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["start"].as_str().unwrap().to_string(),
                b["mentions"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(want["2019-07-02T00:00:00+09:00"], 1);
    // The breakdown: kinds from the fixtures, unique social authors, sentiment shares.
    for b in body["buckets"].as_array().unwrap() {
        let day = &b["start"].as_str().unwrap()[..10];
        let rows: Vec<_> = fixtures::all_rows()
            .filter(|r| r.mentions_7pay && &r.published[..10] == day)
            .collect();
        let social = rows
            .iter()
            .filter(|r| fixtures::SOCIAL.iter().any(|s| s.id == r.id))
            .count() as u64;
        assert_eq!(b["social"].as_u64(), Some(social), "{b}");
        assert_eq!(b["news"].as_u64(), Some(rows.len() as u64 - social), "{b}");
        assert_eq!(
            b["authors"].as_u64(),
            Some(social),
            "each fixture post has its own author: {b}"
        );
        let shares = ["negative", "neutral", "positive"]
            .iter()
            .map(|k| b[k].as_u64().unwrap())
            .sum::<u64>();
        assert_eq!(shares, b["mentions"].as_u64().unwrap());
        assert_eq!(b["mean_sentiment"].is_null(), rows.is_empty());
    }
    let (_, body) = app.get_json("/api/timeseries?service=7pay&kind=social&category=fraud&interval=day&from=2019-07-01&to=2019-07-06").await;
    let total: u64 = body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["mentions"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 2, "social 7pay fraud posts: {body}");

    // With a query, the series counts matching items only.
    let (_, body) = app
        .get_json(&format!(
            "/api/timeseries?q={}&interval=day&from=2019-07-01&to=2019-07-06",
            enc("不正利用")
        ))
        .await;
    let total: u64 = body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["mentions"].as_u64().unwrap())
        .sum();
    assert_eq!(total as usize, fixtures::count_containing("不正利用"));

    // Hourly buckets across a JST midnight.
    let (_, body) = app.get_json("/api/timeseries?service=7pay&interval=hour&from=2019-07-02T23:00:00%2B09:00&to=2019-07-03T01:00:00%2B09:00").await;
    let counts: Vec<u64> = body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["mentions"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![1, 1]);

    // Prometheus metrics: items, index lag, and the failing source.
    let (status, metrics) = app.get_text("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(&format!("kizashi_items {}", fixtures::all_rows().count())),
        "{metrics}"
    );
    assert!(metrics.contains("kizashi_index_lag_changes 0"), "{metrics}");
    assert!(
        metrics.contains("kizashi_source_failures{source=\"broken\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kizashi_source_failures{source=\"news\"} 0"),
        "{metrics}"
    );

    // Crawling again stores nothing new; the ETag source answers 304.
    let r = app
        .client
        .post(format!("{}/api/crawl", app.base))
        .send()
        .await
        .unwrap();
    let summary: Vec<serde_json::Value> = r.json().await.unwrap();
    assert!(summary.iter().all(|s| s["new_items"] == 0), "{summary:?}");
    assert_eq!(
        server
            .not_modified
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(server.hits.lock().unwrap()["/news.xml"], 2);
    assert_eq!(
        app.state.store.item_count().await.unwrap() as usize,
        fixtures::all_rows().count()
    );

    // The dashboard renders an SVG chart per service without JavaScript, with the same totals.
    let (status, html) = app.get_text("/?from=2019-07-01&to=2019-07-05").await;
    assert_eq!(status, 200);
    assert!(html.contains("<svg"), "chart present");
    assert!(
        html.contains(&format!("data-total=\"{want_7pay}\"")),
        "7pay total on the dashboard"
    );
    assert!(!html.contains("<script"));
    // Panels follow the configured order of watched services.
    let at = |slug: &str| html.find(&format!("id=\"service-{slug}\"")).unwrap();
    assert!(
        at("7pay") < at("paypay") && at("paypay") < at("linepay") && at("linepay") < at("zaif")
    );
    let (status, html) = app.get_text("/en/?from=2019-07-01&to=2019-07-05").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Mentions per hour"),
        "five days: hourly buckets"
    );
    let (_, html) = app
        .get_text("/en/?from=2019-07-01&to=2019-07-05&interval=day")
        .await;
    assert!(html.contains("Mentions per day"));
    assert!(html.contains(&format!("data-total=\"{want_7pay}\"")));

    // The search page highlights and escapes.
    let (status, html) = app
        .get_text(&format!("/search?q={}", enc("不正利用")))
        .await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!(
        "<strong id=\"total\">{}</strong>",
        fixtures::count_containing("不正利用")
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_400s_never_500s() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path(), &[]), Some(dir)).await;
    let rows = [
        "/api/search?per_page=101",
        "/api/search?page=0",
        "/api/search?page=abc",
        "/api/search?page=100000&per_page=100",
        "/api/search?service=nopay",
        "/api/search?service=PayPay%20Dome",
        "/api/search?from=yesterday",
        "/api/search?from=2019-07-05&to=2019-07-01",
        "/api/search?kind=blog",
        "/api/search?sort=random",
        "/api/search?q=%22unclosed",
        "/api/search?q=title:(",
        "/api/timeseries?interval=week",
        "/api/timeseries?interval=hour&from=2000-01-01&to=2019-01-01",
    ];
    for path in rows {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {body}"
        );
    }
    let (status, html) = app.get_text("/search?q=%22unclosed").await;
    assert_eq!(status, 400);
    assert!(html.contains("role=\"alert\""));
}
