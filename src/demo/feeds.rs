//! The demo's feed server on loopback: `/news.rss` (RSS 2.0) and `/social.json` (JSON Feed
//! 1.1) list the latest items whose publication time has come on the simulated clock.
use crate::clock::SharedClock;
use crate::domain::{ItemKind, RawItem};
use actix_web::{web, App, HttpResponse, HttpServer};
use std::net::TcpListener;
use std::sync::Arc;

/// Items per feed document: more than a crawl interval's worth at the busiest hour.
pub const FEED_LEN: usize = 150;

struct Feeds {
    news: Vec<RawItem>,
    social: Vec<RawItem>,
    clock: SharedClock,
}

impl Feeds {
    fn due<'a>(&self, items: &'a [RawItem]) -> &'a [RawItem] {
        let now = Some(self.clock.now());
        let end = items.partition_point(|i| i.published_at <= now);
        &items[end.saturating_sub(FEED_LEN)..end]
    }
}

fn esc(s: &str) -> String {
    html_escape::encode_text(s).to_string()
}

async fn news_feed(f: web::Data<Feeds>) -> HttpResponse {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\"><channel><title>kizashi demo news</title><link>http://127.0.0.1/</link><description>synthetic</description>\n",
    );
    for i in f.due(&f.news).iter().rev() {
        out.push_str(&format!(
            "<item><title>{}</title><link>{}</link><guid isPermaLink=\"true\">{}</guid><pubDate>{}</pubDate><description>{}</description></item>\n",
            esc(&i.title),
            esc(&i.url),
            esc(&i.url),
            i.published_at.map(|t| t.to_rfc2822()).unwrap_or_default(),
            esc(&i.body)
        ));
    }
    out.push_str("</channel></rss>\n");
    HttpResponse::Ok()
        .content_type("application/rss+xml; charset=utf-8")
        .body(out)
}

async fn social_feed(f: web::Data<Feeds>) -> HttpResponse {
    let items: Vec<serde_json::Value> = f
        .due(&f.social)
        .iter()
        .rev()
        .map(|i| {
            serde_json::json!({
                "id": i.url,
                "url": i.url,
                "content_text": i.body,
                "date_published": i.published_at.map(|t| t.to_rfc3339()),
                "authors": [{ "name": i.author }],
            })
        })
        .collect();
    HttpResponse::Ok()
        .content_type("application/feed+json")
        .json(serde_json::json!({
            "version": "https://jsonfeed.org/version/1.1",
            "title": "kizashi demo social",
            "items": items,
        }))
}

/// Starts the feed server on 127.0.0.1 (port 0: any free port); returns its base URL.
pub fn serve(
    items: Vec<RawItem>,
    clock: SharedClock,
) -> std::io::Result<(String, actix_web::dev::ServerHandle)> {
    let (news, social): (Vec<RawItem>, Vec<RawItem>) =
        items.into_iter().partition(|i| i.kind == ItemKind::News);
    let data = web::Data::from(Arc::new(Feeds {
        news,
        social,
        clock,
    }));
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/news.rss", web::get().to(news_feed))
            .route("/social.json", web::get().to(social_feed))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((base, handle))
}
