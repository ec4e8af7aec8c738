//! The dashboard: an overview of every watched service (share of voice and sentiment side by
//! side, mentions per service, open alerts, saved searches as panels) and a page per service
//! (mentions by kind with unique authors, sentiment shares with the mean score, incident
//! categories, the window's top items with their evidence, its alerts). Everything comes from
//! the hourly rollups, on Asia/Tokyo buckets; charts are server-rendered SVG.
use super::chart::{daily_bars, stacked, StackSpec, StackedChart, PALETTE};
use super::error::WebError;
use super::i18n::{Labels, Lang};
use super::{css_name, non_empty, parse_search, parse_time_param, SearchParams, State};
use crate::aggregate::{buckets, ceil, floor, rollup_stats, BucketStats, Interval};
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;
use std::collections::HashMap;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

#[derive(Debug, Default, Deserialize)]
pub struct DashboardParams {
    range: Option<String>,
    from: Option<String>,
    to: Option<String>,
    interval: Option<String>,
}

/// The window a page shows.
pub struct Window {
    pub from: i64,
    pub to: i64,
    pub interval: Interval,
    /// 24h / 7d / 30d / 90d, or "" for a custom from–to.
    pub range: String,
}

impl Window {
    /// The query string that keeps this window on links.
    pub fn query(&self) -> String {
        let interval = match self.interval {
            Interval::Hour => "hour",
            Interval::Day => "day",
        };
        if self.range.is_empty() {
            format!(
                "from={}&to={}&interval={interval}",
                date(self.from),
                date(self.to - 1)
            )
        } else {
            format!("range={}&interval={interval}", self.range)
        }
    }
}

fn date(ms: i64) -> String {
    crate::aggregate::jst_rfc3339(ms)
        .get(..10)
        .unwrap_or("")
        .to_string()
}

/// Parses the window: a named range ending now, or custom dates (JST days, `to` included).
pub fn window(p: &DashboardParams, now: i64) -> Result<Window, WebError> {
    let custom = non_empty(&p.from).is_some() || non_empty(&p.to).is_some();
    let range = if custom {
        String::new()
    } else {
        non_empty(&p.range).unwrap_or("30d").to_string()
    };
    let (from, to, natural) = if custom {
        let today = floor(now, Interval::Day);
        let to = parse_time_param("to", &p.to)?
            .map(|v| floor(v, Interval::Day) + DAY)
            .unwrap_or(today + DAY);
        let from = parse_time_param("from", &p.from)?
            .map(|v| floor(v, Interval::Day))
            .unwrap_or(to - 30 * DAY);
        if from >= to || (to - from) / DAY > 400 {
            return Err(WebError::BadRequest(
                "from must be before to, at most 400 days apart".into(),
            ));
        }
        let natural = if to - from <= 7 * DAY {
            Interval::Hour
        } else {
            Interval::Day
        };
        (from, to, natural)
    } else {
        let hours = |h: i64| {
            let to = ceil(now + 1, Interval::Hour);
            (to - h * HOUR, to, Interval::Hour)
        };
        let days = |d: i64| {
            let to = floor(now, Interval::Day) + DAY;
            (to - d * DAY, to, Interval::Day)
        };
        match range.as_str() {
            "24h" => hours(24),
            "7d" => hours(24 * 7),
            "30d" => days(30),
            "90d" => days(90),
            other => {
                return Err(WebError::BadRequest(format!(
                    "range {other:?} is not 24h, 7d, 30d or 90d (or give from and to)"
                )))
            }
        }
    };
    let interval = match non_empty(&p.interval) {
        None => natural,
        Some(s) => Interval::parse(s).map_err(WebError::BadRequest)?,
    };
    if interval == Interval::Hour && to - from > 31 * DAY {
        return Err(WebError::BadRequest(
            "hourly buckets for at most 31 days; use interval=day".into(),
        ));
    }
    Ok(Window {
        from,
        to,
        interval,
        range,
    })
}

/// Words of the dashboard pages.
pub struct DashWords {
    pub ranges: &'static str,
    pub hourly: &'static str,
    pub daily: &'static str,
    pub compare: &'static str,
    pub service: &'static str,
    pub share_of_voice: &'static str,
    pub negative_share: &'static str,
    pub positive_share: &'static str,
    pub mean_score: &'static str,
    pub news: &'static str,
    pub social: &'static str,
    pub authors: &'static str,
    pub mentions_by_kind: &'static str,
    pub sentiment_over_time: &'static str,
    pub categories_over_time: &'static str,
    pub top_items: &'static str,
    pub details: &'static str,
    pub open_alerts: &'static str,
    pub alerts_of_service: &'static str,
    pub no_items: &'static str,
    pub mentions_per_hour: &'static str,
    pub share_axis: &'static str,
}

const JA: DashWords = DashWords {
    ranges: "期間",
    hourly: "1時間ごと",
    daily: "1日ごと",
    compare: "サービスの比較",
    service: "サービス",
    share_of_voice: "言及シェア",
    negative_share: "ネガティブ",
    positive_share: "ポジティブ",
    mean_score: "平均スコア",
    news: "ニュース",
    social: "ソーシャル",
    authors: "投稿者数（ソーシャル）",
    mentions_by_kind: "言及数（ニュース／ソーシャル）",
    sentiment_over_time: "評判の推移（比率と平均スコア）",
    categories_over_time: "インシデント分類の推移",
    top_items: "期間の主な記事・投稿",
    details: "詳細",
    open_alerts: "未対応のアラート",
    alerts_of_service: "このサービスのアラート",
    no_items: "この期間の言及はありません。",
    mentions_per_hour: "時間別の言及数",
    share_axis: "比率",
};

const EN: DashWords = DashWords {
    ranges: "Range",
    hourly: "Hourly",
    daily: "Daily",
    compare: "Services side by side",
    service: "Service",
    share_of_voice: "Share of voice",
    negative_share: "Negative",
    positive_share: "Positive",
    mean_score: "Mean score",
    news: "News",
    social: "Social",
    authors: "Authors (social)",
    mentions_by_kind: "Mentions (news / social)",
    sentiment_over_time: "Sentiment over time (shares and mean score)",
    categories_over_time: "Incident categories over time",
    top_items: "Top items of the window",
    details: "Details",
    open_alerts: "Open alerts",
    alerts_of_service: "Alerts for this service",
    no_items: "No mentions in this window.",
    mentions_per_hour: "Mentions per hour",
    share_axis: "Share",
};

fn words(lang: Lang) -> &'static DashWords {
    if lang == Lang::Ja {
        &JA
    } else {
        &EN
    }
}

pub struct ServicePanel {
    pub slug: String,
    pub name: String,
    pub total: u64,
    pub negative_pct: String,
    pub mean: String,
    pub chart: StackedChart,
    pub search_href: String,
    pub detail_href: String,
}

pub struct SavedPanel {
    pub slug: String,
    pub name: String,
    pub total: u64,
    pub chart: super::chart::BarChart,
    pub search_href: String,
}

pub struct CompareRow {
    pub slug: String,
    pub name: String,
    pub mentions: u64,
    pub share: String,
    pub negative: String,
    pub positive: String,
    pub mean: String,
}

pub struct AlertLine {
    pub href: String,
    pub text: String,
}

/// The range selector: (label, href, current).
type RangeLink = (String, String, bool);

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage<'a> {
    t: &'a Labels,
    w: &'a DashWords,
    css: &'a str,
    path: &'a str,
    ranges: Vec<RangeLink>,
    from: String,
    to: String,
    hourly: bool,
    alerts: Vec<AlertLine>,
    compare: Vec<CompareRow>,
    share_chart: Option<StackedChart>,
    panels: Vec<ServicePanel>,
    saved: Vec<SavedPanel>,
}

fn service_name(state: &State, slug: &str, lang: Lang) -> String {
    state
        .dicts
        .service(slug)
        .map(|s| {
            if lang == Lang::Ja {
                s.name_ja.clone()
            } else {
                s.name_en.clone()
            }
        })
        .unwrap_or_else(|| slug.to_string())
}

fn ranges(t: &Labels, base: &str, win: &Window) -> Vec<RangeLink> {
    ["24h", "7d", "30d", "90d"]
        .iter()
        .map(|r| {
            (
                r.to_string(),
                format!("{}{base}?range={r}", t.prefix),
                win.range == *r,
            )
        })
        .collect()
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "—".into()
    } else {
        format!("{:.0}%", part as f64 / whole as f64 * 100.0)
    }
}

fn mean_text(b: &[BucketStats]) -> (String, Option<f64>) {
    let n: u64 = b.iter().map(|b| b.mentions).sum();
    let sum: f64 = b
        .iter()
        .map(|b| b.mean_sentiment.unwrap_or(0.0) * b.mentions as f64)
        .sum();
    if n == 0 {
        ("—".into(), None)
    } else {
        let m = sum / n as f64;
        (format!("{m:+.2}"), Some(m))
    }
}

fn starts(b: &[BucketStats]) -> Vec<String> {
    b.iter().map(|b| b.start.clone()).collect()
}

/// News and social stacked, from bucket stats.
fn kind_chart(
    id: &str,
    title: &str,
    b: &[BucketStats],
    w: &DashWords,
    t: &Labels,
    unit: &str,
    hourly: bool,
) -> StackedChart {
    let s = starts(b);
    let series = [
        (w.news.to_string(), PALETTE[0]),
        (w.social.to_string(), PALETTE[4]),
    ];
    let values: Vec<Vec<f64>> = b
        .iter()
        .map(|b| vec![b.news as f64, b.social as f64])
        .collect();
    stacked(&StackSpec {
        id,
        title,
        starts: &s,
        series: &series,
        values: &values,
        percent: false,
        unit,
        x_label: t.date_axis,
        y_label: t.count_axis,
        hourly,
    })
}

pub async fn dashboard_ja(
    state: State,
    p: web::Query<DashboardParams>,
) -> Result<HttpResponse, WebError> {
    overview(state, p.into_inner(), Lang::Ja).await
}
pub async fn dashboard_en(
    state: State,
    p: web::Query<DashboardParams>,
) -> Result<HttpResponse, WebError> {
    overview(state, p.into_inner(), Lang::En).await
}

async fn overview(state: State, p: DashboardParams, lang: Lang) -> Result<HttpResponse, WebError> {
    let t = lang.labels();
    let w = words(lang);
    let win = window(&p, state.clock.now().timestamp_millis())?;
    let (from, to, interval) = (win.from, win.to, win.interval);
    let hourly = interval == Interval::Hour;
    let unit = if lang == Lang::Ja { "件" } else { "mentions" };
    let incidents = state.store.incidents_between(from, to).await?;
    let rows = state
        .store
        .rollup_services(
            floor(from, Interval::Hour),
            ceil(to, Interval::Hour),
            interval.millis(),
        )
        .await?;
    let mut by_service: HashMap<String, Vec<crate::aggregate::RollupTuple>> = HashMap::new();
    for (svc, r) in &rows {
        by_service.entry(svc.clone()).or_default().push((
            r.hour,
            r.kind.as_str(),
            r.label.as_str(),
            r.n,
            r.score_sum,
        ));
    }
    let watched = state.store.watched_services().await?;
    let mut stats: Vec<(String, Vec<BucketStats>)> = Vec::new();
    for slug in &watched {
        let rows = by_service.get(slug).map(Vec::as_slice).unwrap_or(&[]);
        let b = rollup_stats(rows, &[], interval, from, to).map_err(WebError::BadRequest)?;
        stats.push((slug.clone(), b));
    }
    let all: u64 = stats
        .iter()
        .map(|(_, b)| b.iter().map(|b| b.mentions).sum::<u64>())
        .sum();
    let mut compare = Vec::new();
    let mut panels = Vec::new();
    let per = if hourly {
        w.mentions_per_hour
    } else {
        t.mentions_per_day
    };
    for (slug, b) in &stats {
        let name = service_name(&state, slug, lang);
        let total: u64 = b.iter().map(|b| b.mentions).sum();
        let neg: u64 = b.iter().map(|b| b.negative).sum();
        let pos: u64 = b.iter().map(|b| b.positive).sum();
        let (mean, _) = mean_text(b);
        compare.push(CompareRow {
            slug: slug.clone(),
            name: name.clone(),
            mentions: total,
            share: pct(total, all),
            negative: pct(neg, total),
            positive: pct(pos, total),
            mean: mean.clone(),
        });
        let mut chart = kind_chart(
            &format!("chart-{slug}"),
            &format!("{name} — {per}"),
            b,
            w,
            t,
            unit,
            hourly,
        );
        chart.annotate(from, to, &incidents, t.prefix);
        panels.push(ServicePanel {
            search_href: format!("{}/search?service={slug}", t.prefix),
            detail_href: format!("{}/services/{slug}?{}", t.prefix, win.query()),
            slug: slug.clone(),
            name,
            total,
            negative_pct: pct(neg, total),
            mean,
            chart,
        });
    }
    // Share of voice: services stacked as shares of each bucket.
    let share_chart = (all > 0).then(|| {
        let s = stats.first().map(|(_, b)| starts(b)).unwrap_or_default();
        // Only services with mentions in the window take a colour.
        let present: Vec<&(String, Vec<BucketStats>)> = stats
            .iter()
            .filter(|(_, b)| b.iter().any(|b| b.mentions > 0))
            .collect();
        let series: Vec<(String, &'static str)> = present
            .iter()
            .enumerate()
            .map(|(i, (slug, _))| (service_name(&state, slug, lang), PALETTE[i % PALETTE.len()]))
            .collect();
        let values: Vec<Vec<f64>> = (0..s.len())
            .map(|i| present.iter().map(|(_, b)| b[i].mentions as f64).collect())
            .collect();
        stacked(&StackSpec {
            id: "share-of-voice",
            title: w.share_of_voice,
            starts: &s,
            series: &series,
            values: &values,
            percent: true,
            unit,
            x_label: t.date_axis,
            y_label: w.share_axis,
            hourly,
        })
    });
    let saved = saved_panels(&state, lang, from, to).await?;
    let alerts = open_alerts(&state, lang, None).await?;
    let page = DashboardPage {
        t,
        w,
        css: css_name(),
        path: "/",
        ranges: ranges(t, "/", &win),
        from: date(from),
        to: date(to - 1),
        hourly,
        alerts,
        compare,
        share_chart,
        panels,
        saved,
    };
    Ok(html(page.render()?))
}

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body)
}

async fn open_alerts(
    state: &State,
    lang: Lang,
    service: Option<&str>,
) -> Result<Vec<AlertLine>, WebError> {
    let f = crate::store::AlertFilter {
        service: service.map(str::to_string),
        state: service.is_none().then_some(crate::spikes::AlertState::Open),
        limit: if service.is_some() { 20 } else { 5 },
        ..Default::default()
    };
    let t = lang.labels();
    Ok(state
        .store
        .alerts(&f)
        .await?
        .into_iter()
        .map(|r| {
            let a = r.alert;
            AlertLine {
                href: format!("{}/alerts/{}", t.prefix, a.id),
                text: format!(
                    "{} {} · {} · {} ({})",
                    crate::aggregate::jst_rfc3339(a.detected_at)
                        .get(..16)
                        .unwrap_or("")
                        .replace('T', " "),
                    service_name(state, &a.service, lang),
                    a.category.as_deref().unwrap_or("—"),
                    a.metric.as_str(),
                    a.state.as_str()
                ),
            }
        })
        .collect())
}

/// Saved searches as panels: what each query matches per day of the window.
async fn saved_panels(
    state: &State,
    lang: Lang,
    from: i64,
    to: i64,
) -> Result<Vec<SavedPanel>, WebError> {
    let t = lang.labels();
    let (from, to) = (floor(from, Interval::Day), ceil(to, Interval::Day));
    let mut out = Vec::new();
    for (i, (id, name, query)) in state.store.saved_searches().await?.into_iter().enumerate() {
        let Ok(params) = serde_urlencoded::from_str::<SearchParams>(&query) else {
            continue;
        };
        let Ok(mut parsed) = parse_search(state, &params) else {
            continue;
        };
        parsed.request.from = Some(parsed.request.from.map_or(from, |f| f.max(from)));
        parsed.request.to = Some(parsed.request.to.map_or(to, |x| x.min(to)));
        let Ok(times) = state.index.matching_times(&parsed.request) else {
            continue;
        };
        let b = buckets(&times, Interval::Day, from, to).map_err(WebError::BadRequest)?;
        let unit = if lang == Lang::Ja { "件" } else { "items" };
        out.push(SavedPanel {
            slug: format!("saved-{id}"),
            name: format!("🔎 {name}"),
            total: b.iter().map(|b| b.mentions).sum(),
            chart: daily_bars(
                &format!("chart-saved-{id}"),
                &name,
                &b,
                PALETTE[(i + 3) % PALETTE.len()],
                unit,
                t.date_axis,
                t.count_axis,
            ),
            search_href: format!("{}/search?{query}", t.prefix),
        });
    }
    Ok(out)
}

pub struct TopItem {
    pub title: String,
    pub url: String,
    pub source: String,
    pub published: String,
    pub label: String,
    pub score: String,
    pub evidence: Vec<String>,
}

#[derive(Template)]
#[template(path = "service.html")]
struct ServicePage<'a> {
    t: &'a Labels,
    w: &'a DashWords,
    css: &'a str,
    path: String,
    slug: String,
    name: String,
    ranges: Vec<RangeLink>,
    from: String,
    to: String,
    hourly: bool,
    total: u64,
    mentions: StackedChart,
    sentiment: StackedChart,
    categories: StackedChart,
    top: Vec<TopItem>,
    alerts: Vec<AlertLine>,
    search_href: String,
}

pub async fn service_ja(
    state: State,
    slug: web::Path<String>,
    p: web::Query<DashboardParams>,
) -> Result<HttpResponse, WebError> {
    service_page(state, &slug, p.into_inner(), Lang::Ja).await
}
pub async fn service_en(
    state: State,
    slug: web::Path<String>,
    p: web::Query<DashboardParams>,
) -> Result<HttpResponse, WebError> {
    service_page(state, &slug, p.into_inner(), Lang::En).await
}

async fn service_page(
    state: State,
    slug: &str,
    p: DashboardParams,
    lang: Lang,
) -> Result<HttpResponse, WebError> {
    if state.dicts.service(slug).is_none() {
        return Err(WebError::NotFoundWhat(format!("service {slug:?}")));
    }
    let t = lang.labels();
    let w = words(lang);
    let win = window(&p, state.clock.now().timestamp_millis())?;
    let (from, to, interval) = (win.from, win.to, win.interval);
    let hourly = interval == Interval::Hour;
    let unit = if lang == Lang::Ja { "件" } else { "mentions" };
    let name = service_name(&state, slug, lang);
    let b = super::api::rollup_buckets(&state, Some(slug), None, None, interval, from, to).await?;
    let s = starts(&b);
    let total: u64 = b.iter().map(|b| b.mentions).sum();
    let incidents = state.store.incidents_between(from, to).await?;
    // Mentions by kind, with unique social authors as a line.
    let max_authors = b.iter().map(|b| b.authors).max().unwrap_or(0).max(1) as f64;
    let mut mentions = kind_chart(
        &format!("mentions-{slug}"),
        &format!("{name} — {}", w.mentions_by_kind),
        &b,
        w,
        t,
        unit,
        hourly,
    )
    .with_line(
        w.authors,
        PALETTE[6],
        &b.iter().map(|b| Some(b.authors as f64)).collect::<Vec<_>>(),
        (0.0, max_authors),
        &s,
        hourly,
    );
    mentions.annotate(from, to, &incidents, t.prefix);
    // Sentiment: shares stacked to 100 %, the mean score as a line on [−1, 1].
    let series = [
        (t.negative.to_string(), PALETTE[1]),
        (t.neutral.to_string(), "#BBBBBB"),
        (t.positive.to_string(), PALETTE[2]),
    ];
    let values: Vec<Vec<f64>> = b
        .iter()
        .map(|b| vec![b.negative as f64, b.neutral as f64, b.positive as f64])
        .collect();
    let sentiment = stacked(&StackSpec {
        id: &format!("sentiment-{slug}"),
        title: &format!("{name} — {}", w.sentiment_over_time),
        starts: &s,
        series: &series,
        values: &values,
        percent: true,
        unit,
        x_label: t.date_axis,
        y_label: w.share_axis,
        hourly,
    })
    .with_line(
        w.mean_score,
        PALETTE[6],
        &b.iter().map(|b| b.mean_sentiment).collect::<Vec<_>>(),
        (-1.0, 1.0),
        &s,
        hourly,
    );
    // Categories over time.
    let cat_rows = state
        .store
        .rollup_categories(
            Some(slug),
            floor(from, Interval::Hour),
            ceil(to, Interval::Hour),
            interval.millis(),
        )
        .await?;
    let cats: Vec<(String, String)> = state
        .dicts
        .categories
        .iter()
        .map(|c| {
            (
                c.slug.clone(),
                if lang == Lang::Ja {
                    c.name_ja.clone()
                } else {
                    c.name_en.clone()
                },
            )
        })
        .collect();
    let step = interval.millis();
    let start = floor(from, interval);
    let mut values = vec![vec![0.0; cats.len()]; s.len()];
    for (hour, cat, n) in cat_rows {
        let (Some(j), true) = (cats.iter().position(|(c, _)| *c == cat), hour >= start) else {
            continue;
        };
        if let Some(row) = values.get_mut(((hour - start) / step) as usize) {
            row[j] += n as f64;
        }
    }
    let cat_series: Vec<(String, &'static str)> = cats
        .iter()
        .enumerate()
        .map(|(i, (_, n))| (n.clone(), PALETTE[i % PALETTE.len()]))
        .collect();
    let categories = stacked(&StackSpec {
        id: &format!("categories-{slug}"),
        title: &format!("{name} — {}", w.categories_over_time),
        starts: &s,
        series: &cat_series,
        values: &values,
        percent: false,
        unit,
        x_label: t.date_axis,
        y_label: t.count_axis,
        hourly,
    });
    // Top items with the evidence for this service.
    let top_rows = state.store.top_items(slug, from, to, 10).await?;
    let ids: Vec<i64> = top_rows.iter().map(|r| r.0).collect();
    let items: HashMap<i64, crate::store::StoredItem> = state
        .store
        .items(&ids)
        .await?
        .into_iter()
        .map(|i| (i.id, i))
        .collect();
    let top = top_rows
        .iter()
        .filter_map(|(id, score, label)| {
            let i = items.get(id)?;
            let analysis: Option<crate::domain::Analysis> = serde_json::from_str(&i.analysis).ok();
            let mut evidence = Vec::new();
            if let Some(a) = analysis {
                evidence.extend(a.sentiment.evidence.iter().take(4).cloned());
                for c in &a.categories {
                    evidence.push(format!("{}: {}", c.name, c.evidence.join(", ")));
                }
            }
            let title = if i.title.trim().is_empty() {
                i.body.chars().take(80).collect()
            } else {
                i.title.clone()
            };
            Some(TopItem {
                title,
                url: i.url.clone(),
                source: i.source.clone(),
                published: crate::aggregate::jst_rfc3339(i.published_at)
                    .get(..16)
                    .unwrap_or("")
                    .replace('T', " "),
                label: label.clone(),
                score: format!("{score:+.2}"),
                evidence,
            })
        })
        .collect();
    let page = ServicePage {
        t,
        w,
        css: css_name(),
        path: format!("/services/{slug}"),
        ranges: ranges(t, &format!("/services/{slug}"), &win),
        from: date(from),
        to: date(to - 1),
        hourly,
        total,
        mentions,
        sentiment,
        categories,
        top,
        alerts: open_alerts(&state, lang, Some(slug)).await?,
        search_href: format!("{}/search?service={slug}", t.prefix),
        slug: slug.to_string(),
        name,
    };
    Ok(html(page.render()?))
}
