//! Early-warning alerts: `/api/alerts`, the alerts page, its Atom feed, and the state changes
//! (acknowledge, resolve, reopen) by operators, from a form or `POST /api/v1/alerts/{id}`.
use super::error::WebError;
use super::i18n::{Labels, Lang};
use super::{css_name, non_empty, parse_service, parse_time_param, State};
use crate::spikes::AlertState;
use crate::store::AlertFilter;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub struct AlertParams {
    from: Option<String>,
    to: Option<String>,
    service: Option<String>,
    state: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// Most alerts on one page.
const MAX_LIMIT: i64 = 200;

fn filter(state: &State, p: &AlertParams) -> Result<AlertFilter, WebError> {
    let limit = match non_empty(&p.limit) {
        None => 50,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                WebError::BadRequest(format!(
                    "limit: {s:?} is not a number from 1 to {MAX_LIMIT}"
                ))
            })?,
    };
    let before = match non_empty(&p.cursor) {
        None => None,
        Some(c) => {
            let bad = || WebError::BadRequest(format!("cursor: {c:?} is not a cursor from `next`"));
            let (at, id) = c.split_once('.').ok_or_else(bad)?;
            Some((
                at.parse().map_err(|_| bad())?,
                id.parse().map_err(|_| bad())?,
            ))
        }
    };
    Ok(AlertFilter {
        from: parse_time_param("from", &p.from)?,
        to: parse_time_param("to", &p.to)?,
        service: parse_service(state, &p.service)?,
        state: non_empty(&p.state)
            .map(AlertState::parse)
            .transpose()
            .map_err(|e| WebError::BadRequest(format!("state: {e}")))?,
        before,
        limit,
    })
}

/// One page of alerts as JSON with their examples, and the cursor of the next page.
async fn page_of(state: &State, f: &AlertFilter) -> Result<(Vec<Value>, Option<String>), WebError> {
    let rows = state.store.alerts(f).await?;
    let next = (rows.len() as i64 == f.limit)
        .then(|| {
            rows.last()
                .map(|r| format!("{}.{}", r.alert.detected_at, r.alert.id))
        })
        .flatten();
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(crate::alerting::stored_alert_json(&state.store, r).await?);
    }
    Ok((out, next))
}

pub async fn api_list(state: State, p: web::Query<AlertParams>) -> Result<HttpResponse, WebError> {
    let f = filter(&state, &p)?;
    let (alerts, next) = page_of(&state, &f).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "alerts": alerts, "next": next })))
}

#[derive(Debug, Deserialize)]
pub struct StateBody {
    state: String,
}

fn alert_id(raw: &str) -> Result<i64, WebError> {
    raw.parse()
        .map_err(|_| WebError::NotFoundWhat(format!("alert {raw:?}")))
}

/// `POST /api/v1/alerts/{id}` with `{"state": "acknowledged" | "resolved" | "open"}`.
pub async fn api_set_state(
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Json<StateBody>,
) -> Result<HttpResponse, WebError> {
    let id = alert_id(&id)?;
    let to = AlertState::parse(body.state.trim()).map_err(WebError::BadRequest)?;
    set_state(&state, &req, id, to).await?;
    let v = crate::alerting::alert_json_by_id(&state.store, id)
        .await?
        .ok_or_else(|| WebError::NotFoundWhat(format!("alert {id}")))?;
    Ok(HttpResponse::Ok().json(v))
}

async fn set_state(
    state: &State,
    req: &HttpRequest,
    id: i64,
    to: AlertState,
) -> Result<(), WebError> {
    let before = state
        .store
        .alert(id)
        .await?
        .ok_or_else(|| WebError::NotFoundWhat(format!("alert {id}")))?;
    let who = super::auth::actor(req);
    crate::alerting::set_state(state, id, to, &who).await?;
    super::auth::audit(
        state,
        req,
        "alert.state",
        &format!("alert {id}"),
        Some(before.alert.state.as_str().to_string()),
        Some(to.as_str().to_string()),
    )
    .await;
    Ok(())
}

#[derive(Debug, Deserialize)]
pub struct StateForm {
    csrf: String,
    state: String,
}

/// The page's acknowledge / resolve / reopen buttons.
pub async fn form_set_state(
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<StateForm>,
) -> Result<HttpResponse, WebError> {
    super::auth::check_form_csrf(&req, &form.csrf)?;
    let id = alert_id(&id)?;
    let to = AlertState::parse(form.state.trim()).map_err(WebError::BadRequest)?;
    set_state(&state, &req, id, to).await?;
    let prefix = if req.path().starts_with("/en/") {
        "/en"
    } else {
        ""
    };
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", format!("{prefix}/alerts/{id}")))
        .finish())
}

/// Words of the alerts page.
pub struct AlertWords {
    pub title: &'static str,
    pub all: &'static str,
    pub open: &'static str,
    pub acknowledged: &'static str,
    pub resolved: &'static str,
    pub none: &'static str,
    pub started: &'static str,
    pub detected: &'static str,
    pub observed: &'static str,
    pub expected: &'static str,
    pub score: &'static str,
    pub examples: &'static str,
    pub acknowledge: &'static str,
    pub resolve: &'static str,
    pub reopen: &'static str,
    pub volume: &'static str,
    pub negative_share: &'static str,
    pub whole_service: &'static str,
    pub older: &'static str,
    pub by: &'static str,
    pub feed: &'static str,
    pub method: &'static str,
}

const JA: AlertWords = AlertWords {
    title: "アラート",
    all: "すべて",
    open: "未対応",
    acknowledged: "確認済み",
    resolved: "解決済み",
    none: "該当するアラートはありません。",
    started: "開始",
    detected: "検知",
    observed: "観測",
    expected: "想定",
    score: "スコア (−log₁₀ p)",
    examples: "例",
    acknowledge: "確認した",
    resolve: "解決にする",
    reopen: "未対応に戻す",
    volume: "言及数の急増",
    negative_share: "ネガティブ比率の上昇",
    whole_service: "全体",
    older: "さらに古いアラート →",
    by: "変更者",
    feed: "Atom フィード",
    method: "1時間ごとの言及数を、同じ曜日・時刻の過去4週の平均と先週の平均から見込んだ値と比べ（ポアソン分布の片側検定）、ネガティブな言及の比率も先週と比べます。同じサービスの急増は6時間以内ならひとつのアラートにまとめます。",
};

const EN: AlertWords = AlertWords {
    title: "Alerts",
    all: "All",
    open: "Open",
    acknowledged: "Acknowledged",
    resolved: "Resolved",
    none: "No alerts match.",
    started: "Started",
    detected: "Detected",
    observed: "Observed",
    expected: "Expected",
    score: "Score (−log₁₀ p)",
    examples: "Examples",
    acknowledge: "Acknowledge",
    resolve: "Resolve",
    reopen: "Reopen",
    volume: "Mention spike",
    negative_share: "Negative share rising",
    whole_service: "overall",
    older: "Older alerts →",
    by: "Changed by",
    feed: "Atom feed",
    method: "Hourly mentions are compared with what the same hour of the week in the last four weeks and last week's mean lead one to expect (a one-sided Poisson test), and the share of negative mentions with last week's. Bursts of one service within six hours are one alert.",
};

pub struct AlertView {
    pub id: i64,
    pub service: String,
    pub category: String,
    pub metric: &'static str,
    pub state: &'static str,
    pub state_label: &'static str,
    pub started: String,
    pub detected: String,
    pub observed: String,
    pub expected: String,
    pub score: f64,
    pub state_by: String,
    /// (title, url, sentiment, published)
    pub examples: Vec<(String, String, String, String)>,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage<'a> {
    t: &'a Labels,
    w: &'a AlertWords,
    css: &'a str,
    path: String,
    alerts: Vec<AlertView>,
    filter_state: String,
    next: Option<String>,
    csrf: String,
    /// Whether the viewer may change states (operator or admin, or open mode).
    can_change: bool,
    single: bool,
}

fn short_time(rfc: &Value) -> String {
    // 2019-07-03T10:00:00+09:00 → 2019-07-03 10:00
    rfc.as_str()
        .map(|s| s.get(..16).unwrap_or(s).replace('T', " "))
        .unwrap_or_default()
}

fn view(v: &Value, state: &State, lang: Lang) -> AlertView {
    let w = if lang == Lang::Ja { &JA } else { &EN };
    let service = v["service"].as_str().unwrap_or("").to_string();
    let name = match service.strip_prefix(crate::alerting::SAVED_PREFIX) {
        Some(id) => format!("🔎 #{id}"),
        None => state
            .dicts
            .service(&service)
            .map(|s| {
                if lang == Lang::Ja {
                    s.name_ja.clone()
                } else {
                    s.name_en.clone()
                }
            })
            .unwrap_or(service),
    };
    let share = v["metric"] == "negative_share";
    let fmt = |x: &Value| {
        let x = x.as_f64().unwrap_or(0.0);
        if share {
            format!("{:.0}%", x * 100.0)
        } else {
            format!("{x}")
        }
    };
    let st = v["state"].as_str().unwrap_or("open");
    AlertView {
        id: v["id"].as_i64().unwrap_or(0),
        service: name,
        category: v["category"]
            .as_str()
            .map(|slug| {
                state
                    .dicts
                    .categories
                    .iter()
                    .find(|c| c.slug == slug)
                    .map(|c| {
                        if lang == Lang::Ja {
                            c.name_ja.clone()
                        } else {
                            c.name_en.clone()
                        }
                    })
                    .unwrap_or_else(|| slug.to_string())
            })
            .unwrap_or_else(|| w.whole_service.to_string()),
        metric: if share { w.negative_share } else { w.volume },
        state: match st {
            "acknowledged" => "acknowledged",
            "resolved" => "resolved",
            _ => "open",
        },
        state_label: match st {
            "acknowledged" => w.acknowledged,
            "resolved" => w.resolved,
            _ => w.open,
        },
        started: short_time(&v["started_at"]),
        detected: short_time(&v["detected_at"]),
        observed: fmt(&v["observed"]),
        expected: fmt(&v["expected"]),
        score: v["score"].as_f64().unwrap_or(0.0),
        state_by: v["state_by"].as_str().unwrap_or("").to_string(),
        examples: v["examples"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["title"].as_str().unwrap_or("").to_string(),
                            e["url"].as_str().unwrap_or("").to_string(),
                            e["sentiment"].as_str().unwrap_or("").to_string(),
                            short_time(&e["published_at"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn can_change(req: &HttpRequest) -> bool {
    match super::auth::authed(req) {
        Some(a) => a.user.role >= crate::auth::Role::Operator,
        None => true,
    }
}

pub async fn page_ja(
    state: State,
    req: HttpRequest,
    p: web::Query<AlertParams>,
) -> Result<HttpResponse, WebError> {
    page(state, req, p.into_inner(), Lang::Ja).await
}
pub async fn page_en(
    state: State,
    req: HttpRequest,
    p: web::Query<AlertParams>,
) -> Result<HttpResponse, WebError> {
    page(state, req, p.into_inner(), Lang::En).await
}

async fn page(
    state: State,
    req: HttpRequest,
    p: AlertParams,
    lang: Lang,
) -> Result<HttpResponse, WebError> {
    let f = filter(&state, &p)?;
    let (alerts, next) = page_of(&state, &f).await?;
    let filter_state = f.state.map(|s| s.as_str()).unwrap_or("").to_string();
    let next = next.map(|c| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("cursor", &c);
        if !filter_state.is_empty() {
            q.append_pair("state", &filter_state);
        }
        format!("{}/alerts?{}", lang.labels().prefix, q.finish())
    });
    render(&state, &req, lang, alerts, filter_state, next, false)
}

fn render(
    state: &State,
    req: &HttpRequest,
    lang: Lang,
    alerts: Vec<Value>,
    filter_state: String,
    next: Option<String>,
    single: bool,
) -> Result<HttpResponse, WebError> {
    let page = AlertsPage {
        t: lang.labels(),
        w: if lang == Lang::Ja { &JA } else { &EN },
        css: css_name(),
        path: req
            .path()
            .strip_prefix("/en")
            .unwrap_or(req.path())
            .to_string(),
        alerts: alerts.iter().map(|v| view(v, state, lang)).collect(),
        filter_state,
        next,
        csrf: super::auth::authed(req).map(|a| a.csrf).unwrap_or_default(),
        can_change: can_change(req),
        single,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}

pub async fn one_ja(
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    one(state, req, &id, Lang::Ja).await
}
pub async fn one_en(
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    one(state, req, &id, Lang::En).await
}

async fn one(
    state: State,
    req: HttpRequest,
    id: &str,
    lang: Lang,
) -> Result<HttpResponse, WebError> {
    let id = alert_id(id)?;
    let v = crate::alerting::alert_json_by_id(&state.store, id)
        .await?
        .ok_or_else(|| WebError::NotFoundWhat(format!("alert {id}")))?;
    render(&state, &req, lang, vec![v], String::new(), None, true)
}

/// The latest 50 alerts as an Atom feed (for feed readers and chat integrations).
pub async fn atom(state: State) -> Result<HttpResponse, WebError> {
    let f = AlertFilter {
        limit: 50,
        ..AlertFilter::default()
    };
    let (alerts, _) = page_of(&state, &f).await?;
    let base = state.settings.status.public_url.trim_end_matches('/');
    let esc = |s: &str| html_escape::encode_text(s).to_string();
    let updated = alerts
        .iter()
        .filter_map(|a| a["detected_at"].as_str())
        .max()
        .map(str::to_string)
        .unwrap_or_else(|| crate::aggregate::jst_rfc3339(state.clock.now().timestamp_millis()));
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"ja\">\n<id>{base}/alerts</id>\n<title>kizashi {}</title>\n<updated>{updated}</updated>\n<link rel=\"alternate\" type=\"text/html\" href=\"{base}/alerts\"/>\n<link rel=\"self\" type=\"application/atom+xml\" href=\"{base}/alerts.atom\"/>\n",
        JA.title
    );
    for a in &alerts {
        let v = view(a, &state, Lang::Ja);
        let text = crate::alerting::slack_text(a, "alert.opened", base);
        out.push_str(&format!(
            "<entry>\n<id>{base}/alerts/{id}</id>\n<title>{title}</title>\n<published>{p}</published>\n<updated>{p}</updated>\n<link rel=\"alternate\" type=\"text/html\" href=\"{base}/alerts/{id}\"/>\n<category term=\"{state}\"/>\n<content type=\"text\">{c}</content>\n</entry>\n",
            id = v.id,
            title = esc(&format!("{} {} — {} ({})", v.service, v.category, v.metric, v.state_label)),
            p = a["detected_at"].as_str().unwrap_or(""),
            state = v.state,
            c = esc(&text),
        ));
    }
    out.push_str("</feed>\n");
    Ok(HttpResponse::Ok()
        .content_type("application/atom+xml; charset=utf-8")
        .body(out))
}
