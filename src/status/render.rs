//! Renders a status snapshot into every public document: HTML pages (Japanese at `/status…`,
//! English at `/en/status…`), Atom and RSS, and Statuspage-shaped JSON under `/api/v2/`.
//! Pure: the snapshot, the settings and `now` go in, (path, content type, bytes) come out.
use super::history::{daily_worst, day_starts, DAY, HISTORY_DAYS};
use super::markdown::to_html;
use crate::config::StatusSettings;
use crate::domain::status::{
    Component, ComponentStatus, Impact, Incident, IncidentStatus, Maintenance, MaintenancePhase,
    StatusSnapshot,
};
use askama::Template;
use chrono::TimeZone;
use chrono_tz::Asia::Tokyo;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

pub struct Labels {
    pub lang: Lang,
    pub html_lang: &'static str,
    pub prefix: &'static str,
    pub other_prefix: &'static str,
    pub other_lang_name: &'static str,
    pub status_title: &'static str,
    pub components: &'static str,
    pub active_incidents: &'static str,
    pub upcoming_maintenance: &'static str,
    pub maintenance_now: &'static str,
    pub past_maintenance: &'static str,
    pub history: &'static str,
    pub past_days: &'static str,
    pub no_incidents: &'static str,
    pub no_components: &'static str,
    pub affected: &'static str,
    pub postmortem: &'static str,
    pub updated: &'static str,
    pub back: &'static str,
    pub no_data: &'static str,
    pub today: &'static str,
    pub days_ago: &'static str,
}

pub const JA: Labels = Labels {
    lang: Lang::Ja,
    html_lang: "ja",
    prefix: "",
    other_prefix: "/en",
    other_lang_name: "English",
    status_title: "システムステータス",
    components: "コンポーネント",
    active_incidents: "発生中の障害",
    upcoming_maintenance: "メンテナンス予定",
    maintenance_now: "メンテナンス実施中",
    past_maintenance: "過去のメンテナンス",
    history: "障害履歴",
    past_days: "過去90日間",
    no_incidents: "障害の記録はありません。",
    no_components: "コンポーネントはまだ登録されていません。",
    affected: "影響範囲",
    postmortem: "事後報告",
    updated: "最終更新",
    back: "ステータスに戻る",
    no_data: "データなし",
    today: "今日",
    days_ago: "90日前",
};

pub const EN: Labels = Labels {
    lang: Lang::En,
    html_lang: "en",
    prefix: "/en",
    other_prefix: "",
    other_lang_name: "日本語",
    status_title: "System status",
    components: "Components",
    active_incidents: "Active incidents",
    upcoming_maintenance: "Scheduled maintenance",
    maintenance_now: "Maintenance in progress",
    past_maintenance: "Past maintenance",
    history: "Incident history",
    past_days: "Past 90 days",
    no_incidents: "No incidents recorded.",
    no_components: "No components yet.",
    affected: "Affected",
    postmortem: "Postmortem",
    updated: "Last updated",
    back: "Back to status",
    no_data: "No data",
    today: "Today",
    days_ago: "90 days ago",
};

impl Labels {
    fn component(&self, s: ComponentStatus) -> &'static str {
        match self.lang {
            Lang::Ja => s.ja(),
            Lang::En => s.en(),
        }
    }
    fn incident(&self, s: IncidentStatus) -> &'static str {
        match self.lang {
            Lang::Ja => s.ja(),
            Lang::En => s.en(),
        }
    }
    fn phase(&self, p: MaintenancePhase) -> &'static str {
        match self.lang {
            Lang::Ja => p.ja(),
            Lang::En => p.en(),
        }
    }
    fn headline(&self, i: Impact) -> &'static str {
        match self.lang {
            Lang::Ja => headline_ja(i),
            Lang::En => headline_en(i),
        }
    }
}

pub fn headline_ja(i: Impact) -> &'static str {
    match i {
        Impact::None => "全システム正常稼働",
        Impact::Maintenance => "メンテナンス中",
        Impact::Minor => "一部のシステムでパフォーマンス低下",
        Impact::Major => "一部のシステムで障害が発生しています",
        Impact::Critical => "重大な障害が発生しています",
    }
}

/// Statuspage's own descriptions, so existing tools show what they expect.
pub fn headline_en(i: Impact) -> &'static str {
    match i {
        Impact::None => "All Systems Operational",
        Impact::Maintenance => "Service Under Maintenance",
        Impact::Minor => "Minor Service Outage",
        Impact::Major => "Partial System Outage",
        Impact::Critical => "Major Service Outage",
    }
}

pub fn jst(ms: i64) -> String {
    Tokyo
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M JST").to_string())
        .unwrap_or_default()
}

/// ISO 8601 with the JST offset and milliseconds, as Statuspage writes times.
pub fn iso(ms: i64) -> String {
    Tokyo
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string())
        .unwrap_or_default()
}

fn window(m: &Maintenance) -> String {
    format!("{} – {}", jst(m.starts_at), jst(m.ends_at))
}

/// The state the public sees: a component inside a running maintenance window shows as under
/// maintenance unless something worse is recorded.
fn effective(c: &Component, snap: &StatusSnapshot, now: i64) -> ComponentStatus {
    let in_maintenance = snap
        .maintenances
        .iter()
        .any(|m| m.phase(now) == MaintenancePhase::InProgress && m.components.contains(&c.id));
    if in_maintenance && c.status == ComponentStatus::Operational {
        ComponentStatus::UnderMaintenance
    } else {
        c.status
    }
}

/// The overall indicator: the worst of the components' states and the open incidents.
pub fn indicator(snap: &StatusSnapshot, now: i64) -> Impact {
    let components = snap
        .components
        .iter()
        .map(|c| effective(c, snap, now).impact());
    let incidents = snap
        .incidents
        .iter()
        .filter(|i| i.status != IncidentStatus::Resolved)
        .map(|i| i.impact);
    components.chain(incidents).max().unwrap_or(Impact::None)
}

/// When the pages must be rebuilt even without a change: the next JST midnight (the history
/// bars roll over) or the next maintenance boundary, whichever comes first.
pub fn valid_until(snap: &StatusSnapshot, now: i64) -> i64 {
    let midnight = crate::aggregate::floor(now, crate::aggregate::Interval::Day) + DAY;
    snap.maintenances
        .iter()
        .flat_map(|m| [Some(m.starts_at), Some(m.ends_at), m.completed_at])
        .flatten()
        .filter(|&t| t > now)
        .fold(midnight, i64::min)
}

pub struct BarView {
    pub class: &'static str,
    pub title: String,
}

pub struct ComponentView {
    pub id: String,
    pub name: String,
    pub status: &'static str,
    pub status_label: &'static str,
    pub bars: Vec<BarView>,
}

pub struct GroupView {
    pub name: Option<String>,
    pub components: Vec<ComponentView>,
}

pub struct UpdateView {
    pub status_label: &'static str,
    pub at: String,
    pub body_html: String,
}

pub struct IncidentView {
    pub id: i64,
    pub name: String,
    pub status_label: &'static str,
    pub impact: &'static str,
    pub started: String,
    pub affected: String,
    pub updates: Vec<UpdateView>,
    pub postmortem_html: Option<String>,
}

pub struct MaintenanceView {
    pub id: i64,
    pub name: String,
    pub phase: &'static str,
    pub window: String,
    pub components: String,
    pub body_html: String,
}

#[derive(Template)]
#[template(path = "status/status.html")]
struct StatusPage<'a> {
    t: &'a Labels,
    site: &'a str,
    css: &'a str,
    path: &'a str,
    generated: String,
    indicator: &'static str,
    headline: &'static str,
    active: Vec<IncidentView>,
    active_maintenances: Vec<MaintenanceView>,
    upcoming: Vec<MaintenanceView>,
    groups: Vec<GroupView>,
    components_empty: bool,
}

#[derive(Template)]
#[template(path = "status/incident.html")]
struct IncidentPage<'a> {
    t: &'a Labels,
    site: &'a str,
    css: &'a str,
    path: &'a str,
    generated: String,
    i: IncidentView,
}

#[derive(Template)]
#[template(path = "status/history.html")]
struct HistoryPage<'a> {
    t: &'a Labels,
    site: &'a str,
    css: &'a str,
    path: &'a str,
    generated: String,
    incidents: Vec<IncidentView>,
    maintenances: Vec<MaintenanceView>,
}

struct Ctx<'a> {
    snap: &'a StatusSnapshot,
    settings: &'a StatusSettings,
    css: &'a str,
    now: i64,
}

impl Ctx<'_> {
    fn component_name(&self, id: &str) -> String {
        self.snap
            .components
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    fn incident_view(&self, t: &Labels, i: &Incident) -> IncidentView {
        IncidentView {
            id: i.id,
            name: i.name.clone(),
            status_label: t.incident(i.status),
            impact: i.impact.as_str(),
            started: jst(i.created_at),
            affected: i
                .components
                .iter()
                .map(|(id, s)| format!("{} ({})", self.component_name(id), t.component(*s)))
                .collect::<Vec<_>>()
                .join(", "),
            updates: i
                .updates
                .iter()
                .map(|u| UpdateView {
                    status_label: t.incident(u.status),
                    at: jst(u.created_at),
                    body_html: to_html(&u.body),
                })
                .collect(),
            postmortem_html: i
                .postmortem
                .as_deref()
                .filter(|p| !p.trim().is_empty())
                .map(to_html),
        }
    }

    fn maintenance_view(&self, t: &Labels, m: &Maintenance) -> MaintenanceView {
        MaintenanceView {
            id: m.id,
            name: m.name.clone(),
            phase: t.phase(m.phase(self.now)),
            window: window(m),
            components: m
                .components
                .iter()
                .map(|c| self.component_name(c))
                .collect::<Vec<_>>()
                .join(", "),
            body_html: to_html(&m.body),
        }
    }

    fn groups(&self, t: &Labels) -> Vec<GroupView> {
        let days = day_starts(self.now, HISTORY_DAYS);
        let mut groups: Vec<GroupView> = Vec::new();
        for c in &self.snap.components {
            let windows: Vec<(i64, i64, ComponentStatus)> = self
                .snap
                .maintenances
                .iter()
                .filter(|m| m.components.contains(&c.id))
                .map(|m| {
                    let end = m.completed_at.map_or(m.ends_at, |d| d.min(m.ends_at));
                    (m.starts_at, end, ComponentStatus::UnderMaintenance)
                })
                .collect();
            let events = self
                .snap
                .events
                .get(&c.id)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let worst = daily_worst(events, &windows, c.created_at, &days, self.now);
            let bars = days
                .iter()
                .zip(worst)
                .map(|(d, w)| {
                    let date = Tokyo
                        .timestamp_millis_opt(*d)
                        .single()
                        .map(|x| x.format("%Y-%m-%d").to_string())
                        .unwrap_or_default();
                    match w {
                        Some(s) => BarView {
                            class: s.as_str(),
                            title: format!("{date} {}", t.component(s)),
                        },
                        None => BarView {
                            class: "none",
                            title: format!("{date} {}", t.no_data),
                        },
                    }
                })
                .collect();
            let status = effective(c, self.snap, self.now);
            let view = ComponentView {
                id: c.id.clone(),
                name: c.name.clone(),
                status: status.as_str(),
                status_label: t.component(status),
                bars,
            };
            match groups.last_mut() {
                Some(g) if g.name == c.group && c.group.is_some() => g.components.push(view),
                _ => groups.push(GroupView {
                    name: c.group.clone(),
                    components: vec![view],
                }),
            }
        }
        groups
    }

    fn status_page(&self, t: &Labels, path: &str) -> askama::Result<String> {
        let ind = indicator(self.snap, self.now);
        let by_phase = |p: MaintenancePhase| -> Vec<MaintenanceView> {
            self.snap
                .maintenances
                .iter()
                .filter(|m| m.phase(self.now) == p)
                .map(|m| self.maintenance_view(t, m))
                .collect()
        };
        StatusPage {
            t,
            site: &self.settings.name,
            css: self.css,
            path,
            generated: self.updated(),
            indicator: ind.as_str(),
            headline: t.headline(ind),
            active: self
                .snap
                .incidents
                .iter()
                .filter(|i| i.status != IncidentStatus::Resolved)
                .map(|i| self.incident_view(t, i))
                .collect(),
            active_maintenances: by_phase(MaintenancePhase::InProgress),
            upcoming: by_phase(MaintenancePhase::Scheduled),
            groups: self.groups(t),
            components_empty: self.snap.components.is_empty(),
        }
        .render()
    }

    fn history_page(&self, t: &Labels, path: &str) -> askama::Result<String> {
        HistoryPage {
            t,
            site: &self.settings.name,
            css: self.css,
            path,
            generated: self.updated(),
            incidents: self
                .snap
                .incidents
                .iter()
                .map(|i| self.incident_view(t, i))
                .collect(),
            maintenances: self
                .snap
                .maintenances
                .iter()
                .rev()
                .filter(|m| m.phase(self.now) == MaintenancePhase::Completed)
                .map(|m| self.maintenance_view(t, m))
                .collect(),
        }
        .render()
    }

    fn incident_page(&self, t: &Labels, i: &Incident, path: &str) -> askama::Result<String> {
        IncidentPage {
            t,
            site: &self.settings.name,
            css: self.css,
            path,
            generated: jst(i.updated_at),
            i: self.incident_view(t, i),
        }
        .render()
    }

    // ---- Statuspage-shaped JSON ----

    /// When the data last changed: shown as "last updated", so unchanged data renders to
    /// unchanged bytes (same ETag, and the compressed forms can be reused).
    fn last_change(&self) -> Option<i64> {
        self.snap
            .components
            .iter()
            .map(|c| c.updated_at)
            .chain(self.snap.incidents.iter().map(|i| i.updated_at))
            .chain(self.snap.maintenances.iter().map(|m| m.updated_at))
            .max()
    }

    fn updated(&self) -> String {
        self.last_change().map(jst).unwrap_or_else(|| "—".into())
    }

    fn page_json(&self) -> Value {
        let updated = self
            .snap
            .components
            .iter()
            .map(|c| c.updated_at)
            .chain(self.snap.incidents.iter().map(|i| i.updated_at))
            .chain(self.snap.maintenances.iter().map(|m| m.updated_at))
            .max()
            .unwrap_or(self.now);
        json!({
            "id": "kizashi",
            "name": self.settings.name,
            "url": self.settings.public_url,
            "time_zone": "Asia/Tokyo",
            "updated_at": iso(updated),
        })
    }

    fn components_json(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut seen_groups: Vec<i64> = Vec::new();
        for c in &self.snap.components {
            if let (Some(gid), Some(gname)) = (c.group_id, &c.group) {
                if !seen_groups.contains(&gid) {
                    seen_groups.push(gid);
                    let members: Vec<&Component> = self
                        .snap
                        .components
                        .iter()
                        .filter(|x| x.group_id == Some(gid))
                        .collect();
                    let worst = members
                        .iter()
                        .map(|x| effective(x, self.snap, self.now))
                        .max()
                        .unwrap_or(ComponentStatus::Operational);
                    out.push(json!({
                        "id": format!("group-{gid}"),
                        "name": gname,
                        "status": worst.as_str(),
                        "created_at": iso(members.iter().map(|x| x.created_at).min().unwrap_or(0)),
                        "updated_at": iso(members.iter().map(|x| x.updated_at).max().unwrap_or(0)),
                        "position": c.group_position,
                        "description": Value::Null,
                        "showcase": false,
                        "start_date": Value::Null,
                        "group_id": Value::Null,
                        "page_id": "kizashi",
                        "group": true,
                        "only_show_if_degraded": false,
                        "components": members.iter().map(|x| x.id.clone()).collect::<Vec<_>>(),
                    }));
                }
            }
            out.push(json!({
                "id": c.id,
                "name": c.name,
                "status": effective(c, self.snap, self.now).as_str(),
                "created_at": iso(c.created_at),
                "updated_at": iso(c.updated_at),
                "position": c.position,
                "description": if c.description.is_empty() { Value::Null } else { json!(c.description) },
                "showcase": true,
                "start_date": Value::Null,
                "group_id": c.group_id.map(|g| format!("group-{g}")),
                "page_id": "kizashi",
                "group": false,
                "only_show_if_degraded": false,
            }));
        }
        out
    }

    fn component_json(&self, id: &str, status: ComponentStatus) -> Value {
        let c = self.snap.components.iter().find(|c| c.id == id);
        json!({
            "id": id,
            "name": c.map(|c| c.name.clone()).unwrap_or_else(|| id.to_string()),
            "status": status.as_str(),
            "created_at": c.map(|c| iso(c.created_at)),
            "updated_at": c.map(|c| iso(c.updated_at)),
            "position": c.map(|c| c.position),
            "description": c.map(|c| c.description.clone()).filter(|d| !d.is_empty()),
            "showcase": true,
            "group_id": c.and_then(|c| c.group_id).map(|g| format!("group-{g}")),
            "page_id": "kizashi",
            "group": false,
            "only_show_if_degraded": false,
        })
    }

    fn incident_json(&self, i: &Incident) -> Value {
        json!({
            "id": i.id.to_string(),
            "name": i.name,
            "status": i.status.as_str(),
            "created_at": iso(i.created_at),
            "updated_at": iso(i.updated_at),
            "monitoring_at": i.monitoring_at.map(iso),
            "resolved_at": i.resolved_at.map(iso),
            "impact": i.impact.as_str(),
            "shortlink": format!("{}/status/incidents/{}", self.settings.public_url, i.id),
            "started_at": iso(i.created_at),
            "page_id": "kizashi",
            "incident_updates": i.updates.iter().map(|u| json!({
                "id": u.id.to_string(),
                "status": u.status.as_str(),
                "body": u.body,
                "incident_id": i.id.to_string(),
                "created_at": iso(u.created_at),
                "updated_at": iso(u.created_at),
                "display_at": iso(u.created_at),
                "affected_components": Value::Null,
            })).collect::<Vec<_>>(),
            "components": i.components.iter()
                .map(|(id, s)| self.component_json(id, *s)).collect::<Vec<_>>(),
            "postmortem_body": i.postmortem,
        })
    }

    fn maintenance_json(&self, m: &Maintenance) -> Value {
        let phase = m.phase(self.now);
        json!({
            "id": format!("m{}", m.id),
            "name": m.name,
            "status": phase.as_str(),
            "created_at": iso(m.created_at),
            "updated_at": iso(m.updated_at),
            "monitoring_at": Value::Null,
            "resolved_at": (phase == MaintenancePhase::Completed)
                .then(|| iso(m.completed_at.unwrap_or(m.ends_at).min(m.ends_at))),
            "impact": "maintenance",
            "shortlink": format!("{}/status", self.settings.public_url),
            "started_at": iso(m.starts_at),
            "page_id": "kizashi",
            "scheduled_for": iso(m.starts_at),
            "scheduled_until": iso(m.ends_at),
            "incident_updates": [{
                "id": format!("m{}-1", m.id),
                "status": phase.as_str(),
                "body": m.body,
                "incident_id": format!("m{}", m.id),
                "created_at": iso(m.created_at),
                "updated_at": iso(m.updated_at),
                "display_at": iso(m.created_at),
                "affected_components": Value::Null,
            }],
            "components": m.components.iter().map(|id| {
                let c = self.snap.components.iter().find(|c| &c.id == id);
                self.component_json(id, c.map(|c| effective(c, self.snap, self.now))
                    .unwrap_or(ComponentStatus::Operational))
            }).collect::<Vec<_>>(),
        })
    }

    fn status_json(&self) -> Value {
        let ind = indicator(self.snap, self.now);
        json!({ "indicator": ind.as_str(), "description": headline_en(ind) })
    }

    fn unresolved(&self) -> Vec<Value> {
        self.snap
            .incidents
            .iter()
            .filter(|i| i.status != IncidentStatus::Resolved)
            .map(|i| self.incident_json(i))
            .collect()
    }

    fn maintenances_where(&self, f: impl Fn(MaintenancePhase) -> bool) -> Vec<Value> {
        self.snap
            .maintenances
            .iter()
            .filter(|m| f(m.phase(self.now)))
            .map(|m| self.maintenance_json(m))
            .collect()
    }

    // ---- feeds ----

    fn feed_entries(&self) -> impl Iterator<Item = &Incident> {
        self.snap.incidents.iter().take(50)
    }

    fn entry_html(&self, i: &Incident) -> String {
        i.updates
            .iter()
            .map(|u| {
                format!(
                    "<p><strong>{}</strong> ({})</p>{}",
                    u.status.ja(),
                    jst(u.created_at),
                    to_html(&u.body)
                )
            })
            .collect()
    }

    fn atom(&self) -> String {
        let base = &self.settings.public_url;
        let esc = |s: &str| html_escape::encode_text(s).to_string();
        let updated = self
            .snap
            .incidents
            .iter()
            .map(|i| i.updated_at)
            .max()
            .unwrap_or(0);
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"ja\">\n<id>{base}/status</id>\n<title>{} {}</title>\n<updated>{}</updated>\n<link rel=\"alternate\" type=\"text/html\" href=\"{base}/status\"/>\n<link rel=\"self\" type=\"application/atom+xml\" href=\"{base}/status.atom\"/>\n",
            esc(&self.settings.name),
            JA.status_title,
            iso(updated)
        );
        for i in self.feed_entries() {
            out.push_str(&format!(
                "<entry>\n<id>{base}/status/incidents/{id}</id>\n<title>[{stage}] {title}</title>\n<published>{p}</published>\n<updated>{u}</updated>\n<link rel=\"alternate\" type=\"text/html\" href=\"{base}/status/incidents/{id}\"/>\n<content type=\"html\">{c}</content>\n</entry>\n",
                id = i.id,
                stage = i.status.ja(),
                title = esc(&i.name),
                p = iso(i.created_at),
                u = iso(i.updated_at),
                c = esc(&self.entry_html(i)),
            ));
        }
        out.push_str("</feed>\n");
        out
    }

    fn rss(&self) -> String {
        let base = &self.settings.public_url;
        let esc = |s: &str| html_escape::encode_text(s).to_string();
        let rfc2822 = |ms: i64| {
            Tokyo
                .timestamp_millis_opt(ms)
                .single()
                .map(|t| t.to_rfc2822())
                .unwrap_or_default()
        };
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<rss version=\"2.0\">\n<channel>\n<title>{} {}</title>\n<link>{base}/status</link>\n<description>{}</description>\n<language>ja</language>\n",
            esc(&self.settings.name),
            JA.status_title,
            JA.history
        );
        for i in self.feed_entries() {
            out.push_str(&format!(
                "<item>\n<title>[{stage}] {title}</title>\n<link>{base}/status/incidents/{id}</link>\n<guid isPermaLink=\"true\">{base}/status/incidents/{id}</guid>\n<pubDate>{p}</pubDate>\n<description>{c}</description>\n</item>\n",
                id = i.id,
                stage = i.status.ja(),
                title = esc(&i.name),
                p = rfc2822(i.updated_at),
                c = esc(&self.entry_html(i)),
            ));
        }
        out.push_str("</channel>\n</rss>\n");
        out
    }
}

/// One public document before compression.
pub struct Document {
    pub path: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

pub const HTML: &str = "text/html; charset=utf-8";
pub const JSON: &str = "application/json";
pub const ATOM: &str = "application/atom+xml; charset=utf-8";
pub const RSS: &str = "application/rss+xml; charset=utf-8";

/// Every public status document for the snapshot at `now`.
pub fn render_documents(
    snap: &StatusSnapshot,
    settings: &StatusSettings,
    css: &str,
    now: i64,
) -> Result<Vec<Document>, askama::Error> {
    let cx = Ctx {
        snap,
        settings,
        css,
        now,
    };
    let mut docs = Vec::new();
    let mut html = |path: String, body: String| {
        docs.push(Document {
            path,
            content_type: HTML,
            body: body.into_bytes(),
        })
    };
    for t in [&JA, &EN] {
        let p = format!("{}/status", t.prefix);
        html(p, cx.status_page(t, "/status")?);
        let p = format!("{}/status/history", t.prefix);
        html(p, cx.history_page(t, "/status/history")?);
        for i in &snap.incidents {
            let rel = format!("/status/incidents/{}", i.id);
            html(format!("{}{rel}", t.prefix), cx.incident_page(t, i, &rel)?);
        }
    }
    let page = cx.page_json();
    let components = cx.components_json();
    let unresolved = cx.unresolved();
    let mut json_doc = |path: &str, v: Value| {
        docs.push(Document {
            path: path.to_string(),
            content_type: JSON,
            body: serde_json::to_vec(&v).unwrap_or_default(),
        })
    };
    json_doc(
        "/api/v2/summary.json",
        json!({
            "page": page,
            "components": components,
            "incidents": unresolved,
            "scheduled_maintenances": cx.maintenances_where(|p| p != MaintenancePhase::Completed),
            "status": cx.status_json(),
        }),
    );
    json_doc(
        "/api/v2/status.json",
        json!({ "page": page, "status": cx.status_json() }),
    );
    json_doc(
        "/api/v2/components.json",
        json!({ "page": page, "components": components }),
    );
    json_doc(
        "/api/v2/incidents.json",
        json!({
            "page": page,
            "incidents": snap.incidents.iter().take(50).map(|i| cx.incident_json(i)).collect::<Vec<_>>(),
        }),
    );
    json_doc(
        "/api/v2/incidents/unresolved.json",
        json!({ "page": page, "incidents": unresolved }),
    );
    json_doc(
        "/api/v2/scheduled-maintenances.json",
        json!({ "page": page, "scheduled_maintenances": cx.maintenances_where(|_| true) }),
    );
    json_doc(
        "/api/v2/scheduled-maintenances/upcoming.json",
        json!({ "page": page, "scheduled_maintenances": cx.maintenances_where(|p| p == MaintenancePhase::Scheduled) }),
    );
    json_doc(
        "/api/v2/scheduled-maintenances/active.json",
        json!({ "page": page, "scheduled_maintenances": cx.maintenances_where(|p| p == MaintenancePhase::InProgress) }),
    );
    docs.push(Document {
        path: "/status.atom".into(),
        content_type: ATOM,
        body: cx.atom().into_bytes(),
    });
    docs.push(Document {
        path: "/status.rss".into(),
        content_type: RSS,
        body: cx.rss().into_bytes(),
    });
    Ok(docs)
}
