-- Early-warning alerts and the hourly rollups that feed charts and detection.

-- When an item became visible to kizashi: first seen for crawled items, the publication time
-- for imports (history loaded after the fact). Detection never counts an item before it.
ALTER TABLE items ADD COLUMN visible_at BIGINT;
UPDATE items SET visible_at = first_seen_at;
CREATE INDEX items_visible ON items (visible_at);

-- Hourly counts per (hour, service, category, kind, sentiment label), kept in the same
-- transaction as every item write. service '*' counts items (all services); category ''
-- counts the service's mentions whatever their categories (an item with two categories
-- adds one to each category row and one to the '' row). hour is the epoch-ms hour start.
CREATE TABLE rollups (
    hour      BIGINT NOT NULL,
    service   TEXT NOT NULL,
    category  TEXT NOT NULL,
    kind      TEXT NOT NULL,
    label     TEXT NOT NULL,
    n         BIGINT NOT NULL,
    score_sum DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (service, category, hour, kind, label)
);

INSERT INTO rollups (hour, service, category, kind, label, n, score_sum)
SELECT hour, service, category, kind, label, COUNT(*), SUM(score) FROM (
    SELECT (i.published_at / 3600000) * 3600000 AS hour, s.service AS service, '' AS category,
           i.kind AS kind, s.label AS label, s.score AS score
    FROM items i JOIN item_services s ON s.item_id = i.id
    UNION ALL
    SELECT (i.published_at / 3600000) * 3600000, s.service, c.category, i.kind, s.label, s.score
    FROM items i JOIN item_services s ON s.item_id = i.id
         JOIN item_categories c ON c.item_id = i.id
    UNION ALL
    SELECT (i.published_at / 3600000) * 3600000, '*', '', i.kind, i.sentiment_label,
           i.sentiment_score
    FROM items i
    UNION ALL
    SELECT (i.published_at / 3600000) * 3600000, '*', c.category, i.kind, i.sentiment_label,
           i.sentiment_score
    FROM items i JOIN item_categories c ON c.item_id = i.id
) t GROUP BY hour, service, category, kind, label;

-- One row per incident: detection groups hot hours of a service within the cooldown.
CREATE TABLE alerts (
    id           BIGSERIAL PRIMARY KEY,
    service      TEXT NOT NULL,
    -- NULL: the service's volume as a whole
    category     TEXT,
    -- 'volume' or 'negative_share'
    metric       TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    detected_at  BIGINT NOT NULL,
    -- the last hour that was still hot; the alert resolves after a quiet period
    last_hot_at  BIGINT NOT NULL,
    -- the last hour any category was hot (NULL: only the service as a whole so far)
    last_category_hot_at BIGINT,
    observed     DOUBLE PRECISION NOT NULL,
    expected     DOUBLE PRECISION NOT NULL,
    score        DOUBLE PRECISION NOT NULL,
    -- open / acknowledged / resolved
    state        TEXT NOT NULL,
    -- ids of example items, comma-separated
    examples     TEXT NOT NULL DEFAULT '',
    updated_at   BIGINT NOT NULL,
    state_by     TEXT,
    state_at     BIGINT
);
CREATE INDEX alerts_detected ON alerts (detected_at);
CREATE INDEX alerts_state ON alerts (state, service);
