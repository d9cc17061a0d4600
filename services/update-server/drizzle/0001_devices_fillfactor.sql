-- Every poll updates its device row (version, slot, last seen). Leaving 30 % of each page free
-- lets PostgreSQL do HOT updates (no new index entries, notably none in the tags GIN index)
-- instead of writing every index on every poll.
ALTER TABLE "devices" SET (fillfactor = 70);
