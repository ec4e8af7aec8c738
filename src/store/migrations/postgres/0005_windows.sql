-- Indexes for the dashboard at scale (1,000,000 items: BENCHMARKS.md).

-- The overview reads every service's hours at once, from the index alone.
CREATE INDEX rollups_by_hour ON rollups (category, hour, service, kind, label, n, score_sum);

-- Per-service charts read a service's mentions in a window without visiting every item: the
-- pair carries the item's time, kind, author and bookmarks (rewritten with the item).
ALTER TABLE item_services ADD COLUMN published_at BIGINT;
ALTER TABLE item_services ADD COLUMN kind TEXT;
ALTER TABLE item_services ADD COLUMN author TEXT;
ALTER TABLE item_services ADD COLUMN bookmarks BIGINT;
UPDATE item_services SET (published_at, kind, author, bookmarks) =
    (SELECT published_at, kind, author, bookmarks FROM items WHERE id = item_id);
-- Covering: distinct authors and top items per window are read from the index alone.
CREATE INDEX item_services_window ON item_services
    (service, published_at, kind, author, bookmarks, score, label, item_id);
