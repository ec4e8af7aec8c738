-- kizashi schema on PostgreSQL: the mirror of sqlite/0001_init.sql. Every integer is BIGINT
-- (the code reads i64), `INTEGER PRIMARY KEY` is BIGSERIAL; the schema-comparison test
-- (tests/it/store.rs) checks that both engines end with the same tables, columns and keys.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE sources (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    url           TEXT NOT NULL,
    schedule      TEXT NOT NULL,
    item_kind     TEXT NOT NULL,
    enabled       BIGINT NOT NULL DEFAULT 1,
    created_at    BIGINT NOT NULL,
    last_fetch_at BIGINT,
    last_status   TEXT,
    last_error    TEXT,
    etag          TEXT,
    last_modified TEXT,
    new_items     BIGINT NOT NULL DEFAULT 0,
    seen_items    BIGINT NOT NULL DEFAULT 0,
    timezone      TEXT NOT NULL DEFAULT 'Asia/Tokyo',
    query         TEXT,
    -- fetch each new item's page and keep its main text (robots.txt honoured)
    fetch_article BIGINT NOT NULL DEFAULT 0,
    -- items of the last N days missing from the feed are checked; 404/410 deletes them
    verify_deletions_days BIGINT,
    retention_days BIGINT,
    -- consecutive failures and the time before which the source is not fetched again
    failures      BIGINT NOT NULL DEFAULT 0,
    backoff_until BIGINT,
    charset_decision TEXT,
    -- hash of the last 200 body and when it last changed (stale feeds look alive)
    body_hash     TEXT,
    body_changed_at BIGINT
);

CREATE TABLE services (
    slug       TEXT PRIMARY KEY,
    watched    BIGINT NOT NULL DEFAULT 1,
    position   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE items (
    id               BIGSERIAL PRIMARY KEY,
    identity         TEXT NOT NULL UNIQUE,
    source           TEXT NOT NULL,
    guid             TEXT,
    url              TEXT NOT NULL,
    title            TEXT NOT NULL,
    body             TEXT NOT NULL,
    author           TEXT,
    bookmarks        BIGINT,
    -- the source's subjects (dc:subject, RSS/Atom category), one per line
    tags             TEXT NOT NULL DEFAULT '',
    kind             TEXT NOT NULL,
    published_at     BIGINT NOT NULL,
    first_seen_at    BIGINT NOT NULL,
    date_quality     TEXT NOT NULL,
    content_hash     TEXT NOT NULL,
    dup_group        BIGINT,
    -- MinHash signature (16 values, comma-separated) and its 8 LSH band keys: texts with
    -- high Jaccard similarity of token shingles share a band key (near-duplicate candidates)
    minhash          TEXT,
    mh_b0            BIGINT,
    mh_b1            BIGINT,
    mh_b2            BIGINT,
    mh_b3            BIGINT,
    mh_b4            BIGINT,
    mh_b5            BIGINT,
    mh_b6            BIGINT,
    mh_b7            BIGINT,
    sentiment_label  TEXT NOT NULL,
    sentiment_score  DOUBLE PRECISION NOT NULL,
    analysis         TEXT NOT NULL,
    tokens           TEXT NOT NULL,
    analysis_version BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX items_published ON items (published_at);
CREATE INDEX items_source ON items (source, published_at);
CREATE INDEX items_mh_b0 ON items (mh_b0);
CREATE INDEX items_mh_b1 ON items (mh_b1);
CREATE INDEX items_mh_b2 ON items (mh_b2);
CREATE INDEX items_mh_b3 ON items (mh_b3);
CREATE INDEX items_mh_b4 ON items (mh_b4);
CREATE INDEX items_mh_b5 ON items (mh_b5);
CREATE INDEX items_mh_b6 ON items (mh_b6);
CREATE INDEX items_mh_b7 ON items (mh_b7);

-- Sentiment per (item, service): every per-service figure and filter uses this table.
CREATE TABLE item_services (
    item_id BIGINT NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    service TEXT NOT NULL,
    label   TEXT NOT NULL,
    score   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (item_id, service)
);
CREATE INDEX item_services_service ON item_services (service, item_id);

CREATE TABLE item_categories (
    item_id  BIGINT NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    category TEXT NOT NULL,
    PRIMARY KEY (item_id, category)
);

-- Every insert, update and delete of an item appends here in the same transaction; the
-- indexer follows this sequence from the high-water mark committed with the index.
CREATE TABLE changes (
    seq     BIGSERIAL PRIMARY KEY,
    item_id BIGINT NOT NULL,
    at      BIGINT NOT NULL
);

-- Named queries shared within the team; the dashboard shows them as panels.
CREATE TABLE saved_searches (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    query      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
