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
