//! The public status page: pre-rendered bytes, ETags and encodings, no cookies, Statuspage
//! JSON, the operator API that changes it, and rebuilds on time events (ManualClock).
use crate::{spawn_app_with, test_now, test_settings, TestApp};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use std::io::Read;

async fn app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    spawn_app_with(test_settings(dir.path(), &[]), Some(dir)).await
}

async fn app_on(db: crate::TestDb) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    crate::spawn_app_on(test_settings(dir.path(), &[]), dir, db).await
}

/// A client that shows bytes as sent: no transparent decompression.
fn raw() -> reqwest::Client {
    reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .no_deflate()
        .build()
        .unwrap()
}

struct Got {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

async fn get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut r = raw().get(format!("{}{path}", app.base));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    Got {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

async fn send(app: &TestApp, method: &str, path: &str, body: Value) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let r = app
        .client
        .request(m, format!("{}{path}", app.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn json_of(app: &TestApp, path: &str) -> Value {
    let g = get(app, path, &[]).await;
    assert_eq!(g.status, 200, "{path}");
    serde_json::from_slice(&g.body).unwrap()
}

async fn components(app: &TestApp) {
    for (id, name, group) in [
        ("api", "決済API", "決済"),
        ("charge", "チャージ", "決済"),
        ("web", "ウェブサイト", ""),
    ] {
        let (s, v) = send(
            app,
            "PUT",
            &format!("/api/v1/components/{id}"),
            json!({ "name": name, "group": group }),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
}

/// The ids of the bar classes of a component on /status, oldest day first.
fn bars(html: &str, component: &str) -> Vec<String> {
    let start = html
        .find(&format!("id=\"component-{component}\""))
        .unwrap_or_else(|| panic!("component {component} on the page"));
    let rest = &html[start..];
    let list = &rest[rest.find("<ol class=\"bars\"").unwrap()..];
    let list = &list[..list.find("</ol>").unwrap()];
    list.split("<li class=\"s-")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_posted_by_an_operator_appears_everywhere_and_resolves() {
    for db in
        crate::engines("an_incident_posted_by_an_operator_appears_everywhere_and_resolves").await
    {
        an_incident_posted_by_an_operator_appears_everywhere_and_resolves_on(db).await;
    }
}

async fn an_incident_posted_by_an_operator_appears_everywhere_and_resolves_on(db: crate::TestDb) {
    let app = app_on(db).await;
    // Before anything exists: all operational.
    let g = get(&app, "/status", &[]).await;
    assert_eq!(g.status, 200);
    assert!(g.text().contains("全システム正常稼働"), "{}", g.text());

    components(&app).await;
    let (s, v) = send(
        &app,
        "POST",
        "/api/v1/incidents",
        json!({
            "name": "7pay チャージ不可",
            "body": "**チャージ** ができない事象を確認しています。<script>alert(1)</script>",
            "components": { "charge": "major_outage", "api": "degraded_performance" },
        }),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();

    let page = get(&app, "/status", &[]).await.text();
    assert!(page.contains("7pay チャージ不可"), "{page}");
    assert!(
        page.contains("重大な障害が発生しています"),
        "headline: {page}"
    );
    assert!(page.contains("調査中"));
    assert!(
        page.contains("<strong>チャージ</strong>"),
        "markdown rendered"
    );
    assert!(!page.contains("<script>"), "raw HTML is not passed through");
    assert!(page.contains("&lt;script&gt;"), "raw HTML shown as text");
    assert!(page.contains("パフォーマンス低下"));
    let en = get(&app, "/en/status", &[]).await.text();
    assert!(en.contains("Major Service Outage"), "{en}");
    assert!(en.contains("Investigating"));

    // Statuspage shapes.
    let summary = json_of(&app, "/api/v2/summary.json").await;
    assert_eq!(summary["status"]["indicator"], "critical");
    assert_eq!(summary["status"]["description"], "Major Service Outage");
    assert_eq!(summary["page"]["time_zone"], "Asia/Tokyo");
    assert!(summary["page"]["updated_at"]
        .as_str()
        .unwrap()
        .ends_with("+09:00"));
    let comps = summary["components"].as_array().unwrap();
    let group = comps.iter().find(|c| c["group"] == true).unwrap();
    assert_eq!(group["name"], "決済");
    assert_eq!(group["components"], json!(["api", "charge"]));
    assert_eq!(group["status"], "major_outage");
    let charge = comps.iter().find(|c| c["id"] == "charge").unwrap();
    assert_eq!(charge["status"], "major_outage");
    assert_eq!(charge["group_id"], group["id"]);
    let web = comps.iter().find(|c| c["id"] == "web").unwrap();
    assert_eq!(web["status"], "operational");
    assert_eq!(web["group_id"], Value::Null);
    let inc = &summary["incidents"][0];
    assert_eq!(inc["id"], id.as_str());
    assert_eq!(inc["status"], "investigating");
    assert_eq!(inc["impact"], "critical");
    assert_eq!(inc["incident_updates"][0]["status"], "investigating");
    assert_eq!(inc["components"].as_array().unwrap().len(), 2);
    assert_eq!(summary["scheduled_maintenances"], json!([]));
    let unresolved = json_of(&app, "/api/v2/incidents/unresolved.json").await;
    assert_eq!(unresolved["incidents"].as_array().unwrap().len(), 1);
    let status = json_of(&app, "/api/v2/status.json").await;
    assert_eq!(status["status"]["indicator"], "critical");

    // Timeline: identified → monitoring (経過観察) → resolved.
    for (stage, body) in [
        ("identified", "原因を特定しました。"),
        ("monitoring", "復旧を確認し、経過を観察しています。"),
    ] {
        let (s, v) = send(
            &app,
            "POST",
            &format!("/api/v1/incidents/{id}/updates"),
            json!({ "status": stage, "body": body }),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    let page = get(&app, "/status", &[]).await.text();
    assert!(page.contains("経過観察"));
    assert!(!page.contains("監視中"));
    let old_etag = get(&app, "/status", &[])
        .await
        .header("etag")
        .unwrap()
        .to_string();
    let (s, v) = send(
        &app,
        "PATCH",
        &format!("/api/v1/incidents/{id}"),
        json!({ "status": "resolved", "body": "解決しました。", "postmortem": "## 原因\n設定ミス" }),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    let g = get(&app, "/status", &[("if-none-match", &old_etag)]).await;
    assert_eq!(g.status, 200, "a change gives new bytes and a new ETag");
    assert!(
        g.text().contains("全システム正常稼働"),
        "components released"
    );
    let summary = json_of(&app, "/api/v2/summary.json").await;
    assert_eq!(summary["status"]["indicator"], "none");
    assert_eq!(summary["incidents"], json!([]));
    let all = json_of(&app, "/api/v2/incidents.json").await;
    assert_eq!(all["incidents"][0]["status"], "resolved");
    assert!(all["incidents"][0]["resolved_at"].is_string());
    assert_eq!(
        all["incidents"][0]["incident_updates"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    let detail = get(&app, &format!("/status/incidents/{id}"), &[]).await;
    assert_eq!(detail.status, 200);
    let detail = detail.text();
    for word in [
        "調査中",
        "原因特定",
        "経過観察",
        "解決済み",
        "事後報告",
        "設定ミス",
    ] {
        assert!(detail.contains(word), "{word} in {detail}");
    }
    let en = get(&app, &format!("/en/status/incidents/{id}"), &[])
        .await
        .text();
    assert!(en.contains("Postmortem") && en.contains("Resolved"));
    let history = get(&app, "/status/history", &[]).await.text();
    assert!(history.contains("7pay チャージ不可"));
    let atom = get(&app, "/status.atom", &[]).await;
    assert!(atom
        .header("content-type")
        .unwrap()
        .starts_with("application/atom+xml"));
    assert!(atom
        .text()
        .contains("<title>[解決済み] 7pay チャージ不可</title>"));
    let rss = get(&app, "/status.rss", &[]).await.text();
    assert!(rss.contains(&format!("/status/incidents/{id}</link>")));

    assert_eq!(get(&app, "/status/incidents/999", &[]).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_bytes_have_strong_etags_per_encoding_304s_and_never_a_cookie() {
    let app = app().await;
    components(&app).await;
    for path in ["/status", "/api/v2/summary.json"] {
        let plain = get(&app, path, &[("accept-encoding", "identity")]).await;
        assert_eq!(plain.status, 200);
        let etag = plain.header("etag").unwrap().to_string();
        assert!(
            etag.starts_with('"') && !etag.starts_with("W/"),
            "strong: {etag}"
        );
        assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
        assert_eq!(
            plain.header("cache-control"),
            Some("public, max-age=10, stale-while-revalidate=60")
        );

        let gz = get(&app, path, &[("accept-encoding", "gzip")]).await;
        assert_eq!(gz.header("content-encoding"), Some("gzip"));
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&gz.body[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, plain.body, "gzip decodes to the identity bytes");

        let br = get(&app, path, &[("accept-encoding", "gzip, deflate, br")]).await;
        assert_eq!(br.header("content-encoding"), Some("br"));
        let mut decoded = Vec::new();
        brotli::Decompressor::new(&br.body[..], 4096)
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, plain.body, "brotli decodes to the identity bytes");
        assert!(br.body.len() < plain.body.len());

        // An unrelated rebuild (no change to this document) keeps the bytes and the ETag.
        if path == "/api/v2/summary.json" {
            app.clock.set(test_now() + chrono::Duration::days(1));
            assert_eq!(
                get(&app, path, &[("accept-encoding", "identity")])
                    .await
                    .header("etag"),
                Some(etag.as_str())
            );
        }
        let tags = [
            etag.clone(),
            gz.header("etag").unwrap().to_string(),
            br.header("etag").unwrap().to_string(),
        ];
        assert!(tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2]);

        // 304 for the matching variant only.
        let again = get(
            &app,
            path,
            &[("accept-encoding", "gzip"), ("if-none-match", &tags[1])],
        )
        .await;
        assert_eq!(again.status, 304);
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), Some(tags[1].as_str()));
        let other = get(
            &app,
            path,
            &[("accept-encoding", "br"), ("if-none-match", &tags[1])],
        )
        .await;
        assert_eq!(other.status, 200);

        // A request carrying a session cookie still gets no Set-Cookie.
        let with_cookie = get(
            &app,
            path,
            &[
                ("cookie", "kizashi_session=abc; other=1"),
                ("accept-encoding", "br"),
            ],
        )
        .await;
        assert_eq!(with_cookie.status, 200);
        assert!(with_cookie.headers.get("set-cookie").is_none());
        assert_eq!(with_cookie.body, br.body, "same bytes for everyone");
        assert!(with_cookie.header("content-security-policy").is_some());
        assert_eq!(with_cookie.header("x-frame-options"), Some("DENY"));

        // HEAD: the same head, no body; other methods are not served the document.
        let head = app
            .client
            .head(format!("{}{path}", app.base))
            .header("accept-encoding", "br")
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(
            head.headers().get("etag").and_then(|v| v.to_str().ok()),
            Some(tags[2].as_str())
        );
        assert!(head.bytes().await.unwrap().is_empty());
        let post = app
            .client
            .post(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert!(
            post.status() == 404 || post.status() == 405,
            "POST {path}: {}",
            post.status()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_opens_and_closes_on_the_clock() {
    for db in crate::engines("maintenance_opens_and_closes_on_the_clock").await {
        maintenance_opens_and_closes_on_the_clock_on(db).await;
    }
}

async fn maintenance_opens_and_closes_on_the_clock_on(db: crate::TestDb) {
    let app = app_on(db).await;
    components(&app).await;
    let hour = chrono::Duration::hours(1);
    let start = test_now() + hour;
    let end = test_now() + hour * 3;
    let (s, v) = send(
        &app,
        "POST",
        "/api/v1/maintenances",
        json!({
            "name": "決済基盤メンテナンス",
            "body": "チャージが一時的に利用できません。",
            "starts_at": start.to_rfc3339(),
            "ends_at": end.to_rfc3339(),
            "components": ["charge"],
        }),
    )
    .await;
    assert_eq!(s, 201, "{v}");

    let summary = json_of(&app, "/api/v2/summary.json").await;
    assert_eq!(summary["scheduled_maintenances"][0]["status"], "scheduled");
    assert_eq!(summary["status"]["indicator"], "none");
    let page = get(&app, "/status", &[]).await.text();
    assert!(page.contains("メンテナンス予定") && page.contains("決済基盤メンテナンス"));
    let etag = get(&app, "/status", &[])
        .await
        .header("etag")
        .unwrap()
        .to_string();

    // One millisecond before the window nothing changes; at its start the page is rebuilt
    // although nothing was written.
    app.clock.set(start - chrono::Duration::milliseconds(1));
    let g = get(&app, "/status", &[("if-none-match", &etag)]).await;
    assert_eq!(g.status, 304);
    app.clock.set(start);
    let g = get(&app, "/status", &[("if-none-match", &etag)]).await;
    assert_eq!(g.status, 200);
    let page = g.text();
    assert!(page.contains("メンテナンス実施中"), "{page}");
    assert!(page.contains("data-status=\"under_maintenance\""));
    let summary = json_of(&app, "/api/v2/summary.json").await;
    assert_eq!(
        summary["scheduled_maintenances"][0]["status"],
        "in_progress"
    );
    assert_eq!(summary["status"]["indicator"], "maintenance");
    let charge = summary["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "charge")
        .unwrap()
        .clone();
    assert_eq!(charge["status"], "under_maintenance");
    let active = json_of(&app, "/api/v2/scheduled-maintenances/active.json").await;
    assert_eq!(
        active["scheduled_maintenances"].as_array().unwrap().len(),
        1
    );

    app.clock.set(end);
    let summary = json_of(&app, "/api/v2/summary.json").await;
    assert_eq!(summary["scheduled_maintenances"], json!([]));
    assert_eq!(summary["status"]["indicator"], "none");
    let all = json_of(&app, "/api/v2/scheduled-maintenances.json").await;
    assert_eq!(all["scheduled_maintenances"][0]["status"], "completed");
    let page = get(&app, "/status", &[]).await.text();
    assert!(!page.contains("メンテナンス実施中"));
    assert!(get(&app, "/status/history", &[])
        .await
        .text()
        .contains("決済基盤メンテナンス"));
    // The window shows in today's history bar.
    assert_eq!(bars(&page, "charge").last().unwrap(), "under_maintenance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_bars_record_impact_per_jst_day_and_roll_over_at_midnight() {
    let app = app().await;
    components(&app).await;
    let page = get(&app, "/status", &[]).await.text();
    let b = bars(&page, "api");
    assert_eq!(b.len(), 90);
    assert_eq!(b[89], "operational");
    assert!(
        b[..89].iter().all(|c| c == "none"),
        "no data before creation"
    );

    // An outage from 13:00 to 14:00 JST on 2019-07-06.
    app.clock.set(test_now() + chrono::Duration::hours(1));
    send(
        &app,
        "PUT",
        "/api/v1/components/api",
        json!({ "status": "partial_outage" }),
    )
    .await;
    app.clock.set(test_now() + chrono::Duration::hours(2));
    send(
        &app,
        "PUT",
        "/api/v1/components/api",
        json!({ "status": "operational" }),
    )
    .await;
    let page = get(&app, "/status", &[]).await.text();
    assert_eq!(bars(&page, "api")[89], "partial_outage");
    assert!(page.contains("2019-07-06 一部障害"));

    // JST midnight: 2019-07-07 00:00 JST, with no write in between.
    let midnight = chrono::DateTime::parse_from_rfc3339("2019-07-07T00:00:00+09:00")
        .unwrap()
        .with_timezone(&chrono::Utc);
    app.clock.set(midnight - chrono::Duration::seconds(1));
    assert_eq!(
        bars(&get(&app, "/status", &[]).await.text(), "api")[89],
        "partial_outage"
    );
    app.clock.set(midnight);
    let b = bars(&get(&app, "/status", &[]).await.text(), "api");
    assert_eq!(b[88], "partial_outage");
    assert_eq!(b[89], "operational");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_api_rejects_bad_input_with_clear_messages() {
    let app = app().await;
    components(&app).await;
    let rows = [
        (
            "PUT",
            "/api/v1/components/api",
            json!({ "status": "broken" }),
            400,
            "component status",
        ),
        (
            "PUT",
            "/api/v1/components/Bad Id",
            json!({ "name": "x" }),
            400,
            "slug",
        ),
        (
            "PUT",
            "/api/v1/components/new",
            json!({ "status": "operational" }),
            400,
            "needs a name",
        ),
        (
            "POST",
            "/api/v1/incidents",
            json!({ "name": "x", "components": { "nope": "major_outage" } }),
            404,
            "component \"nope\"",
        ),
        (
            "POST",
            "/api/v1/incidents",
            json!({ "name": " " }),
            400,
            "name",
        ),
        (
            "POST",
            "/api/v1/incidents",
            json!({ "name": "x", "status": "監視中" }),
            400,
            "incident status",
        ),
        (
            "POST",
            "/api/v1/incidents/42/updates",
            json!({ "status": "resolved", "body": "" }),
            404,
            "incident 42",
        ),
        (
            "POST",
            "/api/v1/maintenances",
            json!({ "name": "m", "starts_at": "2019-07-07", "ends_at": "2019-07-06" }),
            400,
            "before",
        ),
    ];
    for (method, path, body, want, msg) in rows {
        let (s, v) = send(&app, method, path, body).await;
        assert_eq!(s, want, "{method} {path}: {v}");
        if let Some(e) = v["error"].as_str() {
            assert!(e.contains(msg), "{method} {path}: {e}");
        }
    }
    // Nothing half-written: still no incidents.
    let all = json_of(&app, "/api/v2/incidents.json").await;
    assert_eq!(all["incidents"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_status_writes_the_public_documents_as_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let app = spawn_app_with(test_settings(&data, &[]), Some(dir)).await;
    components(&app).await;
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_kizashi"))
        .env("KIZASHI_DATA_DIR", &data)
        .env("KIZASHI_LOG", "warn")
        .current_dir(&data)
        .arg("export-status")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(status.status.success(), "{:?}", status);
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("api/v2/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["components"].as_array().unwrap().len(), 4);
    let html = std::fs::read_to_string(out.path().join("status/index.html")).unwrap();
    assert!(html.contains("決済API"));
    assert!(out.path().join("en/status/index.html").exists());
    assert!(out.path().join("status.atom").exists());
    let gz = std::fs::read(out.path().join("status/index.html.gz")).unwrap();
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut decoded)
        .unwrap();
    assert_eq!(decoded, html);
    assert!(out.path().join("status/index.html.br").exists());
    let css = html
        .split("/static/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(out.path().join("static").join(css).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_are_drawn_on_the_dashboard_charts() {
    let app = app().await;
    components(&app).await;
    let (_, before) = app.get_text("/").await;
    assert!(!before.contains("class=\"annotation\""));
    let (s, v) = send(
        &app,
        "POST",
        "/api/v1/incidents",
        json!({ "name": "7pay 不正利用の調査", "components": { "charge": "major_outage" } }),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (status, page) = app.get_text("/").await;
    assert_eq!(status, 200);
    let bands = page.matches("class=\"annotation\"").count();
    assert_eq!(bands, 10, "one band per watched service chart");
    assert!(page.contains("<title>7pay 不正利用の調査</title>"));
    assert!(page.contains(&format!("href=\"/status/incidents/{id}\"")));
    let (_, en) = app.get_text("/en/").await;
    assert!(en.contains(&format!("href=\"/en/status/incidents/{id}\"")));
}

/// Not a test: prints rebuild cost, sizes and a rough request rate for the pre-rendered
/// documents. `cargo test --test it measure_status -- --ignored --nocapture`. The load
/// generator shares the machine with the server, so the rate is a floor, not a benchmark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_status_serving() {
    let app = app().await;
    for i in 0..20 {
        send(
            &app,
            "PUT",
            &format!("/api/v1/components/c{i}"),
            json!({ "name": format!("コンポーネント{i}"), "group": format!("グループ{}", i % 4) }),
        )
        .await;
    }
    for i in 0..100 {
        let (_, v) = send(
            &app,
            "POST",
            "/api/v1/incidents",
            json!({ "name": format!("障害 {i}"), "body": "調査しています。", "components": { format!("c{}", i % 20): "partial_outage" } }),
        )
        .await;
        let id = v["id"].as_str().unwrap().to_string();
        for stage in ["identified", "resolved"] {
            send(
                &app,
                "POST",
                &format!("/api/v1/incidents/{id}/updates"),
                json!({ "status": stage, "body": "**更新** です。" }),
            )
            .await;
        }
    }
    let t = std::time::Instant::now();
    let n = 5;
    for _ in 0..n {
        // A component change forces a full rebuild before the answer.
        send(
            &app,
            "PUT",
            "/api/v1/components/c0",
            json!({ "status": "degraded_performance" }),
        )
        .await;
        send(
            &app,
            "PUT",
            "/api/v1/components/c0",
            json!({ "status": "operational" }),
        )
        .await;
    }
    let rendered = app.state.status.current();
    println!(
        "rebuild (write + render {} documents + gzip + brotli), mean of {}: {:?}",
        rendered.pages.len(),
        2 * n,
        t.elapsed() / (2 * n)
    );
    for path in ["/status", "/api/v2/summary.json"] {
        let p = rendered.get(path).unwrap();
        use kizashi::status::Encoding::*;
        println!(
            "{path}: identity {} B, gzip {} B, br {} B",
            p.body(Identity).len(),
            p.body(Gzip).len(),
            p.body(Brotli).len()
        );
    }
    // The same bytes from a minimal actix-web handler, for a relative comparison.
    let page = rendered.get("/status").unwrap();
    let (br_body, br_tag) = (
        page.body(kizashi::status::Encoding::Brotli).clone(),
        page.etag(kizashi::status::Encoding::Brotli).to_string(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let minimal = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let server = actix_web::HttpServer::new(move || {
        let (b, t) = (br_body.clone(), br_tag.clone());
        actix_web::App::new().route(
            "/status",
            actix_web::web::get().to(move || {
                let (b, t) = (b.clone(), t.clone());
                async move {
                    actix_web::HttpResponse::Ok()
                        .content_type("text/html; charset=utf-8")
                        .insert_header(("content-encoding", "br"))
                        .insert_header(("etag", t))
                        .body(b)
                }
            }),
        )
    })
    .workers(2)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    let ours = app.base.trim_start_matches("http://").to_string();
    let mut runs: Vec<(String, f64, f64)> = Vec::new();
    for round in 0..3 {
        for (name, addr, path) in [
            ("kizashi /status", &ours, "/status"),
            ("minimal handler /status", &minimal, "/status"),
            (
                "kizashi /api/v2/summary.json",
                &ours,
                "/api/v2/summary.json",
            ),
        ] {
            let (rps, p99) = load(addr, path, 32, 20_000).await;
            println!("round {round}: {name}: {rps:.0} req/s, p99 {p99:.2} ms");
            runs.push((name.to_string(), rps, p99));
        }
    }
    for name in [
        "kizashi /status",
        "minimal handler /status",
        "kizashi /api/v2/summary.json",
    ] {
        let mut r: Vec<&(String, f64, f64)> = runs.iter().filter(|x| x.0 == name).collect();
        r.sort_by(|a, b| a.1.total_cmp(&b.1));
        println!(
            "median of 3: {name}: {:.0} req/s, p99 {:.2} ms",
            r[1].1, r[1].2
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_by_another_node_reaches_this_nodes_pages() {
    for db in crate::engines("a_write_by_another_node_reaches_this_nodes_pages").await {
        a_write_by_another_node_reaches_this_nodes_pages_on(db).await;
    }
}

async fn a_write_by_another_node_reaches_this_nodes_pages_on(db: crate::TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let database = db.apply(test_settings(&data, &[])).database;
    let app = crate::spawn_app_on(test_settings(&data, &[]), dir, db).await;
    components(&app).await;
    let before = get(&app, "/api/v2/summary.json", &[]).await;
    // Another node: its own connection pool on the same database, no call into this app.
    let other = kizashi::store::Store::connect(&database).await.unwrap();
    other
        .create_incident(
            &kizashi::store::NewIncident {
                name: "別ノードからの障害".into(),
                status: kizashi::domain::status::IncidentStatus::Investigating,
                body: String::new(),
                components: vec![],
                impact: None,
            },
            test_now(),
        )
        .await
        .unwrap();
    // The poller compares the stored version once a second; wait (bounded) for it.
    let mut seen = false;
    for _ in 0..100 {
        let now = get(&app, "/api/v2/summary.json", &[]).await;
        if String::from_utf8_lossy(&now.body).contains("別ノードからの障害") {
            assert_ne!(now.header("etag"), before.header("etag"));
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen, "the page was rebuilt from the stored version");
    // HEAD answers with the same validators and no body.
    let head = raw()
        .head(format!("{}/status", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.headers().get("etag").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_bytes_are_served_when_the_database_is_gone() {
    let app = app().await;
    components(&app).await;
    let before = get(&app, "/status", &[]).await;
    assert_eq!(before.status, 200);
    app.state.store.close().await;
    // Past JST midnight a rebuild is due, but the database cannot answer.
    app.clock.set(test_now() + chrono::Duration::days(1));
    let after = get(&app, "/status", &[]).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.body, before.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_is_sent_as_is_even_to_clients_that_only_accept_deflate() {
    let app = app().await;
    let plain = get(&app, "/status", &[]).await;
    let deflate = get(&app, "/status", &[("accept-encoding", "deflate")]).await;
    assert_eq!(deflate.header("content-encoding"), None);
    assert_eq!(deflate.body, plain.body);
    assert_eq!(deflate.header("etag"), plain.header("etag"));
    // Other pages are still compressed on the fly.
    let dash = get(&app, "/", &[("accept-encoding", "gzip")]).await;
    assert_eq!(dash.header("content-encoding"), Some("gzip"));
}

/// A small keep-alive HTTP/1.1 load generator: `conns` connections send `total` GETs with
/// `Accept-Encoding: br` and read each response by its Content-Length. Returns (requests per
/// second, p99 latency in ms).
async fn load(addr: &str, path: &str, conns: usize, total: usize) -> (f64, f64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept-Encoding: gzip, deflate, br\r\n\r\n"
    );
    let start = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (addr, request) = (addr.to_string(), request.clone());
        tasks.push(tokio::spawn(async move {
            let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
            sock.set_nodelay(true).unwrap();
            let mut lat = Vec::with_capacity(total / conns);
            let mut buf = vec![0u8; 256 * 1024];
            for _ in 0..total / conns {
                let t = std::time::Instant::now();
                sock.write_all(request.as_bytes()).await.unwrap();
                let mut have = 0;
                let (head_end, len) = loop {
                    let n = sock.read(&mut buf[have..]).await.unwrap();
                    assert!(n > 0, "server closed");
                    have += n;
                    if let Some(p) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                        assert!(head.starts_with("http/1.1 200"), "{head}");
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map(|v| v.trim().parse().unwrap())
                            .unwrap();
                        break (p + 4, len);
                    }
                };
                while have < head_end + len {
                    have += sock.read(&mut buf[have..]).await.unwrap();
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    (all.len() as f64 / secs, all[all.len() * 99 / 100])
}
