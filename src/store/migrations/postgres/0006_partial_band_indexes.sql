-- Only news items carry a MinHash signature; posts left eight NULL entries per row in the band
-- indexes, written on every insert and never read (a lookup `mh_bN = ?` implies NOT NULL, so
-- both engines use these partial indexes for it).
-- The indexes are rebuilt at the first start after the upgrade; items are locked meanwhile
-- (the migration runs in one transaction, where CREATE INDEX CONCURRENTLY is not allowed).
DROP INDEX items_mh_b0;
DROP INDEX items_mh_b1;
DROP INDEX items_mh_b2;
DROP INDEX items_mh_b3;
DROP INDEX items_mh_b4;
DROP INDEX items_mh_b5;
DROP INDEX items_mh_b6;
DROP INDEX items_mh_b7;
CREATE INDEX items_mh_b0 ON items (mh_b0) WHERE mh_b0 IS NOT NULL;
CREATE INDEX items_mh_b1 ON items (mh_b1) WHERE mh_b1 IS NOT NULL;
CREATE INDEX items_mh_b2 ON items (mh_b2) WHERE mh_b2 IS NOT NULL;
CREATE INDEX items_mh_b3 ON items (mh_b3) WHERE mh_b3 IS NOT NULL;
CREATE INDEX items_mh_b4 ON items (mh_b4) WHERE mh_b4 IS NOT NULL;
CREATE INDEX items_mh_b5 ON items (mh_b5) WHERE mh_b5 IS NOT NULL;
CREATE INDEX items_mh_b6 ON items (mh_b6) WHERE mh_b6 IS NOT NULL;
CREATE INDEX items_mh_b7 ON items (mh_b7) WHERE mh_b7 IS NOT NULL;
