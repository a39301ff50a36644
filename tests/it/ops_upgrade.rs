//! Upgrades, with the real binary: a data directory written by an older
//! schema version opens, is migrated one step at a time (logged) and keeps
//! its accounts and conversations; one written by a newer confab is refused
//! with a sentence that says so, and is left untouched.
//!
//! The old-schema files are made the way the older binaries left them:
//! schema N has exactly the tables created by the migration steps up to N
//! (records never changed shape; new fields load with `serde(default)`),
//! so the fixture is a directory written by this binary with the tables of
//! later steps deleted and `meta.schema_version` set to N, using redb
//! directly.

use crate::common_upstream;
use crate::ops_support;

use common_upstream::FakeUpstream;
use ops_support::{Client, PASSWORD, confab, run, start, tempdir, write_config};
use redb::{Database, ReadableDatabase, TableDefinition, TableHandle};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Tables each migration step creates (`Store::migrate`, src/store/mod.rs):
/// `STEPS[n]` is the step from schema n to n + 1.
const STEPS: &[&[&str]] = &[
    &[
        "users",
        "users_by_name",
        "sessions",
        "sessions_by_user",
        "refresh_tokens",
        "refresh_families",
        "api_keys",
        "api_keys_by_user",
        "invites",
        "audit",
    ],
    &[
        "providers",
        "conversations",
        "conversations_by_user",
        "messages",
        "streaming_messages",
    ],
    &["search_outbox"],
    &["usage_daily", "usage_by_day"],
    &["acme"],
    &["usage_key_by_day", "usage_key_daily"],
    &["presets", "prompts", "server_settings", "user_settings"],
    &["model_settings"],
    &["upload_blobs", "upload_usage", "uploads", "uploads_by_user"],
    &[
        "collections",
        "collections_by_user",
        "doc_chunks",
        "doc_vectors",
        "documents",
        "documents_by_user",
    ],
    &[
        "identities",
        "identities_by_subject",
        "identities_by_user",
        "sso_states",
    ],
    &["one_time_tokens", "two_factor"],
    &["import_sources", "shares", "shares_by_user"],
    &["group_members", "groups", "groups_by_name", "user_groups"],
    &["import_jobs", "import_jobs_by_user"],
];

/// The schema version of this binary (`confab version --json`).
fn current_schema() -> u64 {
    let (out, _) = run(confab().args(["version", "--json"]), 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["schema_version"].as_u64().unwrap()
}

fn tables(db: &Path) -> Vec<String> {
    let db = Database::open(db).unwrap();
    let tx = db.begin_read().unwrap();
    let mut names: Vec<String> = tx
        .list_tables()
        .unwrap()
        .map(|t| t.name().to_string())
        .collect();
    names.sort();
    names
}

fn stored_schema(db: &Path) -> u64 {
    let db = Database::open(db).unwrap();
    let tx = db.begin_read().unwrap();
    let meta = tx.open_table(META).unwrap();
    let v = meta.get("schema_version").unwrap().unwrap();
    serde_json::from_slice(v.value()).unwrap()
}

/// Turns a stopped data directory's database into what schema `version`
/// looked like: the tables of later steps deleted, the version recorded.
fn make_schema(db_path: &Path, version: u64) {
    let later: Vec<&str> = STEPS[version as usize..].concat();
    let db = Database::open(db_path).unwrap();
    let tx = db.begin_write().unwrap();
    let doomed: Vec<_> = tx
        .list_tables()
        .unwrap()
        .filter(|t| later.contains(&t.name()))
        .collect();
    for t in doomed {
        assert!(tx.delete_table(t).unwrap());
    }
    tx.commit().unwrap();
    drop(db);
    set_schema_version(db_path, version);
}

/// (from, to) of every `migrating store schema` line the server logged.
fn migrations(srv: &ops_support::Server) -> Vec<(u64, u64)> {
    srv.logged("migrating store schema")
        .iter()
        .map(|v| {
            (
                v["fields"]["from"].as_u64().unwrap(),
                v["fields"]["to"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn deep_schema(base: &str) -> u64 {
    // /health/deep answers loopback callers.
    let v: Value = reqwest::get(format!("{base}/health/deep"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["store"]["ok"], true, "{v}");
    v["store"]["schema_version"].as_u64().unwrap()
}

fn stop(mut srv: ops_support::Server) {
    srv.signal("TERM");
    assert!(srv.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn the_fixture_matches_what_this_binary_writes() {
    // Guards the fixture: a fresh directory has exactly meta plus the tables
    // of every step, so a new table in a new migration step must be added to
    // STEPS before these tests can pass.
    let dir = tempdir();
    let data = dir.path().join("data");
    run(
        confab().arg("--data-dir").arg(&data).args(["user", "list"]),
        0,
    );
    let schema = current_schema();
    assert_eq!(
        STEPS.len() as u64,
        schema,
        "one STEPS entry per schema step"
    );
    let mut want: Vec<String> = STEPS.concat().iter().map(|s| s.to_string()).collect();
    want.push("meta".into());
    want.sort();
    let db = data.join("confab.redb");
    assert_eq!(tables(&db), want);
    assert_eq!(stored_schema(&db), schema);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_schema_migrates_and_keeps_accounts_and_conversations() {
    let up = FakeUpstream::start().await;
    up.set_reply("an answer written before the upgrade");
    let dir = tempdir();
    let (data, config) = (dir.path().join("data"), dir.path().join("confab.toml"));
    write_config(&config, &up.openai_base(), "");
    let db = data.join("confab.redb");
    let schema = current_schema();
    let previous = schema - 1;

    // The old version's directory: an admin, a conversation with its answer.
    let srv = start(&data, &config);
    let c = Client::setup(&srv, "admin").await;
    let (conv, text, done) = c
        .chat(None, "hello old schema", "fake-model")
        .await
        .unwrap();
    assert!(done && text == "an answer written before the upgrade");
    stop(srv);
    make_schema(&db, previous);
    assert_eq!(stored_schema(&db), previous);
    let before = tables(&db);

    // The new binary migrates it at start-up, before it listens.
    let srv = start(&data, &config);
    assert_eq!(migrations(&srv), vec![(previous, schema)]);
    assert_eq!(deep_schema(&srv.url).await, schema);
    let c = Client::login(&srv.url, "admin", PASSWORD)
        .await
        .expect("the admin signs in after the upgrade");
    let (s, v) = c.get(&format!("/api/conversations/{conv}")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["messages"][0]["content"], "hello old schema");
    assert_eq!(
        v["messages"][1]["content"],
        "an answer written before the upgrade"
    );
    assert_eq!(v["messages"][1]["status"], "complete");
    // And it works as a current directory.
    let (_, text, done) = c
        .chat(Some(&conv), "and after it?", "fake-model")
        .await
        .unwrap();
    assert!(done && !text.is_empty());
    stop(srv);

    let after = tables(&db);
    assert_eq!(stored_schema(&db), schema);
    let added: Vec<&String> = after.iter().filter(|t| !before.contains(t)).collect();
    assert_eq!(added, STEPS[previous as usize].iter().collect::<Vec<_>>());

    // A migrated directory is current: the next start migrates nothing.
    let srv = start(&data, &config);
    assert!(migrations(&srv).is_empty());
    stop(srv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_schema_migrates_one_step_at_a_time() {
    let up = FakeUpstream::start().await;
    up.set_reply("fresh tables work");
    let dir = tempdir();
    let (data, config) = (dir.path().join("data"), dir.path().join("confab.toml"));
    write_config(&config, &up.openai_base(), "");
    let db = data.join("confab.redb");
    let schema = current_schema();

    // Schema 1: accounts only (an admin made with the CLI).
    add_admin(&data, "alice");
    make_schema(&db, 1);
    let mut want: Vec<String> = STEPS[0].iter().map(|s| s.to_string()).collect();
    want.push("meta".into());
    want.sort();
    assert_eq!(tables(&db), want, "a schema 1 file has the accounts only");

    let srv = start(&data, &config);
    let steps: Vec<(u64, u64)> = (1..schema).map(|v| (v, v + 1)).collect();
    assert_eq!(migrations(&srv), steps);
    assert_eq!(deep_schema(&srv.url).await, schema);
    let c = Client::login(&srv.url, "alice", PASSWORD)
        .await
        .expect("alice signs in after the upgrade");
    let (s, me) = c.get("/api/auth/me").await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["user"]["role"], "admin", "{me}");
    // The tables the migrations created are usable: chat, search, usage.
    let (conv, text, done) = c.chat(None, "first message", "fake-model").await.unwrap();
    assert!(done && text == "fresh tables work");
    let (s, v) = c.get(&format!("/api/conversations/{conv}")).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = c.get("/api/usage").await;
    assert_eq!(s, 200, "{v}");
    stop(srv);
    assert_eq!(stored_schema(&db), schema);
}

/// Creates an admin with the CLI (which creates the directory if needed).
fn add_admin(data: &Path, name: &str) {
    let mut cmd = confab();
    cmd.arg("--data-dir").arg(data);
    ops_support::add_admin(cmd, name);
}

fn set_schema_version(db: &Path, version: u64) {
    let d = Database::open(db).unwrap();
    let tx = d.begin_write().unwrap();
    {
        let mut meta = tx.open_table(META).unwrap();
        meta.insert(
            "schema_version",
            serde_json::to_vec(&version).unwrap().as_slice(),
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

#[test]
fn a_data_dir_from_a_newer_confab_is_refused_and_left_alone() {
    let dir = tempdir();
    let (data, config) = (dir.path().join("data"), dir.path().join("confab.toml"));
    write_config(&config, "http://127.0.0.1:9/v1", "");
    let db = data.join("confab.redb");
    let schema = current_schema();
    add_admin(&data, "keeper");
    let newer = schema + 1;
    set_schema_version(&db, newer);
    let tables_before = tables(&db);

    let want = format!(
        "confab: the data directory {} was written by a newer confab (schema {newer}, this binary knows {schema}); upgrade confab",
        db.display()
    );
    // The server stops before it listens, exit status 2 ...
    let (_, err) = run(
        confab()
            .arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .args(["serve", "--listen", "127.0.0.1:0"]),
        2,
    );
    assert!(err.lines().any(|l| l == want), "{err}");
    assert!(!err.contains("\"listening\""), "{err}");
    // ... and so do the commands that open the directory.
    for args in [&["user", "list"][..], &["reindex"][..]] {
        let (_, err) = run(confab().arg("--data-dir").arg(&data).args(args), 2);
        assert!(err.lines().any(|l| l == want), "{args:?}: {err}");
    }
    // Nothing was migrated or dropped: the newer binary's file is intact.
    assert_eq!(stored_schema(&db), newer);
    assert_eq!(tables(&db), tables_before);
    set_schema_version(&db, schema);
    let (out, _) = run(
        confab().arg("--data-dir").arg(&data).args(["user", "list"]),
        0,
    );
    assert!(out.contains("keeper"), "{out}");
}
