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

#[derive(Clone)]
pub struct Response {
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub etag: Option<String>,
}

/// A tiny HTTP/1.1 server on 127.0.0.1:0: serves fixed responses per path, answers 304 to a
/// matching If-None-Match, 404 otherwise, and counts requests per path.
pub struct FixtureServer {
    pub base: String,
    routes: Arc<Mutex<HashMap<String, Response>>>,
    pub hits: Arc<Mutex<HashMap<String, usize>>>,
    pub not_modified: Arc<AtomicUsize>,
}

impl FixtureServer {
    pub fn set(&self, path: &str, r: Response) {
        self.routes.lock().unwrap().insert(path.to_string(), r);
    }

    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let routes: Arc<Mutex<HashMap<String, Response>>> = Arc::default();
        let served = routes.clone();
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let not_modified = Arc::new(AtomicUsize::new(0));
        let (h, nm) = (hits.clone(), not_modified.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (routes, hits, nm) = (routes.clone(), h.clone(), nm.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let inm = head.lines().find_map(|l| {
                        l.to_ascii_lowercase()
                            .starts_with("if-none-match:")
                            .then(|| l[14..].trim().to_string())
                    });
                    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                    let route = routes.lock().unwrap().get(&path).cloned();
                    let reply = match route {
                        Some(ref r) if r.etag.is_some() && inm.as_deref() == r.etag.as_deref() => {
                            nm.fetch_add(1, Ordering::SeqCst);
                            "HTTP/1.1 304 Not Modified\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".as_bytes().to_vec()
                        }
                        Some(r) => {
                            let mut out = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
                                r.content_type,
                                r.body.len(),
                                r.etag.as_ref().map(|e| format!("ETag: {e}\r\n")).unwrap_or_default()
                            )
                            .into_bytes();
                            out.extend_from_slice(&r.body);
                            out
                        }
                        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".as_bytes().to_vec(),
                    };
                    let _ = sock.write_all(&reply).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self {
            base,
            routes: served,
            hits,
            not_modified,
        }
    }
}
