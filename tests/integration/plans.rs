//! The v2 query's plans on PostgreSQL: the exact statement Strata sends for each query shape is
//! prepared and EXPLAINed with a forced generic plan (what PostgreSQL switches to after five
//! executions of a prepared statement with bound parameters) and with a forced custom plan, on a
//! table that was never analyzed and again after `ANALYZE`. No plan may read `images` or
//! `image_tags` in full: images are reached through an index, and tags only by primary-key probes
//! from the image at hand (so a common tag cannot turn into a hash join over every tag row).

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, Value};
use secrecy::SecretString;
use serde_json::Value as Json;
use strata_domain::ids::{OrganizationId, RegionId};
use strata_domain::image::{Architecture, ImageState};
use strata_domain::name::ImageName;
use strata_domain::query::{Cursor, ImageQuery, OrgFilter, Sort};
use strata_domain::tags::TagFilter;

use crate::harness::fresh_pg_database;

const IMAGES: u32 = 20_000;
const ORGS: u32 = 200;

fn org(n: u32) -> OrganizationId {
    OrganizationId::parse(&format!("org-{n}")).unwrap()
}

fn tag(s: &str) -> TagFilter {
    TagFilter::parse(s).unwrap()
}

/// Every shape the issue names: no filter, each filter alone, each sort, a later page.
fn shapes() -> Vec<(&'static str, ImageQuery)> {
    let base = ImageQuery {
        organizations: OrgFilter::Any,
        include_global: true,
        states: vec![],
        name: None,
        architecture: None,
        kind: None,
        tags: vec![],
        sort: Sort::Name,
        limit: 100,
        after: None,
    };
    let q = |f: &dyn Fn(&mut ImageQuery)| {
        let mut q = base.clone();
        f(&mut q);
        q
    };
    vec![
        ("no filter", base.clone()),
        (
            "organizationID x1",
            q(&|q| q.organizations = OrgFilter::Only(vec![org(42)])),
        ),
        (
            "organizationID x50",
            q(&|q| q.organizations = OrgFilter::Only((0..50).map(|i| org(i * 3)).collect())),
        ),
        (
            "one organization, owned only",
            q(&|q| {
                q.organizations = OrgFilter::Only(vec![org(7)]);
                q.include_global = false;
            }),
        ),
        ("status", q(&|q| q.states = vec![ImageState::Pending])),
        (
            "two states",
            q(&|q| q.states = vec![ImageState::Pending, ImageState::Failed]),
        ),
        ("architecture", q(&|q| q.architecture = Some(Architecture::Aarch64))),
        ("name", q(&|q| q.name = Some(ImageName::parse("img-777").unwrap()))),
        ("one tag", q(&|q| q.tags = vec![tag("env=prod")])),
        ("two tags", q(&|q| q.tags = vec![tag("env=prod"), tag("team=t5")])),
        ("key-only tag", q(&|q| q.tags = vec![tag("team")])),
        (
            "architecture and tag",
            q(&|q| {
                q.architecture = Some(Architecture::Aarch64);
                q.tags = vec![tag("team=t5")];
            }),
        ),
        ("sort createdAt", q(&|q| q.sort = Sort::CreatedAt)),
        ("sort -createdAt", q(&|q| q.sort = Sort::CreatedAtDesc)),
        (
            "later page by name",
            q(&|q| {
                q.after = Some(Cursor::Name {
                    name: "img-5000".into(),
                    id: uuid::Uuid::nil(),
                })
            }),
        ),
        (
            "later page by -createdAt, one organization, a tag",
            q(&|q| {
                q.sort = Sort::CreatedAtDesc;
                q.organizations = OrgFilter::Only(vec![org(3)]);
                q.tags = vec![tag("env=dev")];
                q.after = Some(Cursor::CreatedAt {
                    at: chrono::DateTime::from_timestamp_micros(1_700_015_000_000_000).unwrap(),
                    id: uuid::Uuid::nil(),
                })
            }),
        ),
        (
            "status and architecture, sort createdAt",
            q(&|q| {
                q.states = vec![ImageState::Ready];
                q.architecture = Some(Architecture::X86_64);
                q.sort = Sort::CreatedAt;
            }),
        ),
    ]
}

/// Rows like a real region's: organizations, a few global images, five user tags and the
/// reserved ones per image. Autovacuum is off for both tables, so nothing analyzes them.
async fn seed(db: &DatabaseConnection) {
    for t in ["images", "image_tags"] {
        db.execute_unprepared(&format!("ALTER TABLE {t} SET (autovacuum_enabled = false)"))
            .await
            .unwrap();
    }
    db.execute_unprepared(&format!(
        "INSERT INTO images (id, region_id, organization_id, visibility, kind, disk_format, architecture, name, \
           protected, source, imported_by, imported_at, state, bytes_done, created_at, updated_at, revision) \
         SELECT md5('image' || g)::uuid::text, 'local', \
           CASE WHEN g <= 20 THEN NULL ELSE 'org-' || (g % {ORGS}) END, \
           CASE WHEN g <= 20 THEN 'global' ELSE 'organization' END, 'disk', 'raw', \
           CASE WHEN g % 4 = 0 THEN 'aarch64' ELSE 'x86_64' END, 'img-' || g, false, 'upload', 't', 0, \
           CASE WHEN g % 50 = 0 THEN 'pending' ELSE 'ready' END, 0, \
           1700000000000000 + ((g::bigint * 7919) % {IMAGES}) * 1000000, 0, 1 \
         FROM generate_series(1, {IMAGES}) g"
    ))
    .await
    .unwrap();
    db.execute_unprepared(
        "INSERT INTO image_tags (image_id, key, value, reserved) \
         SELECT i.id, t.key, t.value, t.reserved \
         FROM (SELECT id, organization_id, substr(name, 5)::bigint AS g FROM images) i, \
           LATERAL (VALUES ('env', (ARRAY['prod', 'staging', 'dev'])[1 + i.g % 3], false), \
             ('team', 't' || ((i.g / 3) % 20), false), ('tier', 'web', false), \
             ('app', 'app' || (i.g % 97), false), ('cost-center', 'cc' || (i.g % 10), false), \
             ('strata.dev/source', 'upload', true), ('strata.dev/organization', i.organization_id, true)) \
             AS t(key, value, reserved) \
         WHERE t.value IS NOT NULL",
    )
    .await
    .unwrap();
    // the tags' prefilter column as Strata keeps it; every 11th row's is unknown (NULL), as for
    // a row written by a binary older than the column; every 13th is stale, as for a row whose
    // tags such a binary changed later (it bumped the revision, not `tag_set_revision`)
    db.execute_unprepared(
        "UPDATE images SET tag_set = (SELECT chr(31) || string_agg(key || '=' || value, chr(31)) || chr(31) \
         FROM image_tags WHERE image_id = images.id), tag_set_revision = revision \
         WHERE substr(name, 5)::bigint % 11 <> 0",
    )
    .await
    .unwrap();
    db.execute_unprepared(
        "UPDATE images SET tag_set = chr(31) || 'stale=yes' || chr(31), revision = revision + 1 \
         WHERE substr(name, 5)::bigint % 13 = 0 AND tag_set IS NOT NULL",
    )
    .await
    .unwrap();
}

fn pg_type(v: &Value) -> &'static str {
    match v {
        Value::BigInt(_) | Value::BigUnsigned(_) => "bigint",
        Value::Int(_) | Value::Unsigned(_) => "integer",
        Value::Bool(_) => "boolean",
        _ => "text",
    }
}

fn literal(v: &Value) -> String {
    match v {
        Value::BigInt(Some(n)) => n.to_string(),
        Value::Int(Some(n)) => n.to_string(),
        Value::Bool(Some(b)) => b.to_string(),
        Value::String(Some(s)) => format!("'{}'", s.replace('\'', "''")),
        other => panic!("no literal for {other:?}"),
    }
}

/// Plan nodes that read `images` or `image_tags` the wrong way.
fn bad_nodes(plan: &Json, out: &mut Vec<String>) {
    let rel = plan["Relation Name"].as_str().unwrap_or_default();
    let node = plan["Node Type"].as_str().unwrap_or_default();
    let index = plan["Index Name"].as_str().unwrap_or_default();
    if rel == "images" && node == "Seq Scan" {
        out.push("Seq Scan on images".into());
    }
    // a bitmap read through the primary key (what an unanalyzed table gets for the page's tag
    // columns) is a probe too
    let through_pkey = |p: &Json| {
        p["Index Name"].as_str() == Some("image_tags_pkey")
            && p["Node Type"]
                .as_str()
                .is_some_and(|n| n.starts_with("Index") || n == "Bitmap Index Scan")
    };
    let bitmap_probe = node == "Bitmap Heap Scan"
        && plan["Plans"]
            .as_array()
            .is_some_and(|c| c.len() == 1 && through_pkey(&c[0]));
    if rel == "image_tags" && !through_pkey(plan) && !bitmap_probe {
        out.push(format!("{node} on image_tags (index {index:?})"));
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        bad_nodes(child, out);
    }
}

async fn explain(db: &DatabaseConnection, stmt: &Statement, mode: &str) -> Json {
    let values = stmt.values.as_ref().map(|v| v.0.clone()).unwrap_or_default();
    let types: Vec<_> = values.iter().map(pg_type).collect();
    let args: Vec<_> = values.iter().map(literal).collect();
    let prepare = if types.is_empty() {
        format!("PREPARE q AS {}", stmt.sql)
    } else {
        format!("PREPARE q ({}) AS {}", types.join(", "), stmt.sql)
    };
    db.execute_unprepared(&prepare).await.unwrap();
    db.execute_unprepared(&format!("SET plan_cache_mode = {mode}"))
        .await
        .unwrap();
    let exec = if args.is_empty() {
        "EXPLAIN (FORMAT JSON) EXECUTE q".to_owned()
    } else {
        format!("EXPLAIN (FORMAT JSON) EXECUTE q ({})", args.join(", "))
    };
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, exec))
        .await
        .unwrap()
        .unwrap();
    let plan: Json = row.try_get_by_index(0).unwrap();
    db.execute_unprepared("DEALLOCATE q").await.unwrap();
    plan[0]["Plan"].clone()
}

async fn check_all(db: &DatabaseConnection, when: &str) {
    let region = RegionId::parse("local").unwrap();
    let mut failures = Vec::new();
    for (name, q) in shapes() {
        let stmt = strata_api::db::images::query_statement(DbBackend::Postgres, &region, &q)
            .unwrap_or_else(|| panic!("{name}: no statement"));
        for mode in ["force_generic_plan", "force_custom_plan"] {
            let plan = explain(db, &stmt, mode).await;
            let mut bad = Vec::new();
            bad_nodes(&plan, &mut bad);
            if !bad.is_empty() {
                failures.push(format!(
                    "{when}, {name}, {mode}: {}\n  SQL: {}\n  plan: {plan}",
                    bad.join("; "),
                    stmt.sql
                ));
            }
        }
    }
    assert!(failures.is_empty(), "bad plans:\n{}", failures.join("\n"));
}

/// The statement runs (and returns what it should) on the seeded rows, too: a plan test over
/// SQL that fails or returns nothing would prove nothing.
async fn check_results(db: &DatabaseConnection) {
    let region = RegionId::parse("local").unwrap();
    for (name, q) in shapes() {
        let stmt = strata_api::db::images::query_statement(DbBackend::Postgres, &region, &q).unwrap();
        let rows = db.query_all_raw(stmt).await.unwrap();
        assert!(!rows.is_empty(), "{name}: no rows");
        assert!(rows.len() <= q.limit as usize + 1, "{name}: {} rows", rows.len());
    }
}

/// Tag filters return exactly the images `image_tags` says match: the in-row prefilter
/// (`images.tag_set`) only saves probes, and a NULL one (not known) or a stale one (older than
/// the row's revision) lets the image through.
async fn check_tag_results(db: &DatabaseConnection) {
    let region = RegionId::parse("local").unwrap();
    for filters in [
        vec!["env=prod", "team=t5"],
        vec!["team"],
        vec!["app=app7", "env"],
        vec!["env=prod="],
    ] {
        let mut q = shapes()[0].1.clone();
        q.tags = filters.iter().map(|f| tag(f)).collect();
        q.limit = 5_000;
        let stmt = strata_api::db::images::query_statement(DbBackend::Postgres, &region, &q).unwrap();
        let got: Vec<String> = db
            .query_all_raw(stmt)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get_by_index(0).unwrap())
            .collect();
        let conditions: Vec<String> = q
            .tags
            .iter()
            .map(|t| match &t.value {
                Some(v) => format!(
                    "EXISTS (SELECT 1 FROM image_tags t WHERE t.image_id = i.id AND t.key = '{}' AND t.value = '{v}')",
                    t.key
                ),
                None => format!(
                    "EXISTS (SELECT 1 FROM image_tags t WHERE t.image_id = i.id AND t.key = '{}')",
                    t.key
                ),
            })
            .collect();
        let want: Vec<String> = db
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT id FROM images i WHERE {} ORDER BY name, id LIMIT 5001",
                    conditions.join(" AND ")
                ),
            ))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get_by_index(0).unwrap())
            .collect();
        assert_eq!(got, want, "{filters:?}");
        // both ways a prefilter is not used must be among the matches, or they go untested
        for (which, condition) in [
            ("without tag_set", "tag_set IS NULL"),
            ("with a stale tag_set", "tag_set = chr(31) || 'stale=yes' || chr(31)"),
        ] {
            let matching: i64 = db
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    format!(
                        "SELECT count(*) FROM images i WHERE {condition} AND {}",
                        conditions.join(" AND ")
                    ),
                ))
                .await
                .unwrap()
                .unwrap()
                .try_get_by_index(0)
                .unwrap();
            assert!(
                filters == ["env=prod="] || matching > 0,
                "{filters:?}: no image {which} matches, so that case is untested"
            );
        }
    }
}

#[tokio::test]
async fn v2_query_plans_use_indexes_whatever_the_parameters() {
    let url = fresh_pg_database().await;
    let strata = strata_api::db::connect(&SecretString::from(url.clone()), Some(2))
        .await
        .unwrap();
    strata_api::db::migrate(&strata).await.unwrap();
    // one connection: PREPARE, SET and EXPLAIN EXECUTE must meet on the same session
    let mut opts = sea_orm::ConnectOptions::new(url.clone());
    opts.max_connections(1).min_connections(1).sqlx_logging(false);
    let db = Database::connect(opts).await.unwrap();
    seed(&db).await;
    check_results(&db).await;
    check_tag_results(&db).await;
    check_all(&db, "never analyzed").await;
    db.execute_unprepared("ANALYZE images; ANALYZE image_tags")
        .await
        .unwrap();
    check_all(&db, "after ANALYZE").await;
    db.close().await.ok();
}
