//! demo: incident timelines as synthetic Japanese posts and articles (scenarios in
//! `src/demo/*.toml`, texts from the templates below — written for kizashi, no real post is
//! reproduced), a local feed server that shows each item once its time has come, and
//! `kizashi demo`, which feeds them through the real crawler on a simulated clock.
pub mod feeds;
pub mod run;

use crate::domain::{ItemKind, RawItem};
use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use chrono_tz::Asia::Tokyo;
use serde::Deserialize;

pub const SCENARIOS: &[(&str, &str)] = &[
    ("july2019", include_str!("july2019.toml")),
    ("paypay2018", include_str!("paypay2018.toml")),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    pub start: DateTime<chrono::FixedOffset>,
    pub live_from: DateTime<chrono::FixedOffset>,
    pub end: DateTime<chrono::FixedOffset>,
    pub first_fraud_report: DateTime<chrono::FixedOffset>,
    pub first_news: DateTime<chrono::FixedOffset>,
    pub fraud_service: String,
    #[serde(default)]
    pub chatter: Vec<Chatter>,
    #[serde(default)]
    pub burst: Vec<Burst>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chatter {
    pub service: String,
    pub posts_per_day: f64,
    pub complaint_share: f64,
    pub news_per_week: f64,
    #[serde(default)]
    pub from: Option<DateTime<chrono::FixedOffset>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Burst {
    pub service: String,
    pub voice: String,
    #[serde(default = "social")]
    pub kind: String,
    pub from: DateTime<chrono::FixedOffset>,
    pub per_hour: Vec<u32>,
}

fn social() -> String {
    "social".into()
}

pub fn scenario(name: &str) -> anyhow::Result<Scenario> {
    let (_, text) = SCENARIOS.iter().find(|(n, _)| *n == name).ok_or_else(|| {
        let names: Vec<&str> = SCENARIOS.iter().map(|(n, _)| *n).collect();
        anyhow::anyhow!("no scenario {name:?}; there are {}", names.join(", "))
    })?;
    let s: Scenario = toml::from_str(text)?;
    let known = |v: &str| voice(v).is_some();
    if let Some(b) = s.burst.iter().find(|b| !known(&b.voice)) {
        anyhow::bail!("scenario {name}: unknown voice {:?}", b.voice);
    }
    Ok(s)
}

/// A small deterministic generator (SplitMix64): the same scenario gives the same items.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    /// A Poisson-distributed count (Knuth's method; means here are small).
    pub fn poisson(&mut self, mean: f64) -> u32 {
        let l = (-mean.max(0.0)).exp();
        let (mut k, mut p) = (0u32, 1.0);
        loop {
            p *= self.unit();
            if p <= l || k > 10_000 {
                return k;
            }
            k += 1;
        }
    }
}

/// Relative activity per JST hour of day: quiet nights, commute, lunch and evening peaks.
const DAY_SHAPE: [f64; 24] = [
    0.5, 0.3, 0.2, 0.15, 0.15, 0.3, 0.7, 1.2, 1.6, 1.3, 1.1, 1.4, 2.0, 1.8, 1.2, 1.1, 1.2, 1.5,
    1.8, 2.0, 2.0, 1.8, 1.3, 0.8,
];

fn shape(t: DateTime<Utc>) -> f64 {
    let local = t.with_timezone(&Tokyo);
    let weekend = matches!(local.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun);
    let sum: f64 = DAY_SHAPE.iter().sum();
    DAY_SHAPE[local.hour() as usize] / sum * if weekend { 1.2 } else { 1.0 }
}

/// How a service is written in posts: a few of its aliases.
fn names(service: &str) -> &'static [&'static str] {
    match service {
        "7pay" => &["7pay", "セブンペイ", "7pay", "セブン・ペイ"],
        "paypay" => &["PayPay", "ペイペイ", "PayPay"],
        "linepay" => &["LINE Pay", "LINEPay", "ラインペイ"],
        "merpay" => &["メルペイ"],
        "famipay" => &["ファミペイ", "FamiPay"],
        "dbarai" => &["d払い"],
        "aupay" => &["au PAY", "auPAY"],
        "rakutenpay" => &["楽天ペイ"],
        "coincheck" => &["Coincheck", "コインチェック"],
        "zaif" => &["Zaif", "ザイフ"],
        _ => &["PayPay"],
    }
}

/// Sentence templates per voice; `{s}` is the service, `{n}` a number, `{shop}` a place.
pub fn voice(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "chatter" => &[
            "{s}で払うとポイントがたまってうれしい",
            "ランチは{s}で支払い。便利！",
            "{s}使いやすいな",
            "{shop}で{s}払い、レジが早くて助かる",
            "今日は{s}で{shop}の買い物",
            "{s}の残高に{n}円チャージした",
            "{s}って使ってる人いる？",
            "{shop}が{s}に対応してた",
            "{s}のアプリを更新した",
            "{s}のキャンペーンでちょっとお得だった",
            "財布を忘れたけど{s}があったので大丈夫だった",
            "{s}で割り勘した",
        ],
        "complaint" => &[
            "{s}のアプリがなかなか開かない…",
            "{s}でエラーが出て払えなかった",
            "{s}の残高反映が遅い",
            "{s}、また仕様が変わってわかりにくい",
            "{shop}で{s}が使えなかった",
            "{s}のポイントがまだ付かない。遅い",
        ],
        "launch" => &[
            "{s}始まった！さっそく登録",
            "{s}初日、登録してみた",
            "{s}のアプリをダウンロードした",
            "{shop}で{s}デビュー",
            "{s}で初めて払ってみた。おにぎりが安くなった",
        ],
        "outage" => &[
            "{s}つながらない！レジで払えない",
            "{s}ログインできない。アクセス集中かな",
            "{s}落ちてる？エラーばかり",
            "{s}使えない、障害？",
            "{shop}のレジで{s}がエラー。結局現金で払った",
            "{s}、朝からずっとつながらない",
        ],
        "fraud" => &[
            "{s}で身に覚えのないチャージがされてる。不正利用かも",
            "{s}のアカウントが乗っ取られたっぽい。勝手に決済されてた",
            "{s}で不正アクセスの被害にあった。{n}円のチャージが何回も",
            "友人も{s}の不正利用の被害にあったらしい。怖すぎる",
            "{s}、二段階認証ないの？不正利用やばい",
            "{s}で身に覚えのない買い物の通知が来た。被害届を出す",
            "{s}の不正チャージの話、まわりでも聞く。怖い",
            "{s}が乗っ取られて{shop}で勝手に使われた",
        ],
        "press" => &[
            "{s}の会見見たけど二段階認証を知らないって大丈夫か",
            "{s}の記者会見、説明がひどい",
            "{s}チャージ停止だって。不正利用の被害が大きすぎる",
            "{s}の謝罪会見、セキュリティ対策が甘すぎる",
            "{s}はもう怖くて使えない",
        ],
        "campaign" => &[
            "{s}の100億円キャンペーンで20%還元！{shop}で買い物してきた",
            "{s}で家電買ったら還元がすごい",
            "{s}のキャンペーン、全額還元が当たった！",
            "{shop}のレジが{s}待ちで行列",
            "{s}還元目当てでまとめ買いした",
        ],
        "news" => &[
            "「{s}」、{shop}など{n}店舗で利用可能に|スマートフォン決済サービス「{s}」は、{shop}などで新たに利用できるようになると発表した。",
            "{s}が来月のキャンペーン内容を発表|{s}は、対象店舗での支払いでポイントを還元するキャンペーンを実施すると発表した。",
            "{s}、アプリの新機能を公開|{s}はアプリを更新し、送金や割り勘の機能を改善したと発表した。",
        ],
        "outage_news" => &[
            "{s}、アクセス集中で障害　ログインしにくい状態に|スマートフォン決済サービス「{s}」で、アクセスが集中しログインしにくい障害が発生した。運営会社は復旧を急いでいる。",
        ],
        "fraud_news" => &[
            "「{s}」で不正利用の被害報告相次ぐ|スマートフォン決済サービス「{s}」で、利用者から身に覚えのないチャージや決済があったとの報告がSNS上で相次いでいる。運営会社は事実関係を調査している。",
            "{s}に不正アクセス、被害の訴え広がる|「{s}」のアカウントが第三者に不正に利用されたとの訴えが広がっている。",
        ],
        "press_news" => &[
            "{s}運営会社が会見、不正アクセスで約{n}人被害　チャージを停止|{s}の運営会社が記者会見を開き、不正アクセスによる被害を認めて謝罪した。クレジットカードなどからのチャージを停止する。",
            "{s}、二段階認証なし　セキュリティ対策に批判|{s}の会見では、二段階認証を導入していなかったことが明らかになり、対策の甘さに批判が集まっている。",
        ],
        "remedy_news" => &[
            "{s}、不正利用の被害を全額補償へ　3Dセキュアを導入|{s}は、クレジットカードの不正利用による被害を全額補償すると発表した。本人認証の3Dセキュアも導入する。",
        ],
        _ => return None,
    })
}

const SHOPS: &[&str] = &[
    "コンビニ",
    "ドラッグストア",
    "駅前のカフェ",
    "スーパー",
    "家電量販店",
    "ラーメン屋",
    "本屋",
    "居酒屋",
    "牛丼屋",
    "パン屋",
];

const ENDINGS: &[&str] = &["", "", "。", "！", "…", " w", "。笑", "。"];

fn fill(template: &str, service: &str, rng: &mut Rng) -> String {
    let name = *rng.pick(names(service));
    let n = [1000, 2000, 3000, 5000, 10000, 30000, 900][rng.below(7)];
    template
        .replace("{s}", name)
        .replace("{shop}", rng.pick::<&str>(SHOPS))
        .replace("{n}", &n.to_string())
}

/// Every item of a scenario, in publication order; each has a unique URL on `base`.
pub fn generate(s: &Scenario, base: &str) -> Vec<RawItem> {
    let mut rng = Rng::new(s.seed);
    let mut out = Vec::new();
    let start = s.start.with_timezone(&Utc);
    let end = s.end.with_timezone(&Utc);
    let hour = chrono::Duration::hours(1);
    let mut push = |rng: &mut Rng, at: DateTime<Utc>, service: &str, voice_name: &str, kind| {
        // Spread within the hour.
        let at = at + chrono::Duration::seconds(rng.below(3600) as i64);
        let template = *rng.pick(voice(voice_name).unwrap_or(&[]));
        let text = fill(template, service, rng);
        let id = out.len() + 1;
        let (title, body, author, path) = match kind {
            ItemKind::News => {
                let (t, b) = text.split_once('|').unwrap_or((text.as_str(), ""));
                (t.to_string(), b.to_string(), None, "news")
            }
            ItemKind::Social => {
                let ending = *rng.pick(ENDINGS);
                // Reporters of one incident are mostly different people.
                let author = format!(
                    "user{}",
                    rng.below(if voice_name == "chatter" {
                        4000
                    } else {
                        100_000
                    })
                );
                (
                    String::new(),
                    format!("{text}{ending}"),
                    Some(author),
                    "social",
                )
            }
        };
        out.push(RawItem {
            source: format!("demo-{path}"),
            guid: Some(format!("{base}/{path}/{id}")),
            url: format!("{base}/{path}/{id}"),
            title,
            body,
            published_at: Some(at),
            author,
            kind,
            bookmarks: None,
            tags: Vec::new(),
        });
    };
    // Ordinary chatter, hour by hour.
    let mut t = start;
    while t < end {
        for c in &s.chatter {
            if c.from.is_some_and(|f| t < f.with_timezone(&Utc)) {
                continue;
            }
            let posts = rng.poisson(c.posts_per_day * shape(t));
            for _ in 0..posts {
                let v = if rng.unit() < c.complaint_share {
                    "complaint"
                } else {
                    "chatter"
                };
                push(&mut rng, t, &c.service, v, ItemKind::Social);
            }
            let news = rng.poisson(c.news_per_week / 168.0);
            for _ in 0..news {
                push(&mut rng, t, &c.service, "news", ItemKind::News);
            }
        }
        t += hour;
    }
    // The incident timeline.
    for b in &s.burst {
        let kind = if b.kind == "news" {
            ItemKind::News
        } else {
            ItemKind::Social
        };
        let from = b.from.with_timezone(&Utc);
        for (h, &n) in b.per_hour.iter().enumerate() {
            let at = from + hour * h as i32;
            for _ in 0..n {
                push(&mut rng, at, &b.service, &b.voice, kind);
            }
        }
    }
    out.sort_by_key(|i| i.published_at);
    out
}

/// The first moment of a scenario, for the simulated clock.
pub fn start_of(s: &Scenario) -> DateTime<Utc> {
    Utc.from_utc_datetime(&s.start.naive_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse_and_generate_deterministically() {
        for (name, _) in SCENARIOS {
            let s = scenario(name).unwrap();
            let a = generate(&s, "http://127.0.0.1:1");
            let b = generate(&s, "http://127.0.0.1:1");
            assert_eq!(a.len(), b.len());
            assert_eq!(a[a.len() / 2].body, b[b.len() / 2].body);
            // At least four weeks of ordinary chatter about six or more services.
            let weeks = (s.first_fraud_report - s.start).num_days() / 7;
            assert!(weeks >= 4, "{name}: {weeks} weeks");
            let chatty: std::collections::HashSet<_> =
                s.chatter.iter().map(|c| c.service.as_str()).collect();
            assert!(chatty.len() >= 6, "{name}");
            // Nothing about fraud at the fraud service before the stated first report.
            let first = s.first_fraud_report.with_timezone(&Utc);
            assert!(a.iter().any(|i| i.published_at >= Some(first)));
        }
    }
}
