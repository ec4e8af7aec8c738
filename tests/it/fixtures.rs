//! Japanese fixture feeds written for these tests, and a local HTTP server that serves them.
//! Expected values are computed here from the fixture rows, independently of kizashi's code.
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One fixture item; `mentions_7pay` is labelled by hand.
pub struct Row {
    pub id: &'static str,
    pub title: &'static str,
    pub body: &'static str,
    /// Always written with +09:00 so the JST day is the first ten characters.
    pub published: &'static str,
    pub mentions_7pay: bool,
}

pub const NEWS: &[Row] = &[
    Row {
        id: "n1",
        title: "7payで不正利用、被害相次ぐ",
        body: "セブン&アイのスマホ決済「7pay」で不正利用の被害が報告された。",
        published: "2019-07-02T23:59:00+09:00",
        mentions_7pay: true,
    },
    Row {
        id: "n2",
        title: "セブンペイ、チャージを停止",
        body: "不正アクセスを受け、クレジットカードからのチャージを一時停止した。",
        published: "2019-07-03T00:00:00+09:00",
        mentions_7pay: true,
    },
    Row {
        id: "n3",
        title: "PayPayが還元キャンペーン",
        body: "PayPayは20%還元のキャンペーンを開始。お得で便利と好評だ。",
        published: "2019-07-03T09:30:00+09:00",
        mentions_7pay: false,
    },
    Row {
        id: "n4",
        title: "７ｐａｙの会見、二段階認証に言及",
        body: "社長は二段階認証について問われ、言葉に詰まった。不正利用の被害額は約5500万円。",
        published: "2019-07-04T16:00:00+09:00",
        mentions_7pay: true,
    },
    Row {
        id: "n5",
        title: "PayPayドームで試合",
        body: "週末の試合は満員だった。",
        published: "2019-07-04T20:00:00+09:00",
        mentions_7pay: false,
    },
];

pub const SOCIAL: &[Row] = &[
    Row {
        id: "s1",
        title: "",
        body: "7pay使えないんだけど、身に覚えのないチャージがある…怖い",
        published: "2019-07-03T08:15:00+09:00",
        mentions_7pay: true,
    },
    Row {
        id: "s2",
        title: "",
        body: "LINE Payで払った。特に問題なし",
        published: "2019-07-03T12:00:00+09:00",
        mentions_7pay: false,
    },
    Row {
        id: "s3",
        title: "",
        body: "セブンペイの不正利用、友達もやられた",
        published: "2019-07-03T23:59:59+09:00",
        mentions_7pay: true,
    },
];

pub const RDF_ROWS: &[Row] = &[
    Row {
        id: "r1",
        title: "ナナペイ利用者に返金へ",
        body: "不正利用による被害は全額補償する方針。",
        published: "2019-07-05T00:00:00+09:00",
        mentions_7pay: true,
    },
    Row {
        id: "r2",
        title: "キャッシュレス決済の安全性",
        body: "各社が本人認証の強化を急ぐ。",
        published: "2019-07-05T11:00:00+09:00",
        mentions_7pay: false,
    },
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// RFC 822 date in +0900 from our RFC 3339 strings.
fn rfc822(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .format("%a, %d %b %Y %H:%M:%S %z")
        .to_string()
}

pub fn url_of(base: &str, id: &str) -> String {
    format!("{base}/articles/{id}?utm_source=rss#top")
}

pub fn rss2(base: &str, rows: &[Row]) -> String {
    let items: String = rows
        .iter()
        .map(|r| {
            format!(
                "<item><title>{}</title><link>{}</link><guid isPermaLink=\"false\">{}</guid><pubDate>{}</pubDate><description>&lt;p&gt;{}&lt;/p&gt;</description></item>\n",
                esc(r.title), esc(&url_of(base, r.id)), r.id, rfc822(r.published), esc(&esc(r.body))
            )
        })
        .collect();
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\"><channel><title>決済ニュース</title><link>{base}</link><description>テスト</description>\n{items}</channel></rss>")
}

pub fn atom(base: &str, rows: &[Row]) -> String {
    let entries: String = rows
        .iter()
        .map(|r| {
            // Written in UTC on purpose: 23:59:59 JST is 14:59:59Z of the same JST day.
            let utc = chrono::DateTime::parse_from_rfc3339(r.published).unwrap().with_timezone(&chrono::Utc).to_rfc3339();
            format!(
                "<entry><id>tag:social.example,2019:{}</id><title>{}</title><link href=\"{}\"/><updated>{utc}</updated><author><name>user_{}</name></author><content type=\"text\">{}</content></entry>\n",
                r.id, esc(r.title), esc(&url_of(base, r.id)), r.id, esc(r.body)
            )
        })
        .collect();
    format!("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>つぶやき</title><id>tag:social.example,2019:feed</id><updated>2019-07-06T00:00:00Z</updated>\n{entries}</feed>")
}

pub fn rdf_shift_jis(base: &str, rows: &[Row]) -> Vec<u8> {
    let items: String = rows
        .iter()
        .map(|r| {
            format!(
                "<item rdf:about=\"{u}\"><title>{}</title><link>{u}</link><description>{}</description><dc:date>{}</dc:date></item>\n",
                esc(r.title), esc(r.body), r.published, u = esc(&url_of(base, r.id))
            )
        })
        .collect();
    let xml = format!("<?xml version=\"1.0\" encoding=\"Shift_JIS\"?>\n<rdf:RDF xmlns=\"http://purl.org/rss/1.0/\" xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\"><channel rdf:about=\"{base}\"><title>速報</title><link>{base}</link><description>RDF</description></channel>\n{items}</rdf:RDF>");
    encoding_rs::SHIFT_JIS.encode(&xml).0.into_owned()
}

/// Every fixture row, as (row, is_social).
pub fn all_rows() -> impl Iterator<Item = &'static Row> {
    NEWS.iter().chain(SOCIAL).chain(RDF_ROWS)
}

/// Text normalized the simple way a reader would: full-width to ASCII, lower case.
pub fn folded(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.nfkc().collect::<String>().to_lowercase()
}

/// How many rows contain `needle` in title or body (after width/case folding).
pub fn count_containing(needle: &str) -> usize {
    let n = folded(needle);
    all_rows()
        .filter(|r| folded(r.title).contains(&n) || folded(r.body).contains(&n))
        .count()
}

#[derive(Clone, Default)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub etag: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Pause before answering.
    pub delay_ms: u64,
    /// Send the body one byte at a time with this pause between bytes (a slow-drip server).
    pub drip_ms: u64,
    /// Answer 401 unless the request carries this header line (name: value, exact).
    pub require_header: Option<String>,
}

impl Response {
    pub fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            content_type,
            body: body.into(),
            ..Self::default()
        }
    }
    pub fn status(status: u16) -> Self {
        Self {
            status,
            content_type: "text/plain",
            ..Self::default()
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
}

/// A small HTTP/1.1 server on a loopback address: serves fixed responses per path (any status,
/// headers, delays, slow drip), answers 304 to a matching If-None-Match, 404 otherwise, and
/// records each request's path and arrival time.
pub struct FixtureServer {
    pub base: String,
    routes: Arc<Mutex<HashMap<String, Response>>>,
    pub hits: Arc<Mutex<HashMap<String, usize>>>,
    pub arrivals: Arc<Mutex<Vec<(String, std::time::Instant)>>>,
    /// Every request as received: head and body.
    pub requests: Arc<Mutex<Vec<String>>>,
    pub not_modified: Arc<AtomicUsize>,
}

impl FixtureServer {
    pub fn set(&self, path: &str, r: Response) {
        self.routes.lock().unwrap().insert(path.to_string(), r);
    }

    pub async fn start() -> Self {
        Self::start_on("127.0.0.1").await
    }

    /// Listens on `ip` (any 127.0.0.0/8 address works on Linux), so tests get distinct hosts.
    pub async fn start_on(ip: &str) -> Self {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let base = format!("http://{ip}:{}", listener.local_addr().unwrap().port());
        let routes: Arc<Mutex<HashMap<String, Response>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let arrivals: Arc<Mutex<Vec<(String, std::time::Instant)>>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let rq = requests.clone();
        let not_modified = Arc::new(AtomicUsize::new(0));
        let (r, h, a, nm) = (
            routes.clone(),
            hits.clone(),
            arrivals.clone(),
            not_modified.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (routes, hits, arrivals, nm, requests) =
                    (r.clone(), h.clone(), a.clone(), nm.clone(), rq.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head_len = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let content_length = String::from_utf8_lossy(&buf[..head_len])
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    while buf.len() < head_len + content_length {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    requests.lock().unwrap().push(head.clone());
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let inm = head.lines().find_map(|l| {
                        l.to_ascii_lowercase()
                            .starts_with("if-none-match:")
                            .then(|| l[14..].trim().to_string())
                    });
                    arrivals
                        .lock()
                        .unwrap()
                        .push((path.clone(), std::time::Instant::now()));
                    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                    let route = routes.lock().unwrap().get(&path).cloned();
                    let Some(r) = route else {
                        let _ = sock.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                        return;
                    };
                    if let Some(required) = &r.require_header {
                        if !head.lines().any(|l| l.eq_ignore_ascii_case(required)) {
                            let _ = sock.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                            return;
                        }
                    }
                    if r.delay_ms > 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(r.delay_ms)).await;
                    }
                    if r.etag.is_some() && inm.as_deref() == r.etag.as_deref() {
                        nm.fetch_add(1, Ordering::SeqCst);
                        let _ = sock.write_all(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                        return;
                    }
                    let mut head = format!(
                        "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                        r.status,
                        r.content_type,
                        r.body.len()
                    );
                    if let Some(e) = &r.etag {
                        head.push_str(&format!("ETag: {e}\r\n"));
                    }
                    for (k, v) in &r.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    if sock.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    if r.drip_ms > 0 {
                        for b in &r.body {
                            if sock.write_all(&[*b]).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(std::time::Duration::from_millis(r.drip_ms)).await;
                        }
                    } else {
                        let _ = sock.write_all(&r.body).await;
                    }
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self {
            base,
            routes,
            hits,
            arrivals,
            requests,
            not_modified,
        }
    }
}
