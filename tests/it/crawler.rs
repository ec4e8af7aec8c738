//! Crawler politeness and safety against local fixture servers: per-host rate, hostile and
//! broken sources, private-address refusal, backoff and Retry-After.
use crate::fixtures::{FixtureServer, Response};
use crate::{spawn_app_with, test_settings_with, TestApp};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

fn rss(tag: &str, n: usize) -> String {
    let items: String = (0..n)
        .map(|i| format!("<item><title>{tag} 記事{i}</title><link>https://example.jp/{tag}/{i}</link><description>PayPayの話題{i}</description></item>"))
        .collect();
    format!("<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>{tag}</title>{items}</channel></rss>")
}

async fn crawl(app: &TestApp) -> BTreeMap<String, serde_json::Value> {
    let r = app
        .client
        .post(format!("{}/api/crawl", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Vec<serde_json::Value> = r.json().await.unwrap();
    v.into_iter()
        .map(|s| (s["source"].as_str().unwrap().to_string(), s))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sources_on_twenty_hosts_respect_the_per_host_rate() {
    const INTERVAL_MS: u64 = 100;
    let mut servers = Vec::new();
    let mut sources = Vec::new();
    for h in 1..=20 {
        let server = FixtureServer::start_on(&format!("127.0.0.{h}")).await;
        for i in 0..10 {
            let path = format!("/feed{i}.xml");
            server.set(
                &path,
                Response::ok("application/rss+xml", rss(&format!("h{h}f{i}"), 2)),
            );
            sources.push((format!("h{h}-f{i}"), format!("{}{path}", server.base)));
        }
        servers.push(server);
    }
    let dir = tempfile::tempdir().unwrap();
    let refs: Vec<(&str, &str, &str)> = sources
        .iter()
        .map(|(n, u)| (n.as_str(), u.as_str(), "news"))
        .collect();
    let crawl_cfg = format!(
        "allow_private_networks = true\nper_host_interval_ms = {INTERVAL_MS}\nconcurrency = 8\n"
    );
    let app = spawn_app_with(test_settings_with(dir.path(), &crawl_cfg, &refs), Some(dir)).await;
    let summary = crawl(&app).await;
    assert_eq!(summary.len(), 200);
    assert!(
        summary
            .values()
            .all(|s| s["status"] == "ok" && s["new_items"] == 2),
        "{summary:?}"
    );
    // Measured at the servers. Arrival times jitter under load (a delayed accept makes the
    // next gap look short), so the rate is checked as the servers see it over windows: the
    // average spacing per host, and no window of three intervals holding more than four
    // requests (four would already be a burst of twice the rate).
    let interval = Duration::from_millis(INTERVAL_MS);
    for s in &servers {
        let mut times: Vec<_> = s.arrivals.lock().unwrap().iter().map(|(_, t)| *t).collect();
        assert_eq!(times.len(), 10);
        times.sort();
        let span = times[9] - times[0];
        assert!(
            span >= interval * 9 * 95 / 100,
            "10 requests to one host within {span:?}"
        );
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|u| **u - *t < interval * 3)
                .count();
            assert!(
                in_window <= 4,
                "{in_window} requests within {:?}",
                interval * 3
            );
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sources_fail_alone_and_back_off() {
    let server = FixtureServer::start().await;
    let b = server.base.clone();
    server.set(
        "/good.xml",
        Response::ok("application/rss+xml", rss("good", 3)),
    );
    server.set(
        "/slow.xml",
        Response {
            drip_ms: 300,
            ..Response::ok("application/rss+xml", rss("slow", 3))
        },
    );
    server.set(
        "/huge.xml",
        Response::ok("application/rss+xml", vec![b' '; 300 * 1024]),
    );
    server.set(
        "/bomb.xml",
        Response::ok("application/rss+xml", gzip(&vec![b' '; 4 * 1024 * 1024]))
            .header("Content-Encoding", "gzip"),
    );
    server.set(
        "/loop.xml",
        Response::status(302).header("Location", &format!("{b}/loop.xml")),
    );
    server.set(
        "/garbage.xml",
        Response::ok(
            "application/rss+xml",
            (0..5000u32)
                .map(|i| (i * 7919 % 251) as u8)
                .collect::<Vec<u8>>(),
        ),
    );
    server.set(
        "/html.xml",
        Response::ok("text/html", "<!doctype html><html><title>x</title></html>"),
    );
    server.set(
        "/busy.xml",
        Response::status(429).header("Retry-After", "3600"),
    );
    let names = [
        "good", "slow", "huge", "bomb", "loop", "garbage", "html", "busy", "gone",
    ];
    let urls: Vec<String> = names.iter().map(|n| format!("{b}/{n}.xml")).collect();
    let sources: Vec<(&str, &str, &str)> = names
        .iter()
        .zip(&urls)
        .map(|(n, u)| (*n, u.as_str(), "news"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let cfg = "allow_private_networks = true\ntimeout_secs = 1\nmax_body_bytes = 102400\nper_host_interval_ms = 1\nbackoff_base_secs = 60\n";
    let app = spawn_app_with(test_settings_with(dir.path(), cfg, &sources), Some(dir)).await;

    let s = crawl(&app).await;
    assert_eq!(s["good"]["status"], "ok");
    assert_eq!(s["good"]["new_items"], 3);
    let err = |n: &str| s[n]["error"].as_str().unwrap_or("").to_string();
    assert!(err("slow").contains("longer than"), "{}", err("slow"));
    assert!(err("huge").contains("larger than"), "{}", err("huge"));
    assert!(
        err("bomb").contains("larger than"),
        "decompressed size counts: {}",
        err("bomb")
    );
    assert!(err("loop").contains("redirect"), "{}", err("loop"));
    assert!(
        err("garbage").contains("parse") || err("garbage").contains("not a feed"),
        "{}",
        err("garbage")
    );
    assert!(err("html").contains("HTML page"), "{}", err("html"));
    assert!(err("busy").contains("429"), "{}", err("busy"));
    assert!(err("gone").contains("404"), "{}", err("gone"));
    for n in &names[1..] {
        assert_eq!(s[*n]["status"], "error", "{n}: {:?}", s[*n]);
    }
    // Retry-After (1 h) outweighs the first backoff step (60 s); a plain failure waits 60 s.
    let until = |n: &str| {
        chrono::DateTime::parse_from_rfc3339(s[n]["backoff_until"].as_str().unwrap()).unwrap()
    };
    let now = crate::test_now();
    assert_eq!(
        (until("busy").with_timezone(&chrono::Utc) - now).num_seconds(),
        3600
    );
    assert_eq!(
        (until("gone").with_timezone(&chrono::Utc) - now).num_seconds(),
        60
    );

    // While backing off, failing sources are not fetched; the good one still is.
    let before = server.hits.lock().unwrap().clone();
    let s2 = crawl(&app).await;
    assert_eq!(s2["gone"]["status"], "backing_off");
    assert_eq!(
        server.hits.lock().unwrap().get("/gone.xml"),
        before.get("/gone.xml")
    );
    assert_eq!(s2["good"]["status"], "ok");

    // After the backoff a failing source is tried again and its delay doubles.
    app.clock.set(now + chrono::Duration::seconds(61));
    let s3 = crawl(&app).await;
    assert_eq!(s3["gone"]["status"], "error");
    let until3 =
        chrono::DateTime::parse_from_rfc3339(s3["gone"]["backoff_until"].as_str().unwrap())
            .unwrap();
    assert_eq!(
        (until3.with_timezone(&chrono::Utc) - (now + chrono::Duration::seconds(61))).num_seconds(),
        120
    );
    assert_eq!(s3["busy"]["status"], "backing_off");

    // The server still answers.
    let (status, _) = app.get_json("/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_unless_allowed() {
    let server = FixtureServer::start().await;
    server.set(
        "/feed.xml",
        Response::ok("application/rss+xml", rss("p", 1)),
    );
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let literal = format!("http://127.0.0.1:{port}/feed.xml");
    let by_name = format!("http://localhost:{port}/feed.xml");
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(
        test_settings_with(
            dir.path(),
            "allow_private_networks = false\n",
            &[("literal", &literal, "news"), ("named", &by_name, "news")],
        ),
        Some(dir),
    )
    .await;
    let s = crawl(&app).await;
    for n in ["literal", "named"] {
        assert_eq!(s[n]["status"], "error");
        assert!(
            s[n]["error"].as_str().unwrap().contains("private"),
            "{n}: {:?}",
            s[n]
        );
    }
    assert_eq!(
        server.hits.lock().unwrap().get("/feed.xml"),
        None,
        "no request reached the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syndicated_stories_share_a_dup_group() {
    let story = "セブン&アイ・ホールディングスは4日、スマートフォン決済サービス「7pay」で第三者による不正アクセスがあり、約900人が合計約5500万円の被害を受けたと発表した。同社はクレジットカードなどからのチャージを停止し、二段階認証の導入を検討する。";
    let other = "PayPayは、加盟店での支払いで最大20%を還元するキャンペーンを来月から始めると発表した。対象は全国のコンビニエンスストアやドラッグストアで、期間中は一回あたりの上限も引き上げる予定で、利用者の拡大を狙う。";
    let feed = |tag: &str, body: &str, extra: &str| {
        format!("<rss version=\"2.0\"><channel><title>{tag}</title><item><title>7pay不正アクセス</title><link>https://{tag}.example.jp/a</link><description>{}</description><pubDate>Thu, 04 Jul 2019 18:00:00 +0900</pubDate></item><item><title>還元</title><link>https://{tag}.example.jp/b</link><description>{other}</description><pubDate>Thu, 04 Jul 2019 19:00:00 +0900</pubDate></item></channel></rss>", body.replace('&', "&amp;") + extra)
    };
    let server = FixtureServer::start().await;
    server.set(
        "/a.xml",
        Response::ok("application/rss+xml", feed("alpha", story, "")),
    );
    server.set(
        "/b.xml",
        Response::ok("application/rss+xml", feed("beta", story, "（共同）")),
    );
    let (a, b) = (
        format!("{}/a.xml", server.base),
        format!("{}/b.xml", server.base),
    );
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(
        crate::test_settings(dir.path(), &[("alpha", &a, "news"), ("beta", &b, "news")]),
        Some(dir),
    )
    .await;
    crawl(&app).await;
    let g = |u: &str| {
        let store = app.state.store.clone();
        let u = u.to_string();
        async move { store.dup_group_of(&u).await.unwrap().unwrap() }
    };
    assert_eq!(
        g("https://alpha.example.jp/a").await,
        g("https://beta.example.jp/a").await
    );
    assert_ne!(
        g("https://alpha.example.jp/a").await,
        g("https://alpha.example.jp/b").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misskey_and_bluesky_searches_with_sign_in() {
    let server = FixtureServer::start().await;
    let b = server.base.clone();
    server.set(
        "/api/notes/search",
        Response::ok("application/json", r#"[{"id":"9x1","createdAt":"2019-07-03T01:00:00.000Z","text":"7payで身に覚えのないチャージ","user":{"username":"alice"}}]"#),
    );
    server.set(
        "/xrpc/com.atproto.server.createSession",
        Response::ok(
            "application/json",
            r#"{"accessJwt":"tok-123","did":"did:plc:x"}"#,
        ),
    );
    server.set(
        "/xrpc/app.bsky.feed.searchPosts?q=7pay&limit=100&sort=latest",
        Response {
            require_header: Some("authorization: Bearer tok-123".into()),
            ..Response::ok("application/json", r#"{"posts":[{"uri":"at://did:plc:y/app.bsky.feed.post/3kq","author":{"handle":"bob.bsky.social"},"record":{"text":"7payこわい","createdAt":"2019-07-03T11:00:00+09:00"}}]}"#)
        },
    );
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("BSKY_TEST_APP_PASSWORD", "s3cret-app-pw");
    let toml = format!(
        "bind = \"127.0.0.1:0\"\ndata_dir = {:?}\n[crawl]\nallow_private_networks = true\nper_host_interval_ms = 1\n\
         [[sources]]\nname = \"misskey\"\nkind = \"misskey\"\nurl = \"{b}/api/notes/search\"\nquery = \"7pay\"\nschedule = \"0 0 0 1 1 *\"\nitem_kind = \"social\"\n\
         [[sources]]\nname = \"bsky\"\nkind = \"bluesky\"\nurl = \"{b}\"\nquery = \"7pay\"\nidentifier = \"kizashi.bsky.social\"\napp_password_env = \"BSKY_TEST_APP_PASSWORD\"\nschedule = \"0 0 0 1 1 *\"\nitem_kind = \"social\"\n",
        dir.path().display().to_string()
    );
    let settings =
        kizashi::config::Settings::from_sources(Some(("t.toml", &toml)), std::iter::empty())
            .unwrap();
    assert!(
        !format!("{settings:?}").contains("s3cret-app-pw"),
        "the password never appears in debug output"
    );
    let app = spawn_app_with(settings, Some(dir)).await;
    let s = crawl(&app).await;
    assert_eq!(s["misskey"]["new_items"], 1, "{:?}", s["misskey"]);
    assert_eq!(
        s["bsky"]["new_items"],
        1,
        "{:?} {:?}",
        s["bsky"],
        server.requests.lock().unwrap()
    );
    let requests = server.requests.lock().unwrap().clone();
    let search = requests
        .iter()
        .find(|r| r.starts_with("POST /api/notes/search"))
        .unwrap();
    assert!(search.contains(r#""query":"7pay""#), "{search}");
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.contains("createSession"))
            .count(),
        1
    );
    // A second crawl reuses the session.
    crawl(&app).await;
    assert_eq!(
        server
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.contains("createSession"))
            .count(),
        1
    );
    app.wait_indexed().await;
    let (_, body) = app.get_json("/api/search?kind=social&service=7pay").await;
    assert_eq!(body["total"], 2, "{body}");
    let urls: Vec<&str> = body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["url"].as_str().unwrap())
        .collect();
    assert!(urls.contains(&"https://bsky.app/profile/bob.bsky.social/post/3kq"));
    assert!(urls.iter().any(|u| u.ends_with("/notes/9x1")));
    let sources_json = serde_json::to_string(
        &kizashi::jobs::source_statuses(&app.state.store, crate::test_now())
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(!sources_json.contains("s3cret-app-pw"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn article_pages_are_fetched_when_robots_txt_allows() {
    let server = FixtureServer::start().await;
    let b = server.base.clone();
    let feed = format!(
        "<rss version=\"2.0\"><channel><title>t</title>\
         <item><title>許可された記事</title><link>{b}/news/1</link><description>要約のみ</description></item>\
         <item><title>禁止された記事</title><link>{b}/private/2</link><description>要約のみ</description></item>\
         </channel></rss>"
    );
    server.set("/feed.xml", Response::ok("application/rss+xml", feed));
    server.set(
        "/robots.txt",
        Response::ok("text/plain", "User-agent: *\nDisallow: /private/\n"),
    );
    let page = |t: &str| {
        format!("<html><head><title>{t}</title></head><body><nav><p>メニュー</p></nav><article><p>7payの不正利用について、同社は二段階認証を導入すると発表した。</p><p>被害は全額補償する。</p></article></body></html>")
    };
    server.set(
        "/news/1",
        Response::ok("text/html; charset=utf-8", page("1")),
    );
    server.set(
        "/private/2",
        Response::ok("text/html; charset=utf-8", page("2")),
    );
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "bind = \"127.0.0.1:0\"\ndata_dir = {:?}\n[crawl]\nallow_private_networks = true\nper_host_interval_ms = 1\n\
         [[sources]]\nname = \"articles\"\nurl = \"{b}/feed.xml\"\nfetch_article = true\nschedule = \"0 0 0 1 1 *\"\n",
        dir.path().display().to_string()
    );
    let settings =
        kizashi::config::Settings::from_sources(Some(("t.toml", &toml)), std::iter::empty())
            .unwrap();
    let app = spawn_app_with(settings, Some(dir)).await;
    let s = crawl(&app).await;
    assert_eq!(s["articles"]["new_items"], 2);
    assert_eq!(
        server.hits.lock().unwrap().get("/private/2"),
        None,
        "robots.txt disallows it"
    );
    assert_eq!(server.hits.lock().unwrap().get("/robots.txt"), Some(&1));
    app.wait_indexed().await;
    let (_, body) = app
        .get_json(&format!("/api/search?q={}", crate::enc("二段階認証")))
        .await;
    assert_eq!(
        body["total"], 1,
        "only the allowed page's text was stored: {body}"
    );
    assert_eq!(body["hits"][0]["title"], "許可された記事");
    // Known items are not fetched again.
    crawl(&app).await;
    assert_eq!(server.hits.lock().unwrap().get("/news/1"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_update_in_place_and_stale_feeds_are_flagged() {
    let server = FixtureServer::start().await;
    let feed = |body: &str| {
        format!("<rss version=\"2.0\"><channel><title>t</title><item><guid>a1</guid><title>PayPayの障害</title><link>https://example.jp/a1</link><description>{body}</description></item></channel></rss>")
    };
    server.set(
        "/f.xml",
        Response::ok("application/rss+xml", feed("決済できない状態が続いた")),
    );
    let url = format!("{}/f.xml", server.base);
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(
        test_settings_with(
            dir.path(),
            "allow_private_networks = true\nper_host_interval_ms = 1\nstale_after_hours = 24\n",
            &[("f", &url, "news")],
        ),
        Some(dir),
    )
    .await;
    assert_eq!(crawl(&app).await["f"]["new_items"], 1);
    // The publisher edits the item: same guid, new text — updated in place, searchable anew.
    server.set(
        "/f.xml",
        Response::ok("application/rss+xml", feed("現在は復旧している")),
    );
    let s = crawl(&app).await;
    assert_eq!(
        (
            s["f"]["new_items"].as_u64(),
            s["f"]["updated_items"].as_u64()
        ),
        (Some(0), Some(1))
    );
    assert_eq!(app.state.store.item_count().await.unwrap(), 1);
    app.wait_indexed().await;
    let (_, body) = app
        .get_json(&format!("/api/search?q={}", crate::enc("復旧")))
        .await;
    assert_eq!(body["total"], 1);
    let (_, body) = app
        .get_json(&format!("/api/search?q={}", crate::enc("決済できない")))
        .await;
    assert_eq!(body["total"], 0, "the old text left the index");
    // Same bytes a day and more later: alive but stale.
    assert_eq!(s["f"]["stale"], false);
    app.clock
        .set(crate::test_now() + chrono::Duration::hours(25));
    let s = crawl(&app).await;
    assert_eq!(s["f"]["stale"], true, "{:?}", s["f"]);
    assert!(s["f"]["error"]
        .as_str()
        .unwrap()
        .contains("has not changed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_deleted_at_the_source_leave_the_index() {
    let server = FixtureServer::start().await;
    let b = server.base.clone();
    let feed = |ids: &[&str]| {
        let items: String = ids
            .iter()
            .map(|i| {
                format!("<item><title>PayPay障害の続報{i}</title><link>{b}/items/{i}</link></item>")
            })
            .collect();
        format!("<rss version=\"2.0\"><channel><title>t</title>{items}</channel></rss>")
    };
    for i in ["a", "b", "c"] {
        server.set(
            &format!("/items/{i}"),
            Response::ok("text/html", "<p>記事</p>"),
        );
    }
    server.set(
        "/f.xml",
        Response::ok("application/rss+xml", feed(&["a", "b", "c"])),
    );
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "bind = \"127.0.0.1:0\"\ndata_dir = {:?}\n[crawl]\nallow_private_networks = true\nper_host_interval_ms = 1\n\
         [[sources]]\nname = \"v\"\nurl = \"{b}/f.xml\"\nverify_deletions_days = 7\nschedule = \"0 0 0 1 1 *\"\n",
        dir.path().display().to_string()
    );
    let settings =
        kizashi::config::Settings::from_sources(Some(("t.toml", &toml)), std::iter::empty())
            .unwrap();
    let app = spawn_app_with(settings, Some(dir)).await;
    assert_eq!(crawl(&app).await["v"]["new_items"], 3);
    // b is withdrawn by the publisher (404); c merely rolled out of the feed (still 200).
    server.set("/items/b", Response::status(404));
    server.set("/f.xml", Response::ok("application/rss+xml", feed(&["a"])));
    let s = crawl(&app).await;
    assert_eq!(s["v"]["deleted_items"], 1, "{:?}", s["v"]);
    app.wait_indexed().await;
    let mut urls = app
        .hit_slugs(&format!("/api/search?q={}&per_page=10", crate::enc("続報")))
        .await;
    urls.sort();
    assert_eq!(urls, ["a", "c"]);
}
