//! confab on PostgreSQL: the real server with `store = "postgres://…"` on
//! the test cluster (`common::pg`), start-up migrations run by several
//! processes at once, and the CLI's answers for what only a file store does.
//! The store contract itself runs in `store_contract::on_postgres`.

use crate::common::{self, Auth, PASSWORD, TestServer, chat_server, pg};
use crate::search::{say, until_hits};
use confab::config::StoreUrl;
use confab::store::postgres::SCHEMA_VERSION;

fn on(url: &str) -> impl FnOnce(&mut confab::config::Config) + use<> {
    let url = url.to_string();
    move |c| c.store = Some(StoreUrl(url))
}

#[tokio::test]
async fn setup_login_chat_and_search_survive_a_restart() {
    let url = pg::fresh_url().await;
    let (s, up, admin) = chat_server(&["fake-model"], on(&url)).await;
    let bob = s.user(&admin, "bob").await;
    let meta = say(&s, &bob, None, "Where is the tachyon emitter kept?").await;
    let conv = meta["conversation_id"].as_str().unwrap().to_string();
    until_hits(&s, &bob, "tachyon", 1).await;
    let answer = up.reply_for("fake-model");
    let r = s
        .get(&format!("/api/conversations/{conv}"), Auth::Session(&bob))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let msgs = r.body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{}", r.text);
    assert_eq!(msgs[1]["content"], answer.as_str());
    assert_eq!(msgs[1]["status"], "complete");
    // Another user's conversation is not found, here as on redb.
    let r = s
        .get(&format!("/api/conversations/{conv}"), Auth::Session(&admin))
        .await;
    r.assert_error(404, "CONVERSATION_NOT_FOUND");
    let health = s.get("/health/deep", Auth::None).await;
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.body["store"]["schema_version"], SCHEMA_VERSION);
    // The file-only backup answers with what to use instead.
    let r = s.get("/api/admin/backup", Auth::Session(&admin)).await;
    r.assert_error(409, "CONFLICT");
    assert!(
        r.body["message"].as_str().unwrap().contains("pg_dump"),
        "{}",
        r.text
    );

    let dir = s.stop().await;
    // Nothing of the records stayed in the data directory.
    assert!(!dir.path().join("confab.redb").exists());
    let s = TestServer::start_in(dir, on(&url)).await;
    assert!(s.state().setup_url().is_none(), "setup stays done");
    let bob = s.login("bob", PASSWORD).await;
    let list = s.get("/api/conversations", Auth::Session(&bob)).await;
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", list.text);
    assert_eq!(items[0]["id"], conv.as_str());
    until_hits(&s, &bob, "tachyon", 1).await;
    // A new turn after the restart lands in the same conversation.
    up.register_openai(s.state(), &["fake-model"]);
    say(&s, &bob, Some(&conv), "And the flux capacitor?").await;
    until_hits(&s, &bob, "capacitor", 1).await;
    let r = s
        .get(&format!("/api/conversations/{conv}"), Auth::Session(&bob))
        .await;
    assert_eq!(
        r.body["messages"].as_array().unwrap().len(),
        4,
        "{}",
        r.text
    );
}

/// Three processes starting on one empty database at once: each migration
/// waits for the advisory lock, the first creates the schema, the others
/// find it done; every store works.
#[tokio::test]
async fn three_stores_opening_an_empty_database_at_once_migrate_it_once() {
    let url = pg::fresh_url().await;
    let settings = pg::settings(&url);
    let opened = futures::future::join_all(
        (0..3).map(|_| confab::store::postgres::PgStore::open(&settings)),
    )
    .await;
    let stores: Vec<_> = opened
        .into_iter()
        .map(|r| r.expect("every store opens"))
        .collect();
    for s in &stores {
        use confab::store::StoreHealth;
        assert_eq!(s.schema_version().await.unwrap(), SCHEMA_VERSION);
        s.probe(1).await.unwrap();
    }
    // One row per step: no step ran twice.
    let steps = pg::count(&url, "SELECT count(*) FROM schema_version").await;
    assert_eq!(steps, SCHEMA_VERSION as i64);
    // And once more, now that it is up to date.
    confab::store::postgres::PgStore::open(&settings)
        .await
        .unwrap();
    assert_eq!(
        pg::count(&url, "SELECT count(*) FROM schema_version").await,
        SCHEMA_VERSION as i64
    );
}

/// A database written by a newer confab is refused with a sentence, and
/// the password in the URL never shows.
#[tokio::test]
async fn a_newer_schema_is_refused_and_errors_hide_the_password() {
    let url = pg::fresh_url().await;
    pg::open(&url).await;
    pg::exec(
        &url,
        "INSERT INTO schema_version (version, confab_version) VALUES (999, 'future')",
    )
    .await;
    let e = confab::store::postgres::PgStore::open(&pg::settings(&url))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("newer confab") && e.contains("999"), "{e}");

    // An unreachable database: the error names it, never the password.
    let mut cfg = common::test_config(&std::env::temp_dir());
    cfg.store = Some(StoreUrl(
        "postgres://confab:secret-42@127.0.0.1:1/confab?sslmode=disable&connect_timeout=5".into(),
    ));
    assert!(!format!("{cfg:?}").contains("secret-42"));
    let e = match confab::store::open(&cfg).await {
        Ok(_) => panic!("nothing listens on port 1"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("127.0.0.1:1"), "{e}");
    assert!(!e.contains("secret-42"), "{e}");
}

/// Each sslmode does what libpq's does, with rustls: verify-full checks
/// the chain and the name, verify-ca only the chain, require encrypts
/// without checking; the connections really are TLS.
#[tokio::test]
async fn tls_follows_sslmode_and_sslrootcert() {
    let c = pg::cluster();
    let plain = pg::fresh_url().await;
    let base = plain.trim_end_matches("?sslmode=disable").to_string();
    let db = base.rsplit('/').next().unwrap().to_string();
    let by_name = base.replace("127.0.0.1", "localhost");
    let ca = c.dir.join("ca.pem").display().to_string();
    let tls_sessions = format!(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid
         WHERE a.datname = '{db}' AND s.ssl"
    );
    for url in [
        format!("{by_name}?sslmode=verify-full&sslrootcert={ca}"),
        format!("{base}?sslmode=verify-ca&sslrootcert={ca}"),
        format!("{base}?sslmode=require"),
        format!("{base}?sslmode=prefer"),
    ] {
        let store = confab::store::postgres::PgStore::open(&pg::settings(&url))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(
            pg::count(&plain, &tls_sessions).await >= 1,
            "{url}: not TLS"
        );
        drop(store);
    }
    for (url, why) in [
        (
            format!("{base}?sslmode=verify-full&sslrootcert={ca}"),
            "the certificate names localhost, not 127.0.0.1",
        ),
        (
            format!("{by_name}?sslmode=verify-full"),
            "the system roots do not know the test CA",
        ),
        (
            format!("{base}?sslmode=verify-ca"),
            "the system roots do not know the test CA",
        ),
    ] {
        match confab::store::postgres::PgStore::open(&pg::settings(&url)).await {
            Ok(_) => panic!("{url} connected although {why}"),
            Err(e) => assert!(e.to_string().contains("TLS"), "{url}: {e}"),
        }
    }
}

/// A multi-host URL: the first host does not answer, the second is the
/// writable server; `target_session_attrs=read-write` takes it.
#[tokio::test]
async fn a_multi_host_url_finds_the_server_that_answers() {
    let c = pg::cluster();
    let plain = pg::fresh_url().await;
    let db = plain
        .trim_end_matches("?sslmode=disable")
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let url = format!(
        "postgres://postgres@127.0.0.1:1,127.0.0.1:{}/{db}?target_session_attrs=read-write&sslmode=disable",
        c.port
    );
    let store = pg::open(&url).await;
    assert_eq!(store.user_count().await.unwrap(), 0);
}

/// `confab store copy`: a redb data directory with every kind of record
/// and a few thousand messages (COPY_TEST_MESSAGES, default 3000; the
/// 10,000-message run in docs/OPERATIONS.md set it) goes into an empty
/// database, every table verified; the source file is not changed; a second
/// copy into the now non-empty database is refused.
#[tokio::test]
async fn store_copy_moves_a_data_directory_and_verifies_every_table() {
    let messages: usize = std::env::var("COPY_TEST_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let dir = tempfile::tempdir().unwrap();
    let src = confab::store::redb::RedbStore::open_shared(dir.path()).unwrap();
    let people = fill(&*src, messages).await;
    drop(src);
    let before = std::fs::read(dir.path().join("confab.redb")).unwrap();

    let url = pg::fresh_url().await;
    let started = std::time::Instant::now();
    let out = common::proc::confab()
        .args(["store", "copy", "--from"])
        .arg(dir.path())
        .args(["--to", &url])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    eprintln!(
        "store copy of {messages} messages: {:?}\n{stdout}",
        started.elapsed()
    );
    assert!(stdout.contains("every table verified"), "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("messages "))
        .expect("a line for the messages table");
    assert_eq!(
        row.split_whitespace().nth(1),
        Some((messages + 2).to_string().as_str()),
        "{stdout}"
    );
    // The source is exactly as it was: pointing back at it is the rollback.
    assert!(std::fs::read(dir.path().join("confab.redb")).unwrap() == before);

    // Both stores answer alike, read through the traits.
    let pgs = pg::open(&url).await;
    let src = confab::store::redb::RedbStore::open_shared(dir.path()).unwrap();
    same_answers(&*src, &*pgs, &people).await;
    same_imports(&*src, &*pgs, &people[1]).await;

    // Into a database that holds data: refused, in a sentence.
    let again = common::proc::confab()
        .args(["store", "copy", "--from"])
        .arg(dir.path())
        .args(["--to", &url])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("is not empty") && err.contains("users: 2"),
        "{err}"
    );

    // On PostgreSQL, the file backup points to pg_dump, and check-config
    // names the database without its password.
    let with_pw = url.replace("postgres@", "postgres:pw-secret-7@");
    let backup = common::proc::confab()
        .arg("--data-dir")
        .arg(dir.path())
        .args(["backup", "x.redb"])
        .env("CONFAB_STORE", &with_pw)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&backup.stderr);
    assert!(!backup.status.success() && err.contains("pg_dump"), "{err}");
    assert!(!err.contains("pw-secret-7"), "{err}");
    let check = common::proc::confab()
        .arg("--data-dir")
        .arg(dir.path())
        .arg("check-config")
        .env("CONFAB_STORE", &with_pw)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{said}");
    assert!(said.contains("store PostgreSQL database t_"), "{said}");
    assert!(!said.contains("pw-secret-7"), "{said}");
}

/// `confab store copy` of a data directory a server used for files: an
/// uploaded image with its thumbnail, a PDF read into chunks and a
/// knowledge collection go into the database, records and bytes (the
/// "blobs" line counts the three blob files, each hashed again as the
/// database holds it). The server on PostgreSQL then serves the image and
/// its thumbnail from the database, lists the collection and answers a
/// question from it with the page as its source.
#[tokio::test]
async fn store_copy_moves_files_documents_and_collections() {
    use crate::files::{png, raw_get, uploaded};
    use crate::knowledge::{forty_pages, until_read};
    use confab::knowledge::extract::samples;
    use serde_json::json;
    let (s, up, admin) = chat_server(&["gpt-test"], |_| {}).await;
    let image = png(640, 480);
    let img = uploaded(&s, &admin, "chart.png", &image).await;
    let thumb = raw_get(&s, &admin, &format!("/api/files/{img}/thumbnail")).await;
    assert_eq!(thumb.status(), 200);
    let thumb = thumb.bytes().await.unwrap();
    let pdf = samples::pdf(&forty_pages());
    let fid = uploaded(&s, &admin, "annual-report.pdf", &pdf).await;
    let r = s
        .post(
            "/api/collections",
            Auth::Session(&admin),
            json!({"name": "Reports", "file_ids": [fid]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let col = r.body["id"].as_str().unwrap().to_string();
    let doc = until_read(&s, &admin, &fid).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    let chunks = doc["chunks"].as_u64().unwrap();
    let dir = s.stop().await;

    // A damaged blob file (its bytes no longer its address) stops the copy
    // and nothing is committed: the same database takes the good copy next.
    let url = pg::fresh_url().await;
    let damaged = tempfile::tempdir().unwrap();
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(dir.path().join("."))
        .arg(damaged.path())
        .status()
        .unwrap();
    assert!(cp.success());
    let pdf_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&pdf))
    };
    let blob = damaged
        .path()
        .join("blobs")
        .join(&pdf_sha[0..2])
        .join(&pdf_sha[2..4])
        .join(&pdf_sha);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    let out = common::proc::confab()
        .args(["store", "copy", "--from"])
        .arg(damaged.path())
        .args(["--to", &url])
        .current_dir(damaged.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("does not hold the content its name says")
            && err.contains("nothing was committed"),
        "{err}"
    );

    let out = common::proc::confab()
        .args(["store", "copy", "--from"])
        .arg(dir.path())
        .args(["--to", &url])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let rows = |table: &str| -> Option<u64> {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(table))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
    };
    assert_eq!(rows("uploads"), Some(2), "{stdout}");
    assert_eq!(rows("upload_usage"), Some(1), "{stdout}");
    assert_eq!(rows("documents"), Some(1), "{stdout}");
    assert_eq!(rows("doc_chunks"), Some(chunks), "{stdout}");
    assert_eq!(rows("collections"), Some(1), "{stdout}");
    assert_eq!(rows("blobs"), Some(3), "{stdout}");
    assert!(stdout.contains("every table verified"), "{stdout}");

    // The server on the database, its own blob files set aside: what it
    // serves comes from PostgreSQL.
    std::fs::rename(
        dir.path().join("blobs"),
        dir.path().join("blobs.before-copy"),
    )
    .unwrap();
    let s = TestServer::start_in(dir, on(&url)).await;
    up.register_openai(s.state(), &["gpt-test"]);
    let admin = s.login("admin", PASSWORD).await;
    let d = raw_get(&s, &admin, &format!("/api/files/{img}/content")).await;
    assert_eq!(d.status(), 200);
    assert!(d.bytes().await.unwrap()[..] == image[..]);
    let t = raw_get(&s, &admin, &format!("/api/files/{img}/thumbnail")).await;
    assert_eq!(t.status(), 200);
    assert_eq!(t.bytes().await.unwrap(), thumb);
    let r = s
        .get(&format!("/api/collections/{col}"), Auth::Session(&admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["name"], "Reports");
    assert_eq!(r.body["documents"][0]["file_id"], fid.as_str());
    let r = s
        .get(&format!("/api/documents/{fid}"), Auth::Session(&admin))
        .await;
    assert_eq!(r.body["status"], "ready", "{}", r.text);

    // A question answered from the collection, with page 3 as its source,
    // once the new instance has built its indexes from the database.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = s.get("/api/search?q=report", Auth::Session(&admin)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if r.body["partial"] == false {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never indexed");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let r = s
        .post("/api/conversations", Auth::Session(&admin), json!({}))
        .await;
    let conv = r.body["id"].as_str().unwrap().to_string();
    let r = s
        .patch(
            &format!("/api/conversations/{conv}"),
            Auth::Session(&admin),
            json!({"collections": [col]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let resp = s
        .http
        .post(s.url("/api/chat/stream"))
        .header("cookie", format!("confab_session={}", admin.cookie))
        .header("x-csrf-token", &admin.csrf)
        .json(&json!({
            "conversation_id": conv,
            "content": "What is the launch code of project Bluebird?",
            "model": "gpt-test"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = common::SseReader::new(resp).collect().await;
    let done = events.last().unwrap();
    assert_eq!(done.event, "done", "{:?}", done.data);
    let sources = done.data["sources"]
        .as_array()
        .unwrap_or_else(|| panic!("no sources: {events:?}"));
    assert!(
        sources
            .iter()
            .any(|src| src["page_start"] == 3
                && src["snippet"].as_str().unwrap_or("").contains("7391")),
        "{}",
        done.data
    );
}

/// Fills `s` with every kind of record; `messages` messages in 30-message
/// conversations, plus one turn still streaming. Returns the two users.
async fn fill(s: &dyn confab::store::Store, messages: usize) -> Vec<confab::store::User> {
    use confab::store::chat::*;
    use confab::store::*;
    let now = 1_750_000_000;
    let mut users = Vec::new();
    for (name, role) in [("root", Role::Admin), ("Bob", Role::User)] {
        let u = User {
            id: uuid::Uuid::now_v7(),
            username: name.into(),
            email: Some(format!("{name}@example.test")),
            email_verified: false,
            password_hash: "$argon2id$fake".into(),
            role,
            status: UserStatus::Active,
            created_at: now,
            updated_at: now,
            quota: Some(QuotaOverride {
                messages_per_day: Some(7),
                tokens_per_day: None,
                storage_bytes: None,
            }),
        };
        s.create_user(&u, false, None, now).await.unwrap();
        users.push(u);
    }
    let (root, bob) = (&users[0], &users[1]);
    s.put_session(
        b"session-hash",
        &Session {
            id: uuid::Uuid::now_v7(),
            user_id: bob.id,
            created_at: now,
            last_seen: now,
            expires_at: now + 3600,
            ip: Some("192.0.2.1".into()),
            user_agent: None,
            csrf_secret: "csrf".into(),
        },
    )
    .await
    .unwrap();
    s.put_refresh(
        &[1, 2, 3],
        &RefreshToken {
            user_id: bob.id,
            family_id: uuid::Uuid::now_v7(),
            expires_at: now + 100,
            used: false,
            created_at: now,
        },
    )
    .await
    .unwrap();
    let key = uuid::Uuid::now_v7();
    s.put_api_key(
        &[9, 9, 9],
        &ApiKey {
            id: key,
            user_id: bob.id,
            name: "laptop".into(),
            scopes: vec!["chat".into()],
            expires_at: None,
            last_used_at: Some(now),
            created_at: now,
            prefix: "cfb_x".into(),
        },
    )
    .await
    .unwrap();
    s.put_invite(&Invite {
        code: "inv-copy".into(),
        created_by: Some(root.id),
        created_at: now,
        expires_at: now + 60,
        uses_left: 2,
        role: Role::User,
    })
    .await
    .unwrap();
    for i in 0..25 {
        s.append_audit(&AuditEntry {
            id: uuid::Uuid::now_v7(),
            at: now + i,
            actor: Some(root.id),
            actor_name: Some("root".into()),
            action: "login".into(),
            target: None,
            ip: None,
            user_agent: None,
            outcome: "ok".into(),
        })
        .await
        .unwrap();
    }
    for (i, day) in [20250101u32, 20250102].iter().enumerate() {
        let c = confab::store::usage::Charge {
            provider: "oa".into(),
            model: format!("m{i}"),
            messages: 1,
            input_tokens: 10,
            output_tokens: 20,
            cost_nanos: 1234,
            api_key: Some(key),
        };
        s.charge_usage(bob.id, *day, &c).await.unwrap();
        s.charge_usage(root.id, *day, &c).await.unwrap();
    }
    s.put_preset(&confab::store::presets::Preset {
        id: uuid::Uuid::now_v7(),
        owner: None,
        name: "Shared".into(),
        description: String::new(),
        model: Some("m".into()),
        system_prompt: Some("be brief".into()),
        params: confab::store::presets::PresetParams {
            temperature: Some(0.7),
            max_tokens: None,
            top_p: Some(0.9),
        },
        created_by: root.id,
        created_at: now,
        updated_at: now,
    })
    .await
    .unwrap();
    s.put_prompt(&confab::store::presets::SavedPrompt {
        id: uuid::Uuid::now_v7(),
        owner: Some(bob.id),
        title: "Summarize".into(),
        command: "sum".into(),
        text: "Summarize this.".into(),
        created_by: bob.id,
        created_at: now,
        updated_at: now,
    })
    .await
    .unwrap();
    s.put_user_settings(
        bob.id,
        &confab::store::presets::UserSettings {
            custom_instructions: Some("metric units".into()),
            updated_at: now,
        },
    )
    .await
    .unwrap();
    s.put_branding(&confab::store::presets::Branding {
        server_name: Some("Copied".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    s.put_model_setting(&confab::store::model_settings::ModelSetting {
        model: "m0".into(),
        hidden: true,
        display_name: None,
        description: None,
        price: None,
        vision: None,
        updated_at: now,
    })
    .await
    .unwrap();
    s.set_default_model(Some("m0")).await.unwrap();
    // A second factor and the policy travel too (one-time tokens do not).
    s.put_two_factor(&confab::store::security::TwoFactor {
        user_id: users[0].id,
        secret: vec![9; 20],
        enabled: true,
        created_at: now,
        enabled_at: Some(now),
        last_step: 57_000_000,
        recovery: vec![confab::store::security::RecoveryCode {
            hash: "ab".repeat(32),
            used_at: None,
        }],
    })
    .await
    .unwrap();
    s.create_share(&confab::store::shares::Share {
        id: uuid::Uuid::now_v7(),
        token: "share-copy-token".into(),
        user_id: root.id,
        conversation_id: uuid::Uuid::now_v7(),
        title: "Shared".into(),
        model: None,
        signed_in_only: true,
        created_at: now,
        messages: vec![confab::store::shares::SharedMessage {
            role: confab::store::chat::MessageRole::User,
            content: "copied".into(),
            model: None,
            created_at: now,
            attachments: Vec::new(),
        }],
    })
    .await
    .unwrap();
    s.set_two_factor_policy(confab::store::security::TwoFactorPolicy::Admins)
        .await
        .unwrap();
    // Two groups, one with a member, models and a quota default.
    for (name, models) in [("Staff", vec!["gpt-4o".to_string()]), ("empty", vec![])] {
        let g = confab::store::groups::Group {
            id: uuid::Uuid::now_v7(),
            name: name.into(),
            models,
            providers: vec!["local".into()],
            quota: Some(QuotaOverride {
                messages_per_day: Some(7),
                tokens_per_day: None,
                storage_bytes: Some(0),
            }),
            created_at: now,
            updated_at: now,
        };
        s.create_group(&g).await.unwrap();
        if name == "Staff" {
            s.add_group_member(g.id, root.id).await.unwrap();
        }
    }
    s.put_acme_account(&confab::store::acme::AcmeAccountRecord {
        directory: "https://acme.test/dir".into(),
        credentials: serde_json::json!({"id": "acct", "key": "k"}),
        email: None,
        created_at: now,
    })
    .await
    .unwrap();
    // The messages, in whole conversations of 30, imported in groups.
    let mut left = messages;
    let mut t = 1_000u64;
    while left > 0 {
        let mut group = Vec::new();
        for _ in 0..10 {
            if left == 0 {
                break;
            }
            let n = left.min(30);
            left -= n;
            t += 1;
            let c = Conversation {
                id: uuid::Uuid::now_v7(),
                user_id: if t.is_multiple_of(2) { bob.id } else { root.id },
                title: format!("conversation {t}"),
                title_auto: false,
                model: Some("m0".into()),
                provider: Some("oa".into()),
                system_prompt: None,
                created_at: now,
                updated_at_ms: t,
                pinned: t.is_multiple_of(7),
                archived: t.is_multiple_of(11),
                current_leaf: None,
                preset_id: None,
                params: ModelParams {
                    temperature: Some(0.3),
                    max_tokens: Some(100),
                    top_p: None,
                },
                collections: Vec::new(),
            };
            let mut parent = None;
            let msgs: Vec<Message> = (0..n)
                .map(|i| {
                    let m = Message {
                        id: uuid::Uuid::now_v7(),
                        conversation_id: c.id,
                        parent_id: parent,
                        role: if i % 2 == 0 {
                            MessageRole::User
                        } else {
                            MessageRole::Assistant
                        },
                        content: format!("message {i} of conversation {t}: ünïcödé ✓"),
                        model: None,
                        provider: None,
                        status: MessageStatus::Complete,
                        usage: (i % 2 == 1).then_some(Usage {
                            input_tokens: 3,
                            output_tokens: 4,
                            estimated: false,
                        }),
                        created_at: now,
                        duration_ms: Some(5),
                        finish_reason: None,
                        error: None,
                        attachments: Vec::new(),
                        sources: Vec::new(),
                    };
                    parent = Some(m.id);
                    m
                })
                .collect();
            group.push((c, msgs));
        }
        s.import_conversations(&group).await.unwrap();
    }
    // A turn still streaming when the server stopped.
    let c = Conversation {
        id: uuid::Uuid::now_v7(),
        user_id: bob.id,
        title: "New chat".into(),
        title_auto: true,
        model: None,
        provider: None,
        system_prompt: None,
        created_at: now,
        updated_at_ms: 1,
        pinned: false,
        archived: false,
        current_leaf: None,
        preset_id: None,
        params: Default::default(),
        collections: Vec::new(),
    };
    let q = Message {
        id: uuid::Uuid::now_v7(),
        conversation_id: c.id,
        parent_id: None,
        role: MessageRole::User,
        content: "still answering?".into(),
        model: None,
        provider: None,
        status: MessageStatus::Complete,
        usage: None,
        created_at: now,
        duration_ms: None,
        finish_reason: None,
        error: None,
        attachments: Vec::new(),
        sources: Vec::new(),
    };
    let a = Message {
        id: uuid::Uuid::now_v7(),
        parent_id: Some(q.id),
        role: MessageRole::Assistant,
        content: String::new(),
        status: MessageStatus::Streaming,
        ..q.clone()
    };
    s.start_turn(bob.id, Some(&c), None, Default::default(), Some(&q), &a)
        .await
        .unwrap();
    s.flush_partials(&[(c.id, a.id, "half an ans".into())])
        .await
        .unwrap();
    // A conversation imported from another app's export (its source key
    // travels: importing the file again after the move adds nothing), and
    // the import job that did it.
    let from_chatgpt = Conversation {
        id: uuid::Uuid::now_v7(),
        user_id: bob.id,
        title: "From ChatGPT".into(),
        ..c.clone()
    };
    s.import_sourced(
        bob.id,
        &[(Some("chatgpt:copy-1".into()), from_chatgpt, Vec::new())],
    )
    .await
    .unwrap();
    s.put_import_job(&confab::store::import_jobs::ImportJobRecord {
        id: uuid::Uuid::now_v7(),
        user_id: bob.id,
        status: confab::store::import_jobs::ImportJobStatus::Done,
        runner: Some(uuid::Uuid::now_v7()),
        file_name: Some("conversations.json".into()),
        created_at: now,
        updated_at: now + 3,
        progress: 1.0,
        bytes_total: 1234,
        imported: 1,
        skipped: 0,
        error: None,
        report: Some(serde_json::json!({"imported": [{"source_id": "copy-1", "title": "From ChatGPT"}], "skipped": []})),
    })
    .await
    .unwrap();
    users
}

/// What was imported from other apps, and the import jobs, came along:
/// the same source is `Existing` in the same conversation on both stores.
async fn same_imports(
    a: &dyn confab::store::Store,
    b: &dyn confab::store::Store,
    bob: &confab::store::User,
) {
    use confab::store::shares::Sourced;
    let jobs = a.list_import_jobs(bob.id).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs, b.list_import_jobs(bob.id).await.unwrap());
    let probe = |s: &'static str| confab::store::chat::Conversation {
        id: uuid::Uuid::now_v7(),
        user_id: bob.id,
        title: s.into(),
        title_auto: false,
        model: None,
        provider: None,
        system_prompt: None,
        created_at: 1_750_000_000,
        updated_at_ms: 1,
        pinned: false,
        archived: false,
        current_leaf: None,
        preset_id: None,
        params: Default::default(),
        collections: Vec::new(),
    };
    let x = a
        .import_sourced(
            bob.id,
            &[(Some("chatgpt:copy-1".into()), probe("again"), Vec::new())],
        )
        .await
        .unwrap();
    let y = b
        .import_sourced(
            bob.id,
            &[(Some("chatgpt:copy-1".into()), probe("again"), Vec::new())],
        )
        .await
        .unwrap();
    assert!(matches!(x[..], [Sourced::Existing(_)]), "{x:?}");
    assert_eq!(x, y);
}

/// The same reads give the same answers on both stores.
async fn same_answers(
    a: &dyn confab::store::Store,
    b: &dyn confab::store::Store,
    users: &[confab::store::User],
) {
    use confab::store::chat::ConversationFilter;
    let j = |v: &dyn erased::Json| v.json();
    assert_eq!(a.user_count().await.unwrap(), b.user_count().await.unwrap());
    assert_eq!(
        a.two_factor_policy().await.unwrap(),
        b.two_factor_policy().await.unwrap()
    );
    assert_eq!(
        a.list_groups().await.unwrap(),
        b.list_groups().await.unwrap()
    );
    for u in users {
        assert_eq!(
            a.user_groups(u.id).await.unwrap(),
            b.user_groups(u.id).await.unwrap(),
            "groups of {}",
            u.username
        );
    }
    for u in users {
        let (x, y) = (
            a.get_two_factor(u.id).await.unwrap(),
            b.get_two_factor(u.id).await.unwrap(),
        );
        assert_eq!(x, y, "two-factor record of {}", u.username);
    }
    assert_eq!(
        a.message_count().await.unwrap(),
        b.message_count().await.unwrap()
    );
    assert_eq!(a.outbox_len().await.unwrap(), b.outbox_len().await.unwrap());
    for u in users {
        let found = b
            .find_user_by_name(&u.username.to_uppercase())
            .await
            .unwrap();
        assert_eq!(found.map(|x| x.id), Some(u.id));
        assert_eq!(
            j(&a.list_api_keys(u.id).await.unwrap()),
            j(&b.list_api_keys(u.id).await.unwrap())
        );
        assert_eq!(
            a.usage_of_user(u.id, 20250101, 20250131).await.unwrap(),
            b.usage_of_user(u.id, 20250101, 20250131).await.unwrap()
        );
        assert_eq!(
            a.usage_by_key(Some(u.id), 20250101, 20250131)
                .await
                .unwrap(),
            b.usage_by_key(Some(u.id), 20250101, 20250131)
                .await
                .unwrap()
        );
        assert_eq!(
            j(&a.list_presets(u.id).await.unwrap()),
            j(&b.list_presets(u.id).await.unwrap())
        );
        assert_eq!(
            j(&a.list_prompts(u.id).await.unwrap()),
            j(&b.list_prompts(u.id).await.unwrap())
        );
        assert_eq!(
            j(&a.get_user_settings(u.id).await.unwrap()),
            j(&b.get_user_settings(u.id).await.unwrap())
        );
        for filter in [
            ConversationFilter::default(),
            ConversationFilter {
                archived: Some(true),
                pinned: None,
            },
        ] {
            assert_eq!(
                j(&a.list_conversations(u.id, None, filter, 1000)
                    .await
                    .unwrap()),
                j(&b.list_conversations(u.id, None, filter, 1000)
                    .await
                    .unwrap())
            );
        }
        let ids = a.conversation_ids(u.id).await.unwrap();
        assert_eq!(ids, b.conversation_ids(u.id).await.unwrap());
        for id in ids.iter().take(5) {
            assert_eq!(
                j(&a.conversation_with_messages(u.id, *id).await.unwrap()),
                j(&b.conversation_with_messages(u.id, *id).await.unwrap())
            );
        }
    }
    assert_eq!(
        j(&a.list_audit(None, 100).await.unwrap()),
        j(&b.list_audit(None, 100).await.unwrap())
    );
    assert_eq!(
        j(&a.get_branding().await.unwrap()),
        j(&b.get_branding().await.unwrap())
    );
    assert_eq!(
        a.default_model().await.unwrap(),
        b.default_model().await.unwrap()
    );
    assert_eq!(
        j(&a.list_model_settings().await.unwrap()),
        j(&b.list_model_settings().await.unwrap())
    );
    assert_eq!(
        j(&a.get_invite("inv-copy").await.unwrap()),
        j(&b.get_invite("inv-copy").await.unwrap())
    );
    assert_eq!(
        j(&a.share_by_token("share-copy-token").await.unwrap()),
        j(&b.share_by_token("share-copy-token").await.unwrap())
    );
    assert_eq!(
        j(&a.get_session(b"session-hash").await.unwrap()),
        j(&b.get_session(b"session-hash").await.unwrap())
    );
    // The answer left streaming is found by either store's recovery.
    assert_eq!(b.recover_streaming().await.unwrap(), 1);
}

mod erased {
    /// Any stored record as JSON, to compare records by every field.
    pub trait Json {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap()
        }
    }
}

/// Upload and download throughput of a 20 MB file through the blob store
/// on the local disk and in PostgreSQL (1 MiB chunks), through the
/// `BlobStore` trait the files service uses: stage (hashing) + commit, then
/// a streamed read. Prints the figures docs/ARCHITECTURE.md quotes ("Files
/// on several instances"); asserts the bytes come back unchanged.
#[tokio::test]
async fn blob_store_throughput_of_a_20_mb_file_local_and_postgres() {
    use confab::store::blobs::{BlobStore, LocalBlobs};
    use futures::StreamExt;
    use std::sync::Arc;
    use std::time::Instant;
    const SIZE: usize = 20 * 1000 * 1000;
    let content: Arc<Vec<u8>> = Arc::new(
        (0..SIZE as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
    );
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn BlobStore> = Arc::new(LocalBlobs::open(dir.path()).unwrap());
    let (pgs, _db) = pg::fresh().await;
    let shared = pgs
        .shared_blobs()
        .expect("PostgreSQL brings a shared blob store");
    for (name, b) in [("local disk", local), ("PostgreSQL", shared)] {
        let mut up = Vec::new();
        let mut down = Vec::new();
        for round in 0..3u8 {
            // A different file each round (nothing is deduplicated).
            let mut bytes = (*content).clone();
            bytes[0] = round;
            let body = futures::stream::iter(
                bytes
                    .chunks(64 * 1024)
                    .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                    .collect::<Vec<_>>(),
            )
            .boxed();
            let started = Instant::now();
            let staged = b.stage(body).await.unwrap();
            let hold = b.commit(staged).await.unwrap();
            up.push(started.elapsed());
            let sha = hold.sha256.clone();
            b.release(hold).await.unwrap();
            let started = Instant::now();
            let (stream, len) = b.open(&sha).await.unwrap();
            assert_eq!(len, SIZE as u64);
            let mut got = Vec::with_capacity(SIZE);
            futures::pin_mut!(stream);
            while let Some(c) = stream.next().await {
                got.extend_from_slice(&c.unwrap());
            }
            down.push(started.elapsed());
            assert!(got == bytes, "{name}: the file came back changed");
            b.delete(&sha).await.unwrap();
        }
        up.sort();
        down.sort();
        let mbs = |d: std::time::Duration| SIZE as f64 / 1e6 / d.as_secs_f64();
        eprintln!(
            "blob store on {name}: 20 MB upload {:.0} MB/s, download {:.0} MB/s (median of 3; {:?} / {:?})",
            mbs(up[1]),
            mbs(down[1]),
            up[1],
            down[1]
        );
    }
}

/// An instance that kept files on its own disk (on PostgreSQL before the
/// shared blob store) copies them into the database at start, verified,
/// and sets its `blobs` directory aside; its files are then served from
/// the database by any instance.
#[tokio::test]
async fn an_instance_brings_the_files_on_its_disk_into_the_database() {
    use confab::store::blobs::{ADOPTED_DIR, BlobStore, LocalBlobs};
    let url = pg::fresh_url().await;
    let dir = tempfile::tempdir().unwrap();
    let local = LocalBlobs::open(dir.path()).unwrap();
    let mut shas = Vec::new();
    for content in [&b"first file"[..], &vec![7u8; 3 * 1024 * 1024][..]] {
        let hold = local
            .put_bytes(bytes::Bytes::copy_from_slice(content))
            .await
            .unwrap();
        shas.push((hold.sha256.clone(), content.to_vec()));
    }
    // The files those blobs belong to: without records, the start-up
    // garbage collection would rightly remove the adopted blobs.
    {
        use confab::store::UploadStore;
        let store = confab::store::postgres::PgStore::open(&pg::settings(&url))
            .await
            .unwrap();
        let owner = uuid::Uuid::now_v7();
        for (sha, content) in &shas {
            let u = confab::store::uploads::Upload {
                id: uuid::Uuid::now_v7(),
                owner,
                name: "kept.bin".into(),
                mime: "application/octet-stream".into(),
                size: content.len() as u64,
                sha256: sha.clone(),
                created_at: 1_700_000_000,
                width: None,
                height: None,
                thumbnail: None,
            };
            store.create_upload(&u, None).await.unwrap();
        }
    }
    let s = TestServer::start_in(dir, on(&url)).await;
    let shared = s.state().files.blobs().clone();
    for (sha, content) in &shas {
        assert!(shared.read(sha, u64::MAX).await.unwrap()[..] == content[..]);
    }
    assert!(!s.data_dir().join("blobs").exists());
    assert!(s.data_dir().join(ADOPTED_DIR).is_dir());
    // A second start has nothing to bring.
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, on(&url)).await;
    assert_eq!(s.state().files.blobs().list().await.unwrap().len(), 2);
    assert!(!s.data_dir().join("blobs").exists());
}
