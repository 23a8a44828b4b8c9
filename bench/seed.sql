-- Seeds the v2 query benchmark straight into the schema (bench/run): :n images in region `local`
-- across :orgs organizations (`org-0` ..), the first 100 global, every 50th `pending`, a quarter
-- aarch64; five user tags each (env: 3 values, team: 20, tier: 3, app: 997, cost-center: 100) plus
-- the reserved provenance tags Strata writes. Names are img-<n>; creation times are spread so
-- that they do not follow the name order.
SET synchronous_commit = off;
SET maintenance_work_mem = '256MB';
-- Bulk load: foreign-key triggers off (the rows are consistent by construction), secondary
-- indexes dropped and rebuilt afterwards from their own definitions.
SET session_replication_role = replica;
CREATE TEMP TABLE bench_indexes AS
  SELECT indexname, indexdef FROM pg_indexes
  WHERE schemaname = current_schema() AND tablename IN ('images', 'image_tags')
    AND indexname NOT IN (SELECT conname FROM pg_constraint);
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT indexname FROM bench_indexes LOOP EXECUTE 'DROP INDEX ' || quote_ident(r.indexname); END LOOP;
END $$;
INSERT INTO images (id, region_id, organization_id, visibility, kind, disk_format, architecture, name,
  description, os_family, os_distro, os_version, protected, source, reference, digest, imported_by,
  imported_at, state, reason, bytes_done, bytes_total, size_bytes, sha256, expected_sha256, blob_id,
  created_at, updated_at, revision, tag_set_revision, tag_set)
SELECT md5('image' || g)::uuid::text, 'local',
  CASE WHEN g <= 100 THEN NULL ELSE 'org-' || (g % :orgs) END,
  CASE WHEN g <= 100 THEN 'global' ELSE 'organization' END,
  'disk', 'raw', CASE WHEN g % 4 = 0 THEN 'aarch64' ELSE 'x86_64' END, 'img-' || g,
  NULL, 'linux', NULL, NULL, false, 'upload', NULL,
  CASE WHEN g % 50 = 0 THEN NULL ELSE 'sha256:' || md5(g::text) || md5(g::text) END, 'bench', t,
  CASE WHEN g % 50 = 0 THEN 'pending' ELSE 'ready' END, NULL,
  CASE WHEN g % 50 = 0 THEN 0 ELSE 1073741824 END,
  CASE WHEN g % 50 = 0 THEN NULL ELSE 1073741824 END,
  CASE WHEN g % 50 = 0 THEN NULL ELSE 1073741824 END,
  CASE WHEN g % 50 = 0 THEN NULL ELSE md5(g::text) || md5(g::text) END, NULL,
  CASE WHEN g % 50 = 0 THEN NULL ELSE md5('blob' || g)::uuid::text END,
  t, t, 1, 1,
  -- the tags inserted below, as Strata keeps them in tag_set (checked at the end)
  chr(31) || concat_ws(chr(31),
    'env=' || (ARRAY['prod', 'staging', 'dev'])[1 + g % 3], 'team=t' || ((g / 3) % 20),
    'tier=' || (ARRAY['web', 'db', 'batch'])[1 + (g / 7) % 3], 'app=app' || (g % 997),
    'cost-center=cc' || (g % 100), 'strata.dev/source=upload',
    CASE WHEN g <= 100 THEN NULL ELSE 'strata.dev/organization=org-' || (g % :orgs) END,
    'strata.dev/imported-by=bench',
    CASE WHEN g % 50 = 0 THEN NULL ELSE 'strata.dev/digest=sha256:' || md5(g::text) || md5(g::text) END
  ) || chr(31)
FROM generate_series(1, :n) g,
  LATERAL (SELECT 1700000000000000::bigint + ((g::bigint * 7919) % :n) * 1000000 + g % 1000 AS t) c;

INSERT INTO image_tags (image_id, key, value, reserved)
SELECT i.id, t.key, t.value, t.reserved
FROM (SELECT id, organization_id, digest, substr(name, 5)::bigint AS g FROM images WHERE name ~ '^img-[0-9]+$') i,
  LATERAL (VALUES
    ('env', (ARRAY['prod', 'staging', 'dev'])[1 + i.g % 3], false),
    ('team', 't' || ((i.g / 3) % 20), false),
    ('tier', (ARRAY['web', 'db', 'batch'])[1 + (i.g / 7) % 3], false),
    ('app', 'app' || (i.g % 997), false),
    ('cost-center', 'cc' || (i.g % 100), false),
    ('strata.dev/source', 'upload', true),
    ('strata.dev/organization', i.organization_id, true),
    ('strata.dev/imported-by', 'bench', true),
    ('strata.dev/digest', i.digest, true)
  ) AS t(key, value, reserved)
WHERE t.value IS NOT NULL
ORDER BY i.id, t.key;

DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT indexdef FROM bench_indexes LOOP EXECUTE r.indexdef; END LOOP;
END $$;
SET session_replication_role = origin;

-- tag_set holds exactly the image's tags (any order), as Strata's own writes keep it
DO $$ BEGIN
  IF EXISTS (
    SELECT 1 FROM (SELECT * FROM images ORDER BY id LIMIT 2000) i
    WHERE (SELECT array_agg(x ORDER BY x) FROM unnest(string_to_array(trim(both chr(31) from i.tag_set), chr(31))) x)
      IS DISTINCT FROM
      (SELECT array_agg(key || '=' || value ORDER BY key || '=' || value) FROM image_tags WHERE image_id = i.id)
  ) THEN RAISE EXCEPTION 'bench seed: tag_set does not match image_tags'; END IF;
END $$;
