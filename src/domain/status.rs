//! Status-page types: component states, incident stages, maintenance phases. No IO; parsing
//! happens here so the store and the web layer only ever hold valid values.
use serde::{Deserialize, Serialize};

/// A component's state, named as Atlassian Statuspage names it (the JSON API uses these).
/// The order is severity, so `max` picks the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentStatus {
    Operational,
    UnderMaintenance,
    DegradedPerformance,
    PartialOutage,
    MajorOutage,
}

impl ComponentStatus {
    pub const ALL: [ComponentStatus; 5] = [
        ComponentStatus::Operational,
        ComponentStatus::DegradedPerformance,
        ComponentStatus::PartialOutage,
        ComponentStatus::MajorOutage,
        ComponentStatus::UnderMaintenance,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "operational",
            ComponentStatus::DegradedPerformance => "degraded_performance",
            ComponentStatus::PartialOutage => "partial_outage",
            ComponentStatus::MajorOutage => "major_outage",
            ComponentStatus::UnderMaintenance => "under_maintenance",
        }
    }
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a component status (operational, degraded_performance, \
                 partial_outage, major_outage, under_maintenance)"
                )
            })
    }
    pub fn ja(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "正常",
            ComponentStatus::DegradedPerformance => "パフォーマンス低下",
            ComponentStatus::PartialOutage => "一部障害",
            ComponentStatus::MajorOutage => "重大な障害",
            ComponentStatus::UnderMaintenance => "メンテナンス中",
        }
    }
    pub fn en(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "Operational",
            ComponentStatus::DegradedPerformance => "Degraded performance",
            ComponentStatus::PartialOutage => "Partial outage",
            ComponentStatus::MajorOutage => "Major outage",
            ComponentStatus::UnderMaintenance => "Under maintenance",
        }
    }
    /// The overall indicator this state implies (Statuspage's none/minor/major/critical).
    pub fn impact(self) -> Impact {
        match self {
            ComponentStatus::Operational => Impact::None,
            ComponentStatus::UnderMaintenance => Impact::Maintenance,
            ComponentStatus::DegradedPerformance => Impact::Minor,
            ComponentStatus::PartialOutage => Impact::Major,
            ComponentStatus::MajorOutage => Impact::Critical,
        }
    }
}

/// Overall severity: Statuspage's `indicator` and an incident's `impact`. Ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Impact {
    None,
    Maintenance,
    Minor,
    Major,
    Critical,
}

impl Impact {
    pub fn as_str(self) -> &'static str {
        match self {
            Impact::None => "none",
            Impact::Maintenance => "maintenance",
            Impact::Minor => "minor",
            Impact::Major => "major",
            Impact::Critical => "critical",
        }
    }
    pub fn parse(s: &str) -> Result<Self, String> {
        [
            Impact::None,
            Impact::Maintenance,
            Impact::Minor,
            Impact::Major,
            Impact::Critical,
        ]
        .into_iter()
        .find(|i| i.as_str() == s)
        .ok_or_else(|| format!("{s:?} is not an impact (none, minor, major, critical)"))
    }
}

/// An incident's stage. Japanese: 経過観察 for monitoring (監視中 reads as system monitoring).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "investigating",
            IncidentStatus::Identified => "identified",
            IncidentStatus::Monitoring => "monitoring",
            IncidentStatus::Resolved => "resolved",
        }
    }
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "investigating" => Ok(Self::Investigating),
            "identified" => Ok(Self::Identified),
            "monitoring" => Ok(Self::Monitoring),
            "resolved" => Ok(Self::Resolved),
            other => Err(format!(
                "{other:?} is not an incident status (investigating, identified, monitoring, resolved)"
            )),
        }
    }
    pub fn ja(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "調査中",
            IncidentStatus::Identified => "原因特定",
            IncidentStatus::Monitoring => "経過観察",
            IncidentStatus::Resolved => "解決済み",
        }
    }
    pub fn en(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "Investigating",
            IncidentStatus::Identified => "Identified",
            IncidentStatus::Monitoring => "Monitoring",
            IncidentStatus::Resolved => "Resolved",
        }
    }
}

/// A maintenance window's phase, computed from the clock: scheduled → in progress → completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaintenancePhase {
    Scheduled,
    InProgress,
    Completed,
}

impl MaintenancePhase {
    /// The phase at `now` (ms) of a window [starts_at, ends_at), ended early at `completed_at`.
    pub fn at(now: i64, starts_at: i64, ends_at: i64, completed_at: Option<i64>) -> Self {
        if now >= ends_at || completed_at.is_some_and(|c| now >= c) {
            MaintenancePhase::Completed
        } else if now >= starts_at {
            MaintenancePhase::InProgress
        } else {
            MaintenancePhase::Scheduled
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            MaintenancePhase::Scheduled => "scheduled",
            MaintenancePhase::InProgress => "in_progress",
            MaintenancePhase::Completed => "completed",
        }
    }
    pub fn ja(self) -> &'static str {
        match self {
            MaintenancePhase::Scheduled => "予定",
            MaintenancePhase::InProgress => "実施中",
            MaintenancePhase::Completed => "完了",
        }
    }
    pub fn en(self) -> &'static str {
        match self {
            MaintenancePhase::Scheduled => "Scheduled",
            MaintenancePhase::InProgress => "In progress",
            MaintenancePhase::Completed => "Completed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Component {
    pub id: String,
    pub name: String,
    pub description: String,
    pub group: Option<String>,
    pub group_id: Option<i64>,
    pub group_position: i64,
    pub position: i64,
    pub status: ComponentStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct IncidentUpdate {
    pub id: i64,
    pub status: IncidentStatus,
    /// Markdown, rendered through the sanitizer when shown.
    pub body: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Incident {
    pub id: i64,
    pub name: String,
    pub status: IncidentStatus,
    pub impact: Impact,
    pub postmortem: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub monitoring_at: Option<i64>,
    pub resolved_at: Option<i64>,
    /// Newest first.
    pub updates: Vec<IncidentUpdate>,
    /// (component id, impact on it).
    pub components: Vec<(String, ComponentStatus)>,
}

#[derive(Debug, Clone)]
pub struct Maintenance {
    pub id: i64,
    pub name: String,
    pub body: String,
    pub starts_at: i64,
    pub ends_at: i64,
    pub completed_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub components: Vec<String>,
}

impl Maintenance {
    pub fn phase(&self, now: i64) -> MaintenancePhase {
        MaintenancePhase::at(now, self.starts_at, self.ends_at, self.completed_at)
    }
}

/// One recorded change of a component's status.
#[derive(Debug, Clone, Copy)]
pub struct ComponentEvent {
    pub status: ComponentStatus,
    pub at: i64,
}

/// Everything the public pages show, read in one go.
#[derive(Debug, Clone, Default)]
pub struct StatusSnapshot {
    pub version: i64,
    pub components: Vec<Component>,
    /// Newest first.
    pub incidents: Vec<Incident>,
    pub maintenances: Vec<Maintenance>,
    /// Per component id, oldest first.
    pub events: std::collections::HashMap<String, Vec<ComponentEvent>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintenance_phase_follows_the_clock() {
        let rows = [
            (99, None, MaintenancePhase::Scheduled),
            (100, None, MaintenancePhase::InProgress),
            (199, None, MaintenancePhase::InProgress),
            (200, None, MaintenancePhase::Completed),
            (150, Some(140), MaintenancePhase::Completed),
            (130, Some(140), MaintenancePhase::InProgress),
        ];
        for (now, done, want) in rows {
            assert_eq!(MaintenancePhase::at(now, 100, 200, done), want, "at {now}");
        }
    }

    #[test]
    fn worst_status_is_the_max() {
        use ComponentStatus::*;
        assert_eq!(
            [Operational, MajorOutage, DegradedPerformance].iter().max(),
            Some(&MajorOutage)
        );
        assert!(UnderMaintenance < DegradedPerformance);
    }
}
