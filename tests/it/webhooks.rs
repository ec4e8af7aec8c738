//! Outgoing webhooks on incident changes: Statuspage-shaped payload, HMAC signature, retry
//! with backoff on the (manual) clock, and the delivery log.
use crate::{spawn_app_with, test_settings, TestApp};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A receiver on 127.0.0.1 that answers the given statuses in turn (then 200) and keeps
/// each request's head and body.
async fn receiver(statuses: Vec<u16>) -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Received = Arc::default();
    let seen = got.clone();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break p + 4;
                }
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            while buf.len() < head_end + len {
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
            }
            let status = statuses.get(n).copied().unwrap_or(200);
            n += 1;
            seen.lock().unwrap().push((head, buf[head_end..].to_vec()));
            let reply =
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = sock.write_all(reply.as_bytes()).await;
        }
    });
    (url, got)
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

async fn log(app: &TestApp) -> Vec<(String, String, String, i64, Option<i64>)> {
    app.state.store.webhook_log(10).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_changes_are_posted_signed_and_retried() {
    let (url, got) = receiver(vec![500]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path(), &[]);
    let secret = "webhook-secret-0123456789";
    settings.webhooks = vec![kizashi::config::WebhookConfig {
        url: url.parse().unwrap(),
        secret: Some(secret.into()),
        format: kizashi::config::WebhookFormat::Json,
        incidents: true,
        alerts: true,
    }];
    let app = spawn_app_with(settings, Some(dir)).await;
    app.client
        .put(format!("{}/api/v1/components/charge", app.base))
        .json(&json!({ "name": "チャージ" }))
        .send()
        .await
        .unwrap();
    let r = app
        .client
        .post(format!("{}/api/v1/incidents", app.base))
        .json(&json!({ "name": "7pay 不正チャージ", "body": "調査中です。", "components": { "charge": "major_outage" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // First attempt: the receiver answers 500; the delivery waits for its retry time.
    wait_until("first attempt recorded", || {
        block_on(log(&app)).first().is_some_and(|l| l.3 == 1)
    })
    .await;
    let first = log(&app).await;
    assert_eq!(first[0].2, "pending");
    assert_eq!(first[0].4, Some(500));
    let (head, body) = got.lock().unwrap()[0].clone();
    let payload: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(payload["event"], "incident.created");
    assert_eq!(payload["incident"]["name"], "7pay 不正チャージ");
    assert_eq!(payload["incident"]["status"], "investigating");
    assert_eq!(
        payload["incident"]["components"][0]["status"],
        "major_outage"
    );
    let sig = kizashi::notify::signature(secret, &body);
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("x-kizashi-signature: {sig}")),
        "{head}"
    );
    assert!(head
        .to_ascii_lowercase()
        .contains("x-kizashi-event: incident.created"));

    // Ten seconds later (manual clock) the retry goes out and succeeds.
    app.clock
        .set(kizashi::clock::Clock::now(&app.clock) + chrono::Duration::seconds(10));
    wait_until("retry delivered", || {
        block_on(log(&app))
            .first()
            .is_some_and(|l| l.2 == "delivered")
    })
    .await;
    assert_eq!(got.lock().unwrap().len(), 2);
    assert_eq!(
        got.lock().unwrap()[1].1,
        body,
        "the retry sends the same payload"
    );
}

/// Runs a short store read from a sync closure inside the async test.
fn block_on<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// An alert that opens reaches the receivers that asked for alerts — as a Slack message or as
/// JSON — and not the one that takes incidents only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_go_to_alert_receivers_as_slack_messages_or_json() {
    use kizashi::config::{WebhookConfig, WebhookFormat};
    let (slack_url, slack) = receiver(vec![]).await;
    let (json_url, json_got) = receiver(vec![]).await;
    let (inc_url, incidents_only) = receiver(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path(), &[]);
    let hook = |url: &str, format, incidents, alerts| WebhookConfig {
        url: url.parse().unwrap(),
        secret: None,
        format,
        incidents,
        alerts,
    };
    settings.webhooks = vec![
        hook(&slack_url, WebhookFormat::Slack, false, true),
        hook(&json_url, WebhookFormat::Json, true, true),
        hook(&inc_url, WebhookFormat::Json, true, false),
    ];
    let app = spawn_app_with(settings, Some(dir)).await;
    // A week of quiet PayPay chatter, then a burst of fraud reports in one hour.
    let at = |h: i64| {
        chrono::DateTime::parse_from_rfc3339("2019-06-20T00:00:00+09:00").unwrap()
            + chrono::Duration::hours(h)
    };
    let mut raws = Vec::new();
    for h in 0..(8 * 24) {
        if h % 6 == 0 {
            raws.push((at(h), "PayPayで払った".to_string()));
        }
    }
    let burst = 8 * 24 + 5;
    for i in 0..12 {
        raws.push((
            at(burst) + chrono::Duration::minutes(i),
            format!("PayPayで身に覚えのない決済。不正利用された {i}"),
        ));
    }
    let raws = raws
        .into_iter()
        .enumerate()
        .map(|(i, (t, body))| kizashi::domain::RawItem {
            source: "hook".into(),
            guid: None,
            url: format!("https://example.jp/h/{i}"),
            title: String::new(),
            body,
            published_at: Some(t.into()),
            author: Some(format!("u{i}")),
            kind: kizashi::domain::ItemKind::Social,
            bookmarks: None,
            tags: Vec::new(),
        })
        .collect();
    app.clock
        .set((at(burst) + chrono::Duration::minutes(50)).into());
    app.state
        .pipeline
        .import(
            &app.state.store,
            raws,
            kizashi::clock::Clock::now(&*app.state.clock),
        )
        .await
        .unwrap();
    let opened = kizashi::alerting::detect_now(&app.state).await.unwrap();
    assert_eq!(opened.len(), 1, "one alert for the burst");
    wait_until("the alert webhooks", || {
        slack.lock().unwrap().len() == 1 && json_got.lock().unwrap().len() == 1
    })
    .await;
    let (head, body) = slack.lock().unwrap()[0].clone();
    assert!(head.contains("x-kizashi-event: alert.opened"), "{head}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    let text = v["text"].as_str().unwrap();
    assert!(
        text.contains("paypay / fraud") && text.contains(&format!("/alerts/{}", opened[0])),
        "{text}"
    );
    let v: Value = serde_json::from_slice(&json_got.lock().unwrap()[0].1).unwrap();
    assert_eq!(v["event"], "alert.opened");
    assert_eq!(v["alert"]["service"], "paypay");
    assert_eq!(v["alert"]["category"], "fraud");
    assert!(!v["alert"]["examples"].as_array().unwrap().is_empty());
    // Running detection again in the same hour changes nothing and sends nothing.
    assert!(kizashi::alerting::detect_now(&app.state)
        .await
        .unwrap()
        .is_empty());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(slack.lock().unwrap().len(), 1);
    assert!(
        incidents_only.lock().unwrap().is_empty(),
        "incident-only receivers get no alerts"
    );
    // The delivery log shows both on the operators' page.
    let (_, page) = app.get_text("/admin/status").await;
    assert_eq!(page.matches("<td>alert.opened</td>").count(), 2, "{page}");
}
