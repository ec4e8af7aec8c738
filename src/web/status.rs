//! Status page over HTTP: the public documents served from the pre-rendered set (no database
//! read on this path, never a cookie), and the operator API that changes the status.
use super::auth::audit;
use super::error::WebError;
use super::State;
use crate::domain::status::{ComponentStatus, Impact, IncidentStatus};
use crate::domain::Slug;
use crate::status::Encoding;
use crate::store::{ComponentInput, IncidentChange, MaintenanceInput, NewIncident};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use std::collections::BTreeMap;

/// True when an `If-None-Match` value names `etag` (or is `*`). Weak comparison, as RFC 9110
/// asks for If-None-Match: a `W/` prefix is ignored.
fn none_match(value: &str, etag: &str) -> bool {
    value
        .split(',')
        .map(|v| v.trim().trim_start_matches("W/"))
        .any(|v| v == "*" || v == etag)
}

/// Serves any public status document by its path.
pub async fn public(req: HttpRequest, state: State) -> Result<HttpResponse, WebError> {
    respond(&req, &state).await
}

/// The answer for a public status document; also called by `limits::edge` before routing for
/// the fixed paths, so the hottest pages skip the route table and the extractors.
pub(super) async fn respond(
    req: &HttpRequest,
    state: &super::AppState,
) -> Result<HttpResponse, WebError> {
    let rendered = state.status.serve(&state.store, state.clock.now()).await?;
    let page = rendered.get(req.path()).ok_or(WebError::NotFound)?;
    let enc = Encoding::negotiate(
        req.headers()
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    let etag = page.etag_value(enc);
    let matched = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| none_match(v, etag.to_str().unwrap_or_default()));
    let mut resp = if matched {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    // Header values prepared with the bytes: nothing is parsed or copied per request.
    resp.insert_header((header::ETAG, etag.clone()))
        .insert_header((header::VARY, HeaderValue::from_static("Accept-Encoding")))
        .insert_header((header::CACHE_CONTROL, state.status.cache_control.clone()));
    if matched {
        return Ok(resp.finish());
    }
    resp.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static(page.content_type),
    ));
    if enc != Encoding::Identity {
        resp.insert_header((
            header::CONTENT_ENCODING,
            HeaderValue::from_static(enc.token()),
        ));
    }
    Ok(resp.body(page.body(enc).clone()))
}

fn bad(field: &str) -> impl Fn(String) -> WebError + '_ {
    move |e| WebError::BadRequest(format!("{field}: {e}"))
}

fn parse_components(
    m: Option<BTreeMap<String, String>>,
) -> Result<Option<Vec<(String, ComponentStatus)>>, WebError> {
    m.map(|m| {
        m.into_iter()
            .map(|(id, s)| {
                let id = Slug::parse(&id).map_err(bad("components"))?;
                let s = ComponentStatus::parse(&s).map_err(bad("components"))?;
                Ok((id.to_string(), s))
            })
            .collect()
    })
    .transpose()
}

/// Queues the incident, in its Statuspage shape from the freshly rendered JSON, for every
/// webhook receiver. A failure to queue is logged; the change itself has been committed.
pub(super) async fn incident_event(state: &State, id: i64, event: &str) {
    if !state.notifier.enabled() {
        return;
    }
    let rendered = state.status.current();
    let incident = rendered
        .get("/api/v2/incidents.json")
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(p.body(Encoding::Identity)).ok())
        .and_then(|v| {
            v["incidents"]
                .as_array()?
                .iter()
                .find(|i| i["id"].as_str() == Some(id.to_string().as_str()))
                .cloned()
        })
        .unwrap_or_else(|| serde_json::json!({ "id": id.to_string() }));
    let payload = serde_json::json!({
        "event": event,
        "page": { "id": "kizashi", "name": state.settings.status.name, "url": state.settings.status.public_url },
        "incident": incident,
    });
    if let Err(e) = state
        .notifier
        .enqueue(
            &state.store,
            crate::notify::Topic::Incident,
            event,
            &payload,
            &format!(
                "{} — {}: {}",
                state.settings.status.name,
                event,
                payload["incident"]["name"].as_str().unwrap_or("")
            ),
            state.clock.now(),
        )
        .await
    {
        tracing::error!(error = %e, incident = id, "webhook could not be queued");
    }
}

async fn changed(state: &State) -> Result<(), WebError> {
    state
        .status
        .refresh(&state.store, state.clock.now(), false)
        .await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentBody {
    name: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    body: Option<String>,
    /// Component id → its status during the incident.
    #[serde(default)]
    components: Option<BTreeMap<String, String>>,
    #[serde(default)]
    impact: Option<String>,
}

pub async fn create_incident(
    state: State,
    req: HttpRequest,
    b: web::Json<IncidentBody>,
) -> Result<HttpResponse, WebError> {
    let b = b.into_inner();
    let input = NewIncident {
        name: b.name,
        status: b
            .status
            .as_deref()
            .map(IncidentStatus::parse)
            .transpose()
            .map_err(bad("status"))?
            .unwrap_or(IncidentStatus::Investigating),
        body: b.body.unwrap_or_default(),
        components: parse_components(b.components)?.unwrap_or_default(),
        impact: b
            .impact
            .as_deref()
            .map(Impact::parse)
            .transpose()
            .map_err(bad("impact"))?,
    };
    let id = state
        .store
        .create_incident(&input, state.clock.now())
        .await?;
    changed(&state).await?;
    let after = Some(format!("{input:?}"));
    audit(
        &state,
        &req,
        "incident_create",
        &format!("incident:{id}"),
        None,
        after,
    )
    .await;
    incident_event(&state, id, "incident.created").await;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/status/incidents/{id}")))
        .json(
            serde_json::json!({ "id": id.to_string(), "url": format!("/status/incidents/{id}") }),
        ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    postmortem: Option<String>,
    #[serde(default)]
    impact: Option<String>,
    #[serde(default)]
    components: Option<BTreeMap<String, String>>,
}

async fn apply_change(
    state: &State,
    req: &HttpRequest,
    id: i64,
    b: IncidentPatch,
) -> Result<(), WebError> {
    let change = IncidentChange {
        status: b
            .status
            .as_deref()
            .map(IncidentStatus::parse)
            .transpose()
            .map_err(bad("status"))?,
        body: b.body,
        name: b.name,
        postmortem: b.postmortem,
        impact: b
            .impact
            .as_deref()
            .map(Impact::parse)
            .transpose()
            .map_err(bad("impact"))?,
        components: parse_components(b.components)?,
    };
    state
        .store
        .change_incident(id, &change, state.clock.now())
        .await?;
    changed(state).await?;
    let after = Some(format!("{change:?}"));
    audit(
        state,
        req,
        "incident_update",
        &format!("incident:{id}"),
        None,
        after,
    )
    .await;
    incident_event(state, id, "incident.updated").await;
    Ok(())
}

pub async fn patch_incident(
    state: State,
    req: HttpRequest,
    id: web::Path<i64>,
    b: web::Json<IncidentPatch>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    apply_change(&state, &req, id, b.into_inner()).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "id": id.to_string() })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    status: String,
    body: String,
    #[serde(default)]
    components: Option<BTreeMap<String, String>>,
}

pub async fn add_update(
    state: State,
    req: HttpRequest,
    id: web::Path<i64>,
    b: web::Json<UpdateBody>,
) -> Result<HttpResponse, WebError> {
    let b = b.into_inner();
    let patch = IncidentPatch {
        name: None,
        status: Some(b.status),
        body: Some(b.body),
        postmortem: None,
        impact: None,
        components: b.components,
    };
    let id = id.into_inner();
    apply_change(&state, &req, id, patch).await?;
    Ok(HttpResponse::Created().json(serde_json::json!({ "incident_id": id.to_string() })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    position: Option<i64>,
    #[serde(default)]
    status: Option<String>,
}

pub async fn put_component(
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
    b: web::Json<ComponentBody>,
) -> Result<HttpResponse, WebError> {
    let id = Slug::parse(&id).map_err(bad("component id"))?;
    let b = b.into_inner();
    let input = ComponentInput {
        id: id.to_string(),
        name: b.name,
        description: b.description,
        group: b.group,
        position: b.position,
        status: b
            .status
            .as_deref()
            .map(ComponentStatus::parse)
            .transpose()
            .map_err(bad("status"))?,
    };
    let before = state
        .store
        .components()
        .await?
        .into_iter()
        .find(|c| c.id == input.id)
        .map(|c| format!("{} {} group={:?}", c.name, c.status.as_str(), c.group));
    let c = state.store.put_component(&input, state.clock.now()).await?;
    changed(&state).await?;
    let after = Some(format!(
        "{} {} group={:?}",
        c.name,
        c.status.as_str(),
        c.group
    ));
    audit(
        &state,
        &req,
        "component_put",
        &format!("component:{}", c.id),
        before,
        after,
    )
    .await;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "id": c.id, "name": c.name, "status": c.status.as_str(), "group": c.group,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceBody {
    name: String,
    #[serde(default)]
    body: String,
    starts_at: String,
    ends_at: String,
    #[serde(default)]
    components: Vec<String>,
}

pub async fn create_maintenance(
    state: State,
    req: HttpRequest,
    b: web::Json<MaintenanceBody>,
) -> Result<HttpResponse, WebError> {
    let b = b.into_inner();
    let time = |name: &str, v: &str| {
        crate::aggregate::parse_time(v).map_err(|e| WebError::BadRequest(format!("{name}: {e}")))
    };
    let input = MaintenanceInput {
        name: b.name,
        body: b.body,
        starts_at: time("starts_at", &b.starts_at)?,
        ends_at: time("ends_at", &b.ends_at)?,
        components: b
            .components
            .iter()
            .map(|c| Slug::parse(c).map(|s| s.to_string()))
            .collect::<Result<_, _>>()
            .map_err(bad("components"))?,
    };
    let id = state
        .store
        .create_maintenance(&input, state.clock.now())
        .await?;
    changed(&state).await?;
    let after = Some(format!("{input:?}"));
    audit(
        &state,
        &req,
        "maintenance_create",
        &format!("maintenance:{id}"),
        None,
        after,
    )
    .await;
    Ok(HttpResponse::Created().json(serde_json::json!({ "id": format!("m{id}") })))
}

pub async fn complete_maintenance(
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let id: i64 = id
        .trim_start_matches('m')
        .parse()
        .map_err(|_| WebError::BadRequest("maintenance id: like m12".into()))?;
    state
        .store
        .complete_maintenance(id, state.clock.now())
        .await?;
    changed(&state).await?;
    audit(
        &state,
        &req,
        "maintenance_complete",
        &format!("maintenance:{id}"),
        None,
        None,
    )
    .await;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "id": format!("m{id}") })))
}

#[cfg(test)]
mod tests {
    use super::none_match;

    #[test]
    fn if_none_match_lists_and_star() {
        assert!(none_match("\"a\"", "\"a\""));
        assert!(none_match("\"x\", \"a\"", "\"a\""));
        assert!(none_match("W/\"a\"", "\"a\""));
        assert!(none_match("*", "\"a\""));
        assert!(!none_match("\"a-gz\"", "\"a\""));
    }
}
