-- Status page: components (in groups), incidents with their timeline, scheduled maintenance,
-- and a version bumped in the same transaction as every change, so every node sees that its
-- pre-rendered public bytes are stale. Times are epoch milliseconds, as in 0001.

CREATE TABLE status_version (
    id      BIGINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO status_version (id, version) VALUES (1, 1);

CREATE TABLE status_groups (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    position   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- `id` is a slug chosen by the operator (PUT /api/v1/components/{id}).
CREATE TABLE status_components (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    group_id    BIGINT REFERENCES status_groups (id),
    position    BIGINT NOT NULL DEFAULT 0,
    status      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Every change of a component's status, appended; the 90-day history bars are computed from it.
CREATE TABLE status_component_events (
    id           BIGSERIAL PRIMARY KEY,
    component_id TEXT NOT NULL REFERENCES status_components (id),
    status       TEXT NOT NULL,
    at           BIGINT NOT NULL
);
CREATE INDEX status_component_events_at ON status_component_events (component_id, at);

CREATE TABLE status_incidents (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,
    impact      TEXT NOT NULL,
    postmortem  TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    monitoring_at BIGINT,
    resolved_at BIGINT
);
CREATE INDEX status_incidents_created ON status_incidents (created_at);

CREATE TABLE status_incident_updates (
    id          BIGSERIAL PRIMARY KEY,
    incident_id BIGINT NOT NULL REFERENCES status_incidents (id),
    status      TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX status_incident_updates_incident ON status_incident_updates (incident_id, created_at);

-- Components an incident affects, with the impact (a component status) it has on each.
CREATE TABLE status_incident_components (
    incident_id  BIGINT NOT NULL REFERENCES status_incidents (id),
    component_id TEXT NOT NULL REFERENCES status_components (id),
    impact       TEXT NOT NULL,
    PRIMARY KEY (incident_id, component_id)
);

-- The phase (scheduled / in progress / completed) is computed from the clock, not stored;
-- `completed_at` records an early end.
CREATE TABLE status_maintenances (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT NOT NULL,
    body         TEXT NOT NULL,
    starts_at    BIGINT NOT NULL,
    ends_at      BIGINT NOT NULL,
    completed_at BIGINT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE status_maintenance_components (
    maintenance_id BIGINT NOT NULL REFERENCES status_maintenances (id),
    component_id   TEXT NOT NULL REFERENCES status_components (id),
    PRIMARY KEY (maintenance_id, component_id)
);

-- Outgoing webhooks on incident changes: one row per (event, receiver), delivered by a worker
-- with retries; the row is the delivery log.
CREATE TABLE webhook_deliveries (
    id               BIGSERIAL PRIMARY KEY,
    url              TEXT NOT NULL,
    event            TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    last_status_code BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    delivered_at     BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
