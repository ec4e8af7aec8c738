//! Status admin HTML (operators): forms to change components, incidents and maintenance.
//! Every POST checks the form's CSRF token; every change goes to the audit log.
use super::auth::{audit, authed, check_form_csrf};
use super::error::WebError;
use super::State;
use crate::domain::status::{ComponentStatus, IncidentStatus, MaintenancePhase};
use crate::domain::Slug;
use crate::status::render::jst;
use crate::store::{ComponentInput, IncidentChange, MaintenanceInput, NewIncident};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use std::collections::HashMap;

type Form = web::Form<HashMap<String, String>>;

pub struct Choice {
    pub value: &'static str,
    pub label: &'static str,
}

fn component_choices() -> Vec<Choice> {
    ComponentStatus::ALL
        .into_iter()
        .map(|s| Choice {
            value: s.as_str(),
            label: s.ja(),
        })
        .collect()
}

fn incident_choices() -> Vec<Choice> {
    [
        IncidentStatus::Investigating,
        IncidentStatus::Identified,
        IncidentStatus::Monitoring,
        IncidentStatus::Resolved,
    ]
    .into_iter()
    .map(|s| Choice {
        value: s.as_str(),
        label: s.ja(),
    })
    .collect()
}

pub struct ComponentRow {
    pub id: String,
    pub name: String,
    pub group: String,
    pub status: &'static str,
}

pub struct IncidentRow {
    pub id: i64,
    pub name: String,
    pub status: &'static str,
    pub started: String,
}

pub struct MaintenanceRow {
    pub id: i64,
    pub name: String,
    pub phase: &'static str,
    pub window: String,
}

#[derive(Template)]
#[template(path = "admin/status.html")]
struct StatusAdminPage<'a> {
    css: &'a str,
    csrf: &'a str,
    user: &'a str,
    components: Vec<ComponentRow>,
    open: Vec<IncidentRow>,
    maintenances: Vec<MaintenanceRow>,
    component_choices: Vec<Choice>,
    incident_choices: Vec<Choice>,
    /// The webhook delivery log (incidents and alerts), newest first: (event, url, state,
    /// attempts, last HTTP status).
    deliveries: Vec<(String, String, String, i64, Option<i64>)>,
}

pub async fn status_page(state: State, req: HttpRequest) -> Result<HttpResponse, WebError> {
    let a = authed(&req);
    let now = state.clock.now().timestamp_millis();
    let snap = state.store.status_snapshot(now).await?;
    let deliveries = state.store.webhook_log(50).await?;
    let body = StatusAdminPage {
        deliveries,
        css: super::css_name(),
        csrf: a.as_ref().map(|a| a.csrf.as_str()).unwrap_or(""),
        user: a
            .as_ref()
            .map(|a| a.user.name.as_str())
            .unwrap_or("(no accounts)"),
        components: snap
            .components
            .iter()
            .map(|c| ComponentRow {
                id: c.id.clone(),
                name: c.name.clone(),
                group: c.group.clone().unwrap_or_default(),
                status: c.status.as_str(),
            })
            .collect(),
        open: snap
            .incidents
            .iter()
            .filter(|i| i.status != IncidentStatus::Resolved)
            .map(|i| IncidentRow {
                id: i.id,
                name: i.name.clone(),
                status: i.status.ja(),
                started: jst(i.created_at),
            })
            .collect(),
        maintenances: snap
            .maintenances
            .iter()
            .filter(|m| m.phase(now) != MaintenancePhase::Completed)
            .map(|m| MaintenanceRow {
                id: m.id,
                name: m.name.clone(),
                phase: m.phase(now).ja(),
                window: format!("{} – {}", jst(m.starts_at), jst(m.ends_at)),
            })
            .collect(),
        component_choices: component_choices(),
        incident_choices: incident_choices(),
    }
    .render()?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body))
}

fn back() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/admin/status"))
        .finish()
}

fn field<'a>(f: &'a HashMap<String, String>, k: &str) -> &'a str {
    f.get(k).map(|s| s.as_str()).unwrap_or("")
}

/// `impact_<component>` fields: the affected components and their status.
fn impacts(f: &HashMap<String, String>) -> Result<Vec<(String, ComponentStatus)>, WebError> {
    let mut out = Vec::new();
    for (k, v) in f {
        if let Some(id) = k.strip_prefix("impact_") {
            if v.is_empty() {
                continue;
            }
            let s = ComponentStatus::parse(v).map_err(WebError::BadRequest)?;
            out.push((id.to_string(), s));
        }
    }
    out.sort();
    Ok(out)
}

async fn refreshed(state: &State) -> Result<(), WebError> {
    state
        .status
        .refresh(&state.store, state.clock.now(), false)
        .await?;
    Ok(())
}

pub async fn post_incident(
    state: State,
    req: HttpRequest,
    f: Form,
) -> Result<HttpResponse, WebError> {
    check_form_csrf(&req, field(&f, "csrf"))?;
    let n = NewIncident {
        name: field(&f, "name").to_string(),
        status: IncidentStatus::parse(field(&f, "status")).map_err(WebError::BadRequest)?,
        body: field(&f, "body").to_string(),
        components: impacts(&f)?,
        impact: None,
    };
    let id = state.store.create_incident(&n, state.clock.now()).await?;
    refreshed(&state).await?;
    audit(
        &state,
        &req,
        "incident_create",
        &format!("incident:{id}"),
        None,
        Some(format!("{n:?}")),
    )
    .await;
    super::status::incident_event(&state, id, "incident.created").await;
    Ok(back())
}

pub async fn post_update(
    state: State,
    req: HttpRequest,
    id: web::Path<i64>,
    f: Form,
) -> Result<HttpResponse, WebError> {
    check_form_csrf(&req, field(&f, "csrf"))?;
    let id = id.into_inner();
    let c = IncidentChange {
        status: Some(IncidentStatus::parse(field(&f, "status")).map_err(WebError::BadRequest)?),
        body: Some(field(&f, "body").to_string()),
        name: None,
        postmortem: Some(field(&f, "postmortem").to_string()).filter(|p| !p.trim().is_empty()),
        impact: None,
        components: None,
    };
    state
        .store
        .change_incident(id, &c, state.clock.now())
        .await?;
    refreshed(&state).await?;
    audit(
        &state,
        &req,
        "incident_update",
        &format!("incident:{id}"),
        None,
        Some(format!("{c:?}")),
    )
    .await;
    super::status::incident_event(&state, id, "incident.updated").await;
    Ok(back())
}

pub async fn post_component(
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
    f: Form,
) -> Result<HttpResponse, WebError> {
    check_form_csrf(&req, field(&f, "csrf"))?;
    // The "add" form has no id in its action; it posts to /new with an `id` field.
    let raw = if id.as_str() == "new" {
        field(&f, "id")
    } else {
        id.as_str()
    };
    let id = Slug::parse(raw).map_err(WebError::BadRequest)?;
    let before = state
        .store
        .components()
        .await?
        .into_iter()
        .find(|c| c.id == id.as_str())
        .map(|c| format!("{} {} group={:?}", c.name, c.status.as_str(), c.group));
    let nonempty = |k: &str| Some(field(&f, k).to_string()).filter(|v| !v.trim().is_empty());
    let input = ComponentInput {
        id: id.to_string(),
        name: nonempty("name"),
        description: None,
        group: f.get("group").cloned(),
        position: None,
        status: nonempty("status")
            .map(|s| ComponentStatus::parse(&s))
            .transpose()
            .map_err(WebError::BadRequest)?,
    };
    let c = state.store.put_component(&input, state.clock.now()).await?;
    refreshed(&state).await?;
    let after = format!("{} {} group={:?}", c.name, c.status.as_str(), c.group);
    audit(
        &state,
        &req,
        "component_put",
        &format!("component:{id}"),
        before,
        Some(after),
    )
    .await;
    Ok(back())
}

/// `datetime-local` values are read as JST.
fn local_time(name: &str, v: &str) -> Result<i64, WebError> {
    let v = v.trim();
    let with_zone = if v.len() == 16 {
        format!("{v}:00+09:00")
    } else {
        v.to_string()
    };
    crate::aggregate::parse_time(&with_zone)
        .map_err(|e| WebError::BadRequest(format!("{name}: {e}")))
}

pub async fn post_maintenance(
    state: State,
    req: HttpRequest,
    f: Form,
) -> Result<HttpResponse, WebError> {
    check_form_csrf(&req, field(&f, "csrf"))?;
    let mut components: Vec<String> = f
        .iter()
        .filter(|(k, v)| k.starts_with("in_") && v.as_str() == "on")
        .map(|(k, _)| k["in_".len()..].to_string())
        .collect();
    components.sort();
    let m = MaintenanceInput {
        name: field(&f, "name").to_string(),
        body: field(&f, "body").to_string(),
        starts_at: local_time("starts_at", field(&f, "starts_at"))?,
        ends_at: local_time("ends_at", field(&f, "ends_at"))?,
        components,
    };
    let id = state
        .store
        .create_maintenance(&m, state.clock.now())
        .await?;
    refreshed(&state).await?;
    audit(
        &state,
        &req,
        "maintenance_create",
        &format!("maintenance:{id}"),
        None,
        Some(format!("{m:?}")),
    )
    .await;
    Ok(back())
}
