CREATE TABLE "fleet_version_days" (
	"product" text NOT NULL,
	"day" integer NOT NULL,
	"version" text NOT NULL,
	"delta" integer NOT NULL,
	CONSTRAINT "fleet_version_days_product_day_version_pk" PRIMARY KEY("product","day","version")
);
--> statement-breakpoint
CREATE TABLE "rollout_candidates" (
	"rollout_id" uuid NOT NULL,
	"device_id" uuid NOT NULL,
	CONSTRAINT "rollout_candidates_rollout_id_device_id_pk" PRIMARY KEY("rollout_id","device_id")
);
--> statement-breakpoint
CREATE TABLE "rollout_counts" (
	"rollout_id" uuid NOT NULL,
	"bucket" integer NOT NULL,
	"state" text NOT NULL,
	"fetched" boolean NOT NULL,
	"live" boolean NOT NULL,
	"n" integer NOT NULL,
	CONSTRAINT "rollout_counts_rollout_id_bucket_state_fetched_live_pk" PRIMARY KEY("rollout_id","bucket","state","fetched","live")
);
--> statement-breakpoint
CREATE TABLE "rollout_dirty" (
	"rollout_id" uuid NOT NULL,
	"device_id" uuid NOT NULL,
	CONSTRAINT "rollout_dirty_rollout_id_device_id_pk" PRIMARY KEY("rollout_id","device_id")
);
--> statement-breakpoint
CREATE TABLE "rollout_stage_counts" (
	"rollout_id" uuid NOT NULL,
	"stage" integer NOT NULL,
	"state" text NOT NULL,
	"fetched" boolean NOT NULL,
	"live" boolean NOT NULL,
	"n" integer NOT NULL,
	CONSTRAINT "rollout_stage_counts_rollout_id_stage_state_fetched_live_pk" PRIMARY KEY("rollout_id","stage","state","fetched","live")
);
--> statement-breakpoint
ALTER TABLE "rollouts" ADD COLUMN "candidates_seeded_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "rollouts" ADD COLUMN "stage_limits" integer[];--> statement-breakpoint
ALTER TABLE "rollout_candidates" ADD CONSTRAINT "rollout_candidates_rollout_id_rollouts_id_fk" FOREIGN KEY ("rollout_id") REFERENCES "public"."rollouts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rollout_candidates" ADD CONSTRAINT "rollout_candidates_device_id_devices_id_fk" FOREIGN KEY ("device_id") REFERENCES "public"."devices"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rollout_counts" ADD CONSTRAINT "rollout_counts_rollout_id_rollouts_id_fk" FOREIGN KEY ("rollout_id") REFERENCES "public"."rollouts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rollout_dirty" ADD CONSTRAINT "rollout_dirty_rollout_id_rollouts_id_fk" FOREIGN KEY ("rollout_id") REFERENCES "public"."rollouts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rollout_stage_counts" ADD CONSTRAINT "rollout_stage_counts_rollout_id_rollouts_id_fk" FOREIGN KEY ("rollout_id") REFERENCES "public"."rollouts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
-- The rollout bucket (src/rollout/bucket.ts rolloutBucket): uint32 big-endian of the first 4
-- bytes of SHA-256(utf8(rolloutId) || 0x00 || utf8(deviceId)), mod 10,000. The one SQL spelling:
-- bucket.ts rolloutBucketSql, the recount (progress-sql.ts) and the counters below call it.
CREATE FUNCTION rollout_bucket(rollout_id text, device_id text) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT (('x' || encode(substring(sha256(convert_to(rollout_id, 'UTF8') || '\x00'::bytea
          || convert_to(device_id, 'UTF8')) from 1 for 4), 'hex'))::bit(32)::bigint % 10000)::int
$$;
--> statement-breakpoint
-- Members: every statement on rollout_devices moves its rows' counts by (bucket, state, fetched,
-- live) in one upsert ordered by key (no row-by-row read-modify-write; concurrent writers queue on
-- the counter rows they share). An offer ends a candidacy; offers and state changes mark the
-- device for re-judging by the rollout itself (an offer racing a candidate sync) and by the
-- rollbacks that select from this rollout (their candidates depend on these states).
CREATE FUNCTION rollout_devices_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    DELETE FROM rollout_candidates c USING nt WHERE c.rollout_id = nt.rollout_id AND c.device_id = nt.device_id;
    INSERT INTO rollout_counts AS c (rollout_id, bucket, state, fetched, live, n)
    SELECT nt.rollout_id, rollout_bucket(nt.rollout_id::text, nt.device_id::text), nt.state,
           nt.blobs_fetched_at IS NOT NULL, coalesce(d.decommissioned_at IS NULL, true), count(*)::int
    FROM nt LEFT JOIN devices d ON d.id = nt.device_id
    GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (rollout_id, bucket, state, fetched, live) DO UPDATE SET n = c.n + excluded.n;
    INSERT INTO rollout_dirty (rollout_id, device_id)
    SELECT r.id, nt.device_id FROM nt JOIN rollouts r
      ON r.id = nt.rollout_id OR r.selector->>'fromRollout' = nt.rollout_id::text
    WHERE r.state IN ('active', 'paused')
    ON CONFLICT DO NOTHING;
  ELSIF TG_OP = 'UPDATE' THEN
    -- The new rows' keys minus the old rows' (unchanged keys cancel out), without a join.
    INSERT INTO rollout_counts AS c (rollout_id, bucket, state, fetched, live, n)
    SELECT rollout_id, bucket, state, fetched, live, sum(n)::int FROM (
      SELECT o.rollout_id, rollout_bucket(o.rollout_id::text, o.device_id::text) AS bucket, o.state,
             o.blobs_fetched_at IS NOT NULL AS fetched, coalesce(d.decommissioned_at IS NULL, true) AS live, -1 AS n
      FROM ot o LEFT JOIN devices d ON d.id = o.device_id
      UNION ALL
      SELECT nt.rollout_id, rollout_bucket(nt.rollout_id::text, nt.device_id::text), nt.state,
             nt.blobs_fetched_at IS NOT NULL, coalesce(d.decommissioned_at IS NULL, true), 1
      FROM nt LEFT JOIN devices d ON d.id = nt.device_id
    ) x GROUP BY 1, 2, 3, 4, 5 HAVING sum(n) <> 0 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (rollout_id, bucket, state, fetched, live) DO UPDATE SET n = c.n + excluded.n;
    -- Rollbacks selecting from this rollout judge the device again (over-listing is harmless).
    INSERT INTO rollout_dirty (rollout_id, device_id)
    SELECT r.id, nt.device_id FROM nt JOIN rollouts r ON r.selector->>'fromRollout' = nt.rollout_id::text
    WHERE r.state IN ('active', 'paused')
    ON CONFLICT DO NOTHING;
  ELSE
    -- Rows removed with their rollout (cascade) leave nothing to count.
    INSERT INTO rollout_counts AS c (rollout_id, bucket, state, fetched, live, n)
    SELECT o.rollout_id, rollout_bucket(o.rollout_id::text, o.device_id::text), o.state,
           o.blobs_fetched_at IS NOT NULL, coalesce(d.decommissioned_at IS NULL, true), -count(*)::int
    FROM ot o LEFT JOIN devices d ON d.id = o.device_id
    WHERE EXISTS (SELECT 1 FROM rollouts r WHERE r.id = o.rollout_id)
    GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (rollout_id, bucket, state, fetched, live) DO UPDATE SET n = c.n + excluded.n;
    INSERT INTO rollout_dirty (rollout_id, device_id)
    SELECT r.id, o.device_id FROM ot o JOIN rollouts r ON r.id = o.rollout_id
    WHERE r.state IN ('active', 'paused') AND EXISTS (SELECT 1 FROM devices d WHERE d.id = o.device_id)
    ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER rollout_devices_counted_insert AFTER INSERT ON rollout_devices
  REFERENCING NEW TABLE AS nt FOR EACH STATEMENT EXECUTE FUNCTION rollout_devices_counted();
--> statement-breakpoint
CREATE TRIGGER rollout_devices_counted_update AFTER UPDATE ON rollout_devices
  REFERENCING OLD TABLE AS ot NEW TABLE AS nt FOR EACH STATEMENT EXECUTE FUNCTION rollout_devices_counted();
--> statement-breakpoint
CREATE TRIGGER rollout_devices_counted_delete AFTER DELETE ON rollout_devices
  REFERENCING OLD TABLE AS ot FOR EACH STATEMENT EXECUTE FUNCTION rollout_devices_counted();
--> statement-breakpoint
-- rollout_counts summed by stage: every change of a bucket's count moves its stage's count by the
-- same amount, the stage taken from rollouts.stage_limits under a key-share lock (a count that
-- regroups the stages, counters.ts, takes the row FOR UPDATE: it waits for these and they for it).
CREATE FUNCTION rollout_counts_staged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM rollouts r WHERE r.id IN (SELECT nt.rollout_id FROM nt) AND r.stage_limits IS NOT NULL
  ORDER BY r.id FOR KEY SHARE;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO rollout_stage_counts AS s (rollout_id, stage, state, fetched, live, n)
    SELECT nt.rollout_id, width_bucket(nt.bucket, r.stage_limits), nt.state, nt.fetched, nt.live, sum(nt.n)::int
    FROM nt JOIN rollouts r ON r.id = nt.rollout_id AND r.stage_limits IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5 HAVING sum(nt.n) <> 0 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (rollout_id, stage, state, fetched, live) DO UPDATE SET n = s.n + excluded.n;
  ELSE
    -- New minus old per key, summed without joining the two transition tables.
    INSERT INTO rollout_stage_counts AS s (rollout_id, stage, state, fetched, live, n)
    SELECT x.rollout_id, width_bucket(x.bucket, r.stage_limits), x.state, x.fetched, x.live, sum(x.n)::int
    FROM (SELECT rollout_id, bucket, state, fetched, live, n FROM nt
          UNION ALL SELECT rollout_id, bucket, state, fetched, live, -n FROM ot) x
    JOIN rollouts r ON r.id = x.rollout_id AND r.stage_limits IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5 HAVING sum(x.n) <> 0 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (rollout_id, stage, state, fetched, live) DO UPDATE SET n = s.n + excluded.n;
  END IF;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER rollout_counts_staged_insert AFTER INSERT ON rollout_counts
  REFERENCING NEW TABLE AS nt FOR EACH STATEMENT EXECUTE FUNCTION rollout_counts_staged();
--> statement-breakpoint
CREATE TRIGGER rollout_counts_staged_update AFTER UPDATE ON rollout_counts
  REFERENCING OLD TABLE AS ot NEW TABLE AS nt FOR EACH STATEMENT EXECUTE FUNCTION rollout_counts_staged();
--> statement-breakpoint
-- Candidates count under state '' (always fetched and live: a candidate is a live device).
CREATE FUNCTION rollout_candidates_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO rollout_counts AS c (rollout_id, bucket, state, fetched, live, n)
    SELECT nt.rollout_id, rollout_bucket(nt.rollout_id::text, nt.device_id::text), '', true, true, count(*)::int
    FROM nt GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (rollout_id, bucket, state, fetched, live) DO UPDATE SET n = c.n + excluded.n;
  ELSE
    INSERT INTO rollout_counts AS c (rollout_id, bucket, state, fetched, live, n)
    SELECT o.rollout_id, rollout_bucket(o.rollout_id::text, o.device_id::text), '', true, true, -count(*)::int
    FROM ot o WHERE EXISTS (SELECT 1 FROM rollouts r WHERE r.id = o.rollout_id)
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (rollout_id, bucket, state, fetched, live) DO UPDATE SET n = c.n + excluded.n;
  END IF;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER rollout_candidates_counted_insert AFTER INSERT ON rollout_candidates
  REFERENCING NEW TABLE AS nt FOR EACH STATEMENT EXECUTE FUNCTION rollout_candidates_counted();
--> statement-breakpoint
CREATE TRIGGER rollout_candidates_counted_delete AFTER DELETE ON rollout_candidates
  REFERENCING OLD TABLE AS ot FOR EACH STATEMENT EXECUTE FUNCTION rollout_candidates_counted();
--> statement-breakpoint
-- Version history (fleet_version_days): +1/-1 at a UTC day for a version.
CREATE FUNCTION fleet_version_day(at timestamptz) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT floor(extract(epoch from at) / 86400)::int $$;
--> statement-breakpoint
-- Devices: changes that can change a candidacy mark the device for the running rollouts of its
-- product; a decommission moves its memberships' counts to live = false (or back); and the
-- version history follows registrations, decommissions and the version of a device that never
-- committed an update (it runs its current version since registration; fleet-history.ts).
CREATE FUNCTION devices_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO rollout_dirty (rollout_id, device_id)
    SELECT r.id, nt.id FROM nt JOIN rollouts r ON r.product = nt.product AND r.state IN ('active', 'paused')
    ON CONFLICT DO NOTHING;
    INSERT INTO fleet_version_days AS f (product, day, version, delta)
    SELECT product, day, version, sum(delta)::int FROM (
      SELECT product, fleet_version_day(created_at) AS day, coalesce(current_version, 'unknown') AS version, 1 AS delta FROM nt
      UNION ALL
      SELECT product, fleet_version_day(decommissioned_at), coalesce(current_version, 'unknown'), -1
      FROM nt WHERE decommissioned_at IS NOT NULL
    ) x GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (product, day, version) DO UPDATE SET delta = f.delta + excluded.delta;
    RETURN NULL;
  END IF;
  INSERT INTO rollout_dirty (rollout_id, device_id)
  SELECT r.id, nt.id FROM ot o JOIN nt ON nt.id = o.id
  JOIN rollouts r ON r.product = nt.product AND r.state IN ('active', 'paused')
  WHERE o.tags IS DISTINCT FROM nt.tags OR o.current_version IS DISTINCT FROM nt.current_version
     OR o.hardware IS DISTINCT FROM nt.hardware OR o.decommissioned_at IS DISTINCT FROM nt.decommissioned_at
  ON CONFLICT DO NOTHING;
  INSERT INTO rollout_counts AS c (rollout_id, bucket, state, fetched, live, n)
  SELECT rollout_id, bucket, state, fetched, live, sum(n)::int FROM (
    SELECT rd.rollout_id, rollout_bucket(rd.rollout_id::text, rd.device_id::text) AS bucket, rd.state,
           rd.blobs_fetched_at IS NOT NULL AS fetched, o.decommissioned_at IS NULL AS live, -1 AS n
    FROM ot o JOIN nt ON nt.id = o.id JOIN rollout_devices rd ON rd.device_id = nt.id
    WHERE (o.decommissioned_at IS NULL) <> (nt.decommissioned_at IS NULL)
    UNION ALL
    SELECT rd.rollout_id, rollout_bucket(rd.rollout_id::text, rd.device_id::text), rd.state,
           rd.blobs_fetched_at IS NOT NULL, nt.decommissioned_at IS NULL, 1
    FROM ot o JOIN nt ON nt.id = o.id JOIN rollout_devices rd ON rd.device_id = nt.id
    WHERE (o.decommissioned_at IS NULL) <> (nt.decommissioned_at IS NULL)
  ) x GROUP BY 1, 2, 3, 4, 5 HAVING sum(n) <> 0 ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (rollout_id, bucket, state, fetched, live) DO UPDATE SET n = c.n + excluded.n;
  -- The version a device runs at its decommission: its latest commit's, else its current one.
  INSERT INTO fleet_version_days AS f (product, day, version, delta)
  SELECT product, day, version, sum(delta)::int FROM (
    SELECT nt.product, fleet_version_day(o.created_at) AS day, coalesce(o.current_version, 'unknown') AS version, -1 AS delta
    FROM ot o JOIN nt ON nt.id = o.id
    WHERE o.current_version IS DISTINCT FROM nt.current_version
      AND NOT EXISTS (SELECT 1 FROM device_events e WHERE e.device_id = o.id AND e.state = 'committed')
    UNION ALL
    SELECT nt.product, fleet_version_day(o.created_at), coalesce(nt.current_version, 'unknown'), 1
    FROM ot o JOIN nt ON nt.id = o.id
    WHERE o.current_version IS DISTINCT FROM nt.current_version
      AND NOT EXISTS (SELECT 1 FROM device_events e WHERE e.device_id = o.id AND e.state = 'committed')
    UNION ALL
    SELECT nt.product, fleet_version_day(o.decommissioned_at), v.version, 1
    FROM ot o JOIN nt ON nt.id = o.id
    CROSS JOIN LATERAL (SELECT coalesce((SELECT e.version FROM device_events e
        WHERE e.device_id = o.id AND e.state = 'committed' ORDER BY e.created_at DESC, e.id DESC LIMIT 1),
        coalesce(o.current_version, 'unknown')) AS version) v
    WHERE o.decommissioned_at IS DISTINCT FROM nt.decommissioned_at AND o.decommissioned_at IS NOT NULL
    UNION ALL
    SELECT nt.product, fleet_version_day(nt.decommissioned_at), v.version, -1
    FROM ot o JOIN nt ON nt.id = o.id
    CROSS JOIN LATERAL (SELECT coalesce((SELECT e.version FROM device_events e
        WHERE e.device_id = nt.id AND e.state = 'committed' ORDER BY e.created_at DESC, e.id DESC LIMIT 1),
        coalesce(nt.current_version, 'unknown')) AS version) v
    WHERE o.decommissioned_at IS DISTINCT FROM nt.decommissioned_at AND nt.decommissioned_at IS NOT NULL
  ) x GROUP BY 1, 2, 3 HAVING sum(delta) <> 0 ORDER BY 1, 2, 3
  ON CONFLICT (product, day, version) DO UPDATE SET delta = f.delta + excluded.delta;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER devices_counted_insert AFTER INSERT ON devices
  REFERENCING NEW TABLE AS nt FOR EACH STATEMENT EXECUTE FUNCTION devices_counted();
--> statement-breakpoint
CREATE TRIGGER devices_counted_update AFTER UPDATE ON devices
  REFERENCING OLD TABLE AS ot NEW TABLE AS nt FOR EACH STATEMENT EXECUTE FUNCTION devices_counted();
--> statement-breakpoint
-- A device row deleted takes its memberships with it: removed first, while the device still
-- says whether it was live, so their counts come off the right rows.
CREATE FUNCTION devices_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM rollout_devices WHERE device_id = OLD.id;
  DELETE FROM rollout_candidates WHERE device_id = OLD.id;
  RETURN OLD;
END $$;
--> statement-breakpoint
CREATE TRIGGER devices_deleted BEFORE DELETE ON devices FOR EACH ROW EXECUTE FUNCTION devices_deleted();
--> statement-breakpoint
-- A commit splits the device's version stretch that contains it (its first commit also turns
-- "the version since registration" into "before first update"): the net change to the history.
CREATE FUNCTION device_committed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  dev record;
  label text;
  since_next timestamptz;
  has_prev boolean;
  t int := fleet_version_day(NEW.created_at);
BEGIN
  SELECT product, current_version, created_at, decommissioned_at INTO dev FROM devices WHERE id = NEW.device_id;
  IF NOT FOUND THEN RETURN NULL; END IF;
  SELECT e.version INTO label FROM device_events e
  WHERE e.device_id = NEW.device_id AND e.state = 'committed' AND e.id <> NEW.id
    AND (e.created_at, e.id) < (NEW.created_at, NEW.id)
  ORDER BY e.created_at DESC, e.id DESC LIMIT 1;
  has_prev := FOUND;
  SELECT e.created_at INTO since_next FROM device_events e
  WHERE e.device_id = NEW.device_id AND e.state = 'committed' AND e.id <> NEW.id
    AND (e.created_at, e.id) > (NEW.created_at, NEW.id)
  ORDER BY e.created_at, e.id LIMIT 1;
  IF NOT has_prev THEN
    label := 'before first update';
    IF since_next IS NULL AND NOT EXISTS (SELECT 1 FROM device_events e
        WHERE e.device_id = NEW.device_id AND e.state = 'committed' AND e.id <> NEW.id) THEN
      -- First commit: the stretch since registration is relabelled.
      INSERT INTO fleet_version_days AS f (product, day, version, delta)
      SELECT dev.product, day, version, sum(delta)::int FROM (VALUES
        (fleet_version_day(dev.created_at), coalesce(dev.current_version, 'unknown'), -1),
        (fleet_version_day(dev.created_at), label, 1),
        (fleet_version_day(dev.decommissioned_at), coalesce(dev.current_version, 'unknown'), 1))
        AS x(day, version, delta)
      WHERE day IS NOT NULL GROUP BY 1, 2, 3 HAVING sum(delta) <> 0 ORDER BY 1, 2, 3
      ON CONFLICT (product, day, version) DO UPDATE SET delta = f.delta + excluded.delta;
    END IF;
  END IF;
  -- Split (label, since, until) at t into (label, since, t) and (NEW.version, t, until); the
  -- "before first update" stretch ends at the first commit, the last commit's at decommission.
  INSERT INTO fleet_version_days AS f (product, day, version, delta)
  SELECT dev.product, day, version, sum(delta)::int FROM (
    SELECT t AS day, label AS version, -1 AS delta
    UNION ALL SELECT t, NEW.version, 1
    UNION ALL SELECT fleet_version_day(u), label, 1 FROM (SELECT CASE WHEN since_next IS NOT NULL THEN since_next
        WHEN has_prev THEN dev.decommissioned_at END AS u) s WHERE u IS NOT NULL
    UNION ALL SELECT fleet_version_day(u), NEW.version, -1 FROM (SELECT coalesce(since_next, dev.decommissioned_at) AS u) s
      WHERE u IS NOT NULL
  ) x GROUP BY 1, 2, 3 HAVING sum(delta) <> 0 ORDER BY 1, 2, 3
  ON CONFLICT (product, day, version) DO UPDATE SET delta = f.delta + excluded.delta;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER device_committed AFTER INSERT ON device_events FOR EACH ROW
  WHEN (NEW.state = 'committed') EXECUTE FUNCTION device_committed();
--> statement-breakpoint
-- Existing databases: members counted from rollout_devices (candidates are filled by the first
-- count of each running rollout, counters.ts), and the version history from devices and commits
-- (the query fleet-history.ts ran on every chart before).
INSERT INTO rollout_counts (rollout_id, bucket, state, fetched, live, n)
SELECT rd.rollout_id, rollout_bucket(rd.rollout_id::text, rd.device_id::text), rd.state,
       rd.blobs_fetched_at IS NOT NULL, d.decommissioned_at IS NULL, count(*)::int
FROM rollout_devices rd JOIN devices d ON d.id = rd.device_id
GROUP BY 1, 2, 3, 4, 5;
--> statement-breakpoint
INSERT INTO fleet_version_days (product, day, version, delta)
WITH c AS (
  SELECT e.device_id, e.version, e.created_at AS at, d.decommissioned_at AS gone,
         lead(e.created_at) OVER w AS next_at, row_number() OVER w AS n
  FROM device_events e JOIN devices d ON d.id = e.device_id
  WHERE e.state = 'committed'
  WINDOW w AS (PARTITION BY e.device_id ORDER BY e.created_at, e.id)
), segs AS (
  SELECT d.product, c.version, c.at AS since, coalesce(c.next_at, c.gone) AS until
  FROM c JOIN devices d ON d.id = c.device_id
  UNION ALL
  SELECT d.product,
         CASE WHEN c.at IS NULL THEN coalesce(d.current_version, 'unknown') ELSE 'before first update' END,
         d.created_at, coalesce(c.at, d.decommissioned_at)
  FROM devices d LEFT JOIN c ON c.device_id = d.id AND c.n = 1
)
SELECT product, day, version, sum(delta)::int FROM (
  SELECT product, fleet_version_day(since) AS day, version, 1 AS delta FROM segs
  UNION ALL
  SELECT product, fleet_version_day(until), version, -1 FROM segs WHERE until IS NOT NULL
) x GROUP BY 1, 2, 3 HAVING sum(delta) <> 0;
--> statement-breakpoint
-- Candidates are kept in step only while a rollout runs (rollout_dirty is written for running
-- rollouts): one that stops is filled afresh from the fleet if it ever runs again.
CREATE FUNCTION rollouts_candidates_stale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.candidates_seeded_at := NULL;
  RETURN NEW;
END $$;
--> statement-breakpoint
CREATE TRIGGER rollouts_candidates_stale BEFORE UPDATE OF state ON rollouts FOR EACH ROW
  WHEN (NEW.state NOT IN ('active', 'paused')) EXECUTE FUNCTION rollouts_candidates_stale();
