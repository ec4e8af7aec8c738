//! Scale-out on PostgreSQL: two web nodes and one worker on loopback share one database.
//! The worker crawls (its scheduler, every second); each web node keeps its own index in its
//! own data dir and follows the change sequence; status writes, sessions and TOTP replay
//! state live in the database, so what one web node did holds on the other.
use crate::accounts::{enrol, Browser, ClockNow, PASSWORD};
use crate::fixtures::{rss2, FixtureServer, Response, NEWS};
use crate::{fresh_postgres, TestApp, TestDb};
use kizashi::app::Role;
use kizashi::auth;
use std::time::Duration;

/// A node: its own data dir (index), the shared database, one feed crawled every second
/// (only a node whose role runs jobs has the scheduler).
async fn node(db: &TestDb, role: Role, feed: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "bind = \"127.0.0.1:0\"\ndata_dir = {:?}\n\
         [crawl]\nallow_private_networks = true\ntimeout_secs = 5\nper_host_interval_ms = 20\n\
         [[sources]]\nname = \"news\"\nurl = \"{feed}\"\nschedule = \"* * * * * *\"\nitem_kind = \"news\"\n",
        dir.path().display().to_string()
    );
    let settings =
        kizashi::config::Settings::from_sources(Some(("cluster.toml", &toml)), std::iter::empty())
            .unwrap();
    crate::spawn_app_as(db.apply(settings), Some(dir), role).await
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..150 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_web_nodes_and_one_worker_share_postgresql() {
    let Some(db) = fresh_postgres("cluster").await else {
        crate::skipped(
            "two_web_nodes_and_one_worker_share_postgresql",
            "(PostgreSQL only)",
        );
        return;
    };
    let server = FixtureServer::start().await;
    server.set(
        "/news.xml",
        Response::ok("application/rss+xml", rss2(&server.base, NEWS)),
    );
    let feed = format!("{}/news.xml", server.base);
    let a = node(&db, Role::Web, &feed).await;
    let b = node(&db, Role::Web, &feed).await;

    // Web nodes never crawl: not on their (absent) schedule, not on request.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(server.hits.lock().unwrap().values().sum::<usize>(), 0);
    let r = a
        .client
        .post(format!("{}/api/crawl", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "{}", r.text().await.unwrap());
    assert_eq!(server.hits.lock().unwrap().values().sum::<usize>(), 0);

    // The worker crawls on its schedule; its HTTP answers health and metrics only.
    let worker = node(&db, Role::Worker, &feed).await;
    assert_eq!(worker.get_text("/healthz").await.0, 200);
    assert_eq!(worker.get_text("/metrics").await.0, 200);
    assert_eq!(worker.get_text("/").await.0, 404);
    let store = &worker.state.store;
    eventually("the worker stored every fixture item", || async {
        store.item_count().await.unwrap() == NEWS.len() as i64
    })
    .await;
    assert!(server.hits.lock().unwrap()["/news.xml"] >= 1);

    // Both web nodes index what the worker stored, each in its own index.
    let want = NEWS.iter().filter(|r| r.mentions_7pay).count();
    assert!(want > 0);
    for web in [&a, &b] {
        web.wait_indexed().await;
        let (status, body) = web.get_json("/api/search?q=7pay&per_page=100").await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body["total"].as_u64().unwrap() >= want as u64,
            "{}: {body}",
            web.base
        );
    }
    assert_eq!(
        a.hit_slugs("/api/search?q=7pay&per_page=100&sort=newest")
            .await,
        b.hit_slugs("/api/search?q=7pay&per_page=100&sort=newest")
            .await
    );
    assert_ne!(
        a.state.settings.index_dir(),
        b.state.settings.index_dir(),
        "each web node has its own index"
    );

    // A status incident posted through node A appears on node B's pre-rendered page.
    let r = a
        .client
        .post(format!("{}/api/v1/incidents", a.base))
        .json(&serde_json::json!({
            "name": "ノードAからの障害", "status": "investigating", "body": "調査中です。"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    eventually("node B's /status shows node A's incident", || async {
        b.get_text("/status").await.1.contains("ノードAからの障害")
    })
    .await;

    // A session made by signing in on node A is valid on node B, and the TOTP code used on
    // A is refused on B (replay state in the database).
    let (secret, _) = enrol(&a, "ops", auth::Role::Operator).await;
    let secret = secret.unwrap();
    a.advance(30);
    b.advance(30);
    let code = auth::totp_code(&secret, a.clock_now().timestamp()).unwrap();
    let mut on_a = Browser::new(&a);
    assert_eq!(on_a.login("ops", PASSWORD, &code).await.status, 303);
    let mut on_b = Browser::new(&b);
    assert_eq!(on_b.get("/account").await.status, 303, "no session yet");
    on_b.cookies = on_a.cookies.clone();
    let page = on_b.get("/account").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("ops"));
    let replay = auth::login(
        &b.state.store,
        "ops",
        PASSWORD,
        &code,
        "192.0.2.1",
        b.clock_now(),
    )
    .await;
    assert!(
        matches!(replay, Err(auth::AuthError::BadCredentials)),
        "{:?}",
        replay.map(|s| s.user)
    );

    // Lockouts too: five failures on B lock the account on A.
    let mut bad = Browser::new(&b);
    for _ in 0..5 {
        bad.login("ops", "not the password", "").await;
    }
    let code = crate::accounts::next_code(&a, &secret);
    assert_eq!(
        Browser::new(&a).login("ops", PASSWORD, &code).await.status,
        429
    );
}
