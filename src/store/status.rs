//! Status-page tables. Every write bumps `status_version` in the same transaction, so any node
//! that compares the version it rendered with the stored one knows its public bytes are stale.
use super::{ms, Result, Store, StoreError};
use crate::domain::status::{
    Component, ComponentEvent, ComponentStatus, Impact, Incident, IncidentStatus, IncidentUpdate,
    Maintenance, StatusSnapshot,
};
use chrono::{DateTime, Utc};
use sqlx::{Any, Row, Transaction};
use std::collections::HashMap;

type Tx = Transaction<'static, Any>;

/// A component as created or replaced by `PUT /api/v1/components/{id}`.
#[derive(Debug, Clone)]
pub struct ComponentInput {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// `Some("")` takes the component out of its group.
    pub group: Option<String>,
    pub position: Option<i64>,
    pub status: Option<ComponentStatus>,
}

#[derive(Debug, Clone)]
pub struct NewIncident {
    pub name: String,
    pub status: IncidentStatus,
    pub body: String,
    /// Affected components and the impact on each; they take that status.
    pub components: Vec<(String, ComponentStatus)>,
    pub impact: Option<Impact>,
}

/// A new entry on an incident's timeline, optionally changing the affected components.
#[derive(Debug, Clone)]
pub struct IncidentChange {
    pub status: Option<IncidentStatus>,
    pub body: Option<String>,
    pub name: Option<String>,
    pub postmortem: Option<String>,
    pub impact: Option<Impact>,
    pub components: Option<Vec<(String, ComponentStatus)>>,
}

#[derive(Debug, Clone)]
pub struct MaintenanceInput {
    pub name: String,
    pub body: String,
    pub starts_at: i64,
    pub ends_at: i64,
    pub components: Vec<String>,
}

async fn bump(tx: &mut Tx) -> Result<()> {
    sqlx::query("UPDATE status_version SET version = version + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn component_status(tx: &mut Tx, id: &str) -> Result<Option<ComponentStatus>> {
    let row = sqlx::query("SELECT status FROM status_components WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| ComponentStatus::parse(r.get::<String, _>(0).as_str()).map_err(StoreError::Corrupt))
        .transpose()
}

/// Sets a component's status, recording an event only when it changes.
async fn set_status(tx: &mut Tx, id: &str, status: ComponentStatus, now: i64) -> Result<()> {
    let old = component_status(tx, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("component {id:?}")))?;
    if old == status {
        return Ok(());
    }
    sqlx::query("UPDATE status_components SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO status_component_events (component_id, status, at) VALUES ($1, $2, $3)",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn set_incident_components(
    tx: &mut Tx,
    incident: i64,
    components: &[(String, ComponentStatus)],
    now: i64,
) -> Result<()> {
    for (id, impact) in components {
        if component_status(tx, id).await?.is_none() {
            return Err(StoreError::NotFound(format!("component {id:?}")));
        }
        sqlx::query(
            "INSERT INTO status_incident_components (incident_id, component_id, impact)
             VALUES ($1, $2, $3)
             ON CONFLICT (incident_id, component_id) DO UPDATE SET impact = excluded.impact",
        )
        .bind(incident)
        .bind(id)
        .bind(impact.as_str())
        .execute(&mut **tx)
        .await?;
        set_status(tx, id, *impact, now).await?;
    }
    Ok(())
}

/// After an incident is resolved, each component it affected returns to the worst impact of
/// the incidents still open on it, or to operational.
async fn release_components(tx: &mut Tx, incident: i64, now: i64) -> Result<()> {
    let ids: Vec<String> =
        sqlx::query("SELECT component_id FROM status_incident_components WHERE incident_id = $1")
            .bind(incident)
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
    for id in ids {
        let open: Vec<String> = sqlx::query(
            "SELECT c.impact FROM status_incident_components c
             JOIN status_incidents i ON i.id = c.incident_id
             WHERE c.component_id = $1 AND i.status <> 'resolved' AND i.id <> $2",
        )
        .bind(&id)
        .bind(incident)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
        let worst = open
            .iter()
            .filter_map(|s| ComponentStatus::parse(s).ok())
            .max()
            .unwrap_or(ComponentStatus::Operational);
        set_status(tx, &id, worst, now).await?;
    }
    Ok(())
}

fn derived_impact(components: &[(String, ComponentStatus)]) -> Impact {
    components
        .iter()
        .map(|(_, s)| s.impact())
        .filter(|i| *i != Impact::Maintenance)
        .max()
        .unwrap_or(Impact::None)
}

fn parse<T>(s: String, f: fn(&str) -> std::result::Result<T, String>) -> Result<T> {
    f(&s).map_err(StoreError::Corrupt)
}

/// One pending webhook delivery.
#[derive(Debug, Clone)]
pub struct WebhookDelivery {
    pub id: i64,
    pub url: String,
    pub event: String,
    pub payload: String,
    pub attempts: i64,
}

impl Store {
    /// Queues one delivery per receiver URL.
    pub async fn enqueue_webhooks(
        &self,
        urls: &[String],
        event: &str,
        payload: &str,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for url in urls {
            sqlx::query(
                "INSERT INTO webhook_deliveries (url, event, payload, state, created_at, next_attempt_at)
                 VALUES ($1, $2, $3, 'pending', $4, $4)",
            )
            .bind(url)
            .bind(event)
            .bind(payload)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Pending deliveries whose time has come, oldest first.
    pub async fn due_webhooks(&self, now: i64, limit: i64) -> Result<Vec<WebhookDelivery>> {
        Ok(sqlx::query(
            "SELECT id, url, event, payload, attempts FROM webhook_deliveries
             WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| WebhookDelivery {
            id: r.get(0),
            url: r.get(1),
            event: r.get(2),
            payload: r.get(3),
            attempts: r.get(4),
        })
        .collect())
    }

    /// Records an attempt: delivered, retry at `retry_at`, or (no retry) failed for good.
    pub async fn webhook_attempted(
        &self,
        id: i64,
        code: Option<u16>,
        error: Option<&str>,
        delivered: bool,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<()> {
        let state = match (delivered, retry_at) {
            (true, _) => "delivered",
            (false, Some(_)) => "pending",
            (false, None) => "failed",
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET state = $1, attempts = attempts + 1,
                    last_status_code = $2, last_error = $3,
                    next_attempt_at = COALESCE($4, next_attempt_at),
                    delivered_at = CASE WHEN $1 = 'delivered' THEN $5 ELSE NULL END
             WHERE id = $6",
        )
        .bind(state)
        .bind(code.map(i64::from))
        .bind(error)
        .bind(retry_at)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The delivery log, newest first: (event, url, state, attempts, last status code).
    pub async fn webhook_log(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, String, String, i64, Option<i64>)>> {
        Ok(sqlx::query(
            "SELECT event, url, state, attempts, last_status_code FROM webhook_deliveries
             ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect())
    }

    /// The version of the status data; bumped by every status write.
    pub async fn status_version(&self) -> Result<i64> {
        Ok(
            sqlx::query("SELECT version FROM status_version WHERE id = 1")
                .fetch_one(&self.pool)
                .await?
                .get(0),
        )
    }

    /// Creates the component or changes the given fields.
    pub async fn put_component(&self, c: &ComponentInput, now: DateTime<Utc>) -> Result<Component> {
        let now = ms(now);
        let mut tx = self.write_tx().await?;
        let group_id: Option<Option<i64>> = match c.group.as_deref().map(str::trim) {
            None => None,
            Some("") => Some(None),
            Some(name) => {
                sqlx::query(
                    "INSERT INTO status_groups (name, position, created_at)
                     VALUES ($1, (SELECT COALESCE(MAX(position), 0) + 1 FROM status_groups), $2)
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                Some(Some(
                    sqlx::query("SELECT id FROM status_groups WHERE name = $1")
                        .bind(name)
                        .fetch_one(&mut *tx)
                        .await?
                        .get(0),
                ))
            }
        };
        let exists = component_status(&mut tx, &c.id).await?.is_some();
        if !exists {
            let name = c
                .name
                .clone()
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| StoreError::Invalid("name: a new component needs a name".into()))?;
            let status = c.status.unwrap_or(ComponentStatus::Operational);
            sqlx::query(
                "INSERT INTO status_components
                   (id, name, description, group_id, position, status, created_at, updated_at)
                 VALUES ($1, $2, $3, $4,
                   COALESCE($5, (SELECT COALESCE(MAX(position), 0) + 1 FROM status_components)),
                   $6, $7, $7)",
            )
            .bind(&c.id)
            .bind(name.trim())
            .bind(c.description.clone().unwrap_or_default())
            .bind(group_id.flatten())
            .bind(c.position)
            .bind(status.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO status_component_events (component_id, status, at) VALUES ($1, $2, $3)",
            )
            .bind(&c.id)
            .bind(status.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "UPDATE status_components SET
                   name = COALESCE($1, name),
                   description = COALESCE($2, description),
                   group_id = CASE WHEN $3 THEN $4 ELSE group_id END,
                   position = COALESCE($5, position),
                   updated_at = $6
                 WHERE id = $7",
            )
            .bind(c.name.as_deref().map(str::trim).filter(|n| !n.is_empty()))
            .bind(c.description.as_deref())
            .bind(group_id.is_some())
            .bind(group_id.flatten())
            .bind(c.position)
            .bind(now)
            .bind(&c.id)
            .execute(&mut *tx)
            .await?;
            if let Some(status) = c.status {
                set_status(&mut tx, &c.id, status, now).await?;
            }
        }
        bump(&mut tx).await?;
        tx.commit().await?;
        self.components()
            .await?
            .into_iter()
            .find(|x| x.id == c.id)
            .ok_or_else(|| StoreError::NotFound(format!("component {:?}", c.id)))
    }

    pub async fn create_incident(&self, n: &NewIncident, now: DateTime<Utc>) -> Result<i64> {
        let now = ms(now);
        if n.name.trim().is_empty() {
            return Err(StoreError::Invalid("name: must not be empty".into()));
        }
        let mut tx = self.write_tx().await?;
        let impact = n.impact.unwrap_or_else(|| derived_impact(&n.components));
        let id: i64 = sqlx::query(
            "INSERT INTO status_incidents (name, status, impact, created_at, updated_at,
                                           monitoring_at, resolved_at)
             VALUES ($1, $2, $3, $4, $4, $5, $6) RETURNING id",
        )
        .bind(n.name.trim())
        .bind(n.status.as_str())
        .bind(impact.as_str())
        .bind(now)
        .bind((n.status == IncidentStatus::Monitoring).then_some(now))
        .bind((n.status == IncidentStatus::Resolved).then_some(now))
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        sqlx::query(
            "INSERT INTO status_incident_updates (incident_id, status, body, created_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(n.status.as_str())
        .bind(&n.body)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        set_incident_components(&mut tx, id, &n.components, now).await?;
        if n.status == IncidentStatus::Resolved {
            release_components(&mut tx, id, now).await?;
        }
        bump(&mut tx).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Changes an incident; a status or body adds an entry to its timeline.
    pub async fn change_incident(
        &self,
        id: i64,
        c: &IncidentChange,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let now = ms(now);
        let mut tx = self.write_tx().await?;
        let row = sqlx::query("SELECT status FROM status_incidents WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("incident {id}")))?;
        let old = parse(row.get(0), IncidentStatus::parse)?;
        let status = c.status.unwrap_or(old);
        if let Some(components) = &c.components {
            set_incident_components(&mut tx, id, components, now).await?;
            let all: Vec<(String, ComponentStatus)> = sqlx::query(
                "SELECT component_id, impact FROM status_incident_components WHERE incident_id = $1",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .filter_map(|r| {
                Some((
                    r.get(0),
                    ComponentStatus::parse(r.get::<String, _>(1).as_str()).ok()?,
                ))
            })
            .collect();
            if c.impact.is_none() {
                sqlx::query("UPDATE status_incidents SET impact = $1 WHERE id = $2")
                    .bind(derived_impact(&all).as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query(
            "UPDATE status_incidents SET
               name = COALESCE($1, name),
               postmortem = COALESCE($2, postmortem),
               impact = COALESCE($3, impact),
               status = $4,
               updated_at = $5,
               monitoring_at = CASE WHEN $4 = 'monitoring' AND monitoring_at IS NULL THEN $5
                                    ELSE monitoring_at END,
               resolved_at = CASE WHEN $4 = 'resolved' THEN COALESCE(resolved_at, $5)
                                  ELSE NULL END
             WHERE id = $6",
        )
        .bind(c.name.as_deref().map(str::trim).filter(|n| !n.is_empty()))
        .bind(c.postmortem.as_deref())
        .bind(c.impact.map(Impact::as_str))
        .bind(status.as_str())
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if c.status.is_some() || c.body.is_some() {
            sqlx::query(
                "INSERT INTO status_incident_updates (incident_id, status, body, created_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(status.as_str())
            .bind(c.body.clone().unwrap_or_default())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        if status == IncidentStatus::Resolved && old != IncidentStatus::Resolved {
            release_components(&mut tx, id, now).await?;
        }
        bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn create_maintenance(
        &self,
        m: &MaintenanceInput,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        if m.name.trim().is_empty() {
            return Err(StoreError::Invalid("name: must not be empty".into()));
        }
        if m.starts_at >= m.ends_at {
            return Err(StoreError::Invalid(
                "starts_at must be before ends_at".into(),
            ));
        }
        let now = ms(now);
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO status_maintenances (name, body, starts_at, ends_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
        )
        .bind(m.name.trim())
        .bind(&m.body)
        .bind(m.starts_at)
        .bind(m.ends_at)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        for c in &m.components {
            if component_status(&mut tx, c).await?.is_none() {
                return Err(StoreError::NotFound(format!("component {c:?}")));
            }
            sqlx::query(
                "INSERT INTO status_maintenance_components (maintenance_id, component_id)
                 VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(c)
            .execute(&mut *tx)
            .await?;
        }
        bump(&mut tx).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Ends a maintenance window early.
    pub async fn complete_maintenance(&self, id: i64, now: DateTime<Utc>) -> Result<()> {
        let now = ms(now);
        let mut tx = self.write_tx().await?;
        let n = sqlx::query(
            "UPDATE status_maintenances SET completed_at = COALESCE(completed_at, $1), updated_at = $1
             WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("maintenance {id}")));
        }
        bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Incidents overlapping [from, to): (id, name, created_at, resolved_at), oldest first.
    pub async fn incidents_between(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, String, i64, Option<i64>)>> {
        Ok(sqlx::query(
            "SELECT id, name, created_at, resolved_at FROM status_incidents
             WHERE created_at < $2 AND (resolved_at IS NULL OR resolved_at >= $1)
             ORDER BY created_at, id",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
    }

    pub async fn components(&self) -> Result<Vec<Component>> {
        let rows = sqlx::query(
            "SELECT c.id, c.name, c.description, g.name, c.group_id, COALESCE(g.position, 0),
                    c.position, c.status, c.created_at, c.updated_at
             FROM status_components c LEFT JOIN status_groups g ON g.id = c.group_id
             ORDER BY COALESCE(g.position, 0), c.position, c.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Component {
                    id: r.get(0),
                    name: r.get(1),
                    description: r.get(2),
                    group: r.get(3),
                    group_id: r.get(4),
                    group_position: r.get(5),
                    position: r.get(6),
                    status: parse(r.get(7), ComponentStatus::parse)?,
                    created_at: r.get(8),
                    updated_at: r.get(9),
                })
            })
            .collect()
    }

    /// Everything the public status pages show. Events go back to `since` (plus the last
    /// one before it, which gives the state at `since`).
    pub async fn status_snapshot(&self, since: i64) -> Result<StatusSnapshot> {
        // The version is read first: a write that lands meanwhile makes the next check rebuild.
        let version = self.status_version().await?;
        let components = self.components().await?;
        let mut incidents: Vec<Incident> = Vec::new();
        for r in sqlx::query(
            "SELECT id, name, status, impact, postmortem, created_at, updated_at, monitoring_at,
                    resolved_at
             FROM status_incidents ORDER BY created_at DESC, id DESC",
        )
        .fetch_all(&self.pool)
        .await?
        {
            incidents.push(Incident {
                id: r.get(0),
                name: r.get(1),
                status: parse(r.get(2), IncidentStatus::parse)?,
                impact: parse(r.get(3), Impact::parse)?,
                postmortem: r.get(4),
                created_at: r.get(5),
                updated_at: r.get(6),
                monitoring_at: r.get(7),
                resolved_at: r.get(8),
                updates: Vec::new(),
                components: Vec::new(),
            });
        }
        let by_id: HashMap<i64, usize> = incidents
            .iter()
            .enumerate()
            .map(|(i, x)| (x.id, i))
            .collect();
        for r in sqlx::query(
            "SELECT id, incident_id, status, body, created_at FROM status_incident_updates
             ORDER BY created_at DESC, id DESC",
        )
        .fetch_all(&self.pool)
        .await?
        {
            if let Some(&i) = by_id.get(&r.get::<i64, _>(1)) {
                incidents[i].updates.push(IncidentUpdate {
                    id: r.get(0),
                    status: parse(r.get(2), IncidentStatus::parse)?,
                    body: r.get(3),
                    created_at: r.get(4),
                });
            }
        }
        for r in sqlx::query(
            "SELECT incident_id, component_id, impact FROM status_incident_components
             ORDER BY component_id",
        )
        .fetch_all(&self.pool)
        .await?
        {
            if let Some(&i) = by_id.get(&r.get::<i64, _>(0)) {
                incidents[i]
                    .components
                    .push((r.get(1), parse(r.get(2), ComponentStatus::parse)?));
            }
        }
        let mut maintenances: Vec<Maintenance> = sqlx::query(
            "SELECT id, name, body, starts_at, ends_at, completed_at, created_at, updated_at
             FROM status_maintenances ORDER BY starts_at, id",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| Maintenance {
            id: r.get(0),
            name: r.get(1),
            body: r.get(2),
            starts_at: r.get(3),
            ends_at: r.get(4),
            completed_at: r.get(5),
            created_at: r.get(6),
            updated_at: r.get(7),
            components: Vec::new(),
        })
        .collect();
        let mpos: HashMap<i64, usize> = maintenances
            .iter()
            .enumerate()
            .map(|(i, x)| (x.id, i))
            .collect();
        for r in sqlx::query(
            "SELECT maintenance_id, component_id FROM status_maintenance_components
             ORDER BY component_id",
        )
        .fetch_all(&self.pool)
        .await?
        {
            if let Some(&i) = mpos.get(&r.get::<i64, _>(0)) {
                maintenances[i].components.push(r.get(1));
            }
        }
        let mut events: HashMap<String, Vec<ComponentEvent>> = HashMap::new();
        for r in sqlx::query(
            "SELECT e.component_id, e.status, e.at FROM status_component_events e
             WHERE e.at >= $1 OR e.id = (SELECT MAX(p.id) FROM status_component_events p
                                         WHERE p.component_id = e.component_id AND p.at < $1)
             ORDER BY e.component_id, e.at, e.id",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?
        {
            events.entry(r.get(0)).or_default().push(ComponentEvent {
                status: parse(r.get(1), ComponentStatus::parse)?,
                at: r.get(2),
            });
        }
        Ok(StatusSnapshot {
            version,
            components,
            incidents,
            maintenances,
            events,
        })
    }
}
