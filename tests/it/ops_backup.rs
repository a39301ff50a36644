//! Backups and restores: `confab backup` while the server runs (through the
//! admin API) and from a stopped data directory, `GET /api/admin/backup`,
//! and `confab restore` with its verification, key files and index rebuild.

use crate::common_upstream;
use crate::ops_support;

use common_upstream::FakeUpstream;
use ops_support::{Client, confab, run, start, tempdir, write_config};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_serving_then_restore_elsewhere() {
    let up = FakeUpstream::start().await;
    up.set_models(&["fake-model", "stored-model"]);
    up.set_reply("alpha bravo charlie");
    let dir = tempdir();
    let (data, config) = (dir.path().join("data"), dir.path().join("confab.toml"));
    write_config(&config, &up.openai_base(), "");
    let srv = start(&data, &config);
    let admin = Client::setup(&srv, "admin").await;
    let key = admin.api_key(&["admin"]).await;
    let read_key = admin.api_key(&["read"]).await;
    // A JWT access token signed with this server's jwt.key.
    let jwt = reqwest::Client::new()
        .post(format!("{}/api/auth/token", srv.url))
        .json(&json!({"username": "admin", "password": ops_support::PASSWORD}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let jwt_key = std::fs::read(data.join("jwt.key")).unwrap();

    // A provider added at runtime: its key is stored encrypted with
    // provider.key, which the backup must carry along.
    let (s, v) = admin
        .post(
            "/api/admin/providers",
            json!({"kind": "openai", "name": "stored", "base_url": up.openai_base(),
                   "api_key": "sk-stored-secret-42", "models": ["stored-model"]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    for i in 0..10 {
        let (_, text, done) = admin
            .chat(None, &format!("before backup zulu{i}"), "fake-model")
            .await
            .unwrap();
        assert!(done && text == "alpha bravo charlie");
    }

    // Writers keep going while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let writer = {
        let (c, stop, acked) = (admin.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                if let Ok((conv, _, true)) = c
                    .chat(None, &format!("during backup yankee{i}"), "fake-model")
                    .await
                {
                    acked.lock().unwrap().push(conv);
                }
                i += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked_before: Vec<String> = acked.lock().unwrap().clone();
    let backup = dir.path().join("backup.redb");

    // Without a key the command explains what it needs.
    let (_, err) = run(
        confab()
            .arg("--data-dir")
            .arg(&data)
            .arg("backup")
            .arg(&backup)
            .args(["--url", &srv.url]),
        2,
    );
    assert!(
        err.contains("--api-key") && err.contains("CONFAB_API_KEY"),
        "{err}"
    );
    assert!(!backup.exists());

    let started = Instant::now();
    let (out, _) = {
        let (data, backup, url, key) = (data.clone(), backup.clone(), srv.url.clone(), key.clone());
        tokio::task::spawn_blocking(move || {
            run(
                confab()
                    .env("CONFAB_API_KEY", key)
                    .arg("--data-dir")
                    .arg(&data)
                    .arg("backup")
                    .arg(&backup)
                    .args(["--url", &url]),
                0,
            )
        })
        .await
        .unwrap()
    };
    eprintln!("backup through the server took {:?}", started.elapsed());
    assert!(out.contains("from the running server"), "{out}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    assert!(
        acked.lock().unwrap().len() > acked_before.len(),
        "writes went on while the backup was taken"
    );

    // The admin endpoint: admins only, admin scope only.
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/api/admin/backup", srv.url))
        .bearer_auth(&read_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .get(format!("{}/api/admin/backup", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{}/api/admin/backup", srv.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("confab-backup-")
    );
    let len: u64 = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let downloaded = r.bytes().await.unwrap();
    assert_eq!(downloaded.len() as u64, len);
    // The JWT signing key is not in a backup: whoever holds a copy must not
    // be able to sign access tokens for the live server (issue 13).
    for file in [&downloaded[..], &std::fs::read(&backup).unwrap()[..]] {
        assert!(
            !file.windows(jwt_key.len()).any(|w| w == jwt_key),
            "the backup carries the JWT signing key"
        );
    }
    let header = confab::store::backup::read_header(&backup).unwrap();
    assert_eq!(header.files, vec!["provider.key".to_string()]);
    // No temporary file is left in the data directory.
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("backup"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Restoring into the running server's directory is refused.
    let (_, err) = run(
        confab()
            .arg("--data-dir")
            .arg(&data)
            .arg("restore")
            .arg(&backup),
        2,
    );
    assert!(err.contains("stop it first"), "{err}");

    // Restore into a fresh directory (another machine) and start there.
    let data2 = dir.path().join("data2");
    let (out, _) = run(
        confab()
            .arg("--data-dir")
            .arg(&data2)
            .arg("restore")
            .arg(&backup),
        0,
    );
    assert!(out.contains("restored") && out.contains("indexed"), "{out}");
    drop(srv);
    let srv2 = start(&data2, &config);
    assert!(srv2.setup.is_none(), "the restored server has its admin");
    let again = admin.at(&srv2.url);
    let (s, _) = again.get("/api/auth/me").await;
    assert_eq!(s, 200, "sessions are part of the backup");
    // The restored server signs with a key of its own: access tokens from
    // before the restore are refused (programs renew them with their
    // refresh token, which the backup kept).
    let r = reqwest::Client::new()
        .get(format!("{}/api/auth/me", srv2.url))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_ne!(std::fs::read(data2.join("jwt.key")).unwrap(), jwt_key);
    for conv in &acked_before {
        let (s, v) = again.get(&format!("/api/conversations/{conv}")).await;
        assert_eq!(s, 200, "a conversation acknowledged before the backup: {v}");
    }
    // The search index was rebuilt from the restored database.
    let (hits, partial) = again.search("zulu3").await;
    assert!(!partial);
    assert_eq!(hits.len(), 1, "{hits:?}");
    // The stored provider key decrypts with the restored provider.key.
    up.clear_requests();
    let (_, _, done) = again.chat(None, "hello", "stored-model").await.unwrap();
    assert!(done);
    let req = up.chat_requests().pop().unwrap();
    assert_eq!(
        req.header("authorization"),
        Some("Bearer sk-stored-secret-42")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_backup_restore_keeps_old_files_and_refuses_bad_input() {
    let up = FakeUpstream::start().await;
    let dir = tempdir();
    let (data, config) = (dir.path().join("data"), dir.path().join("confab.toml"));
    write_config(&config, &up.openai_base(), "");
    let mut srv = start(&data, &config);
    let admin = Client::setup(&srv, "admin").await;
    let (conv, _, _) = admin
        .chat(None, "kept message", "fake-model")
        .await
        .unwrap();
    srv.signal("TERM");
    assert!(srv.wait_exit(Duration::from_secs(30)).success());

    // From a stopped data directory: opened read-only, not migrated.
    let backup = dir.path().join("b.redb");
    let (out, _) = run(
        confab()
            .arg("--data-dir")
            .arg(&data)
            .arg("backup")
            .arg(&backup),
        0,
    );
    assert!(out.contains("from the stopped data directory"), "{out}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&backup).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "backups hold key material");
    // Never overwritten.
    run(
        confab()
            .arg("--data-dir")
            .arg(&data)
            .arg("backup")
            .arg(&backup),
        2,
    );

    // Change the data after the backup, then restore over it.
    let mut srv = start(&data, &config);
    let (later, _, _) = admin
        .at(&srv.url)
        .chat(None, "after backup", "fake-model")
        .await
        .unwrap();
    srv.signal("TERM");
    assert!(srv.wait_exit(Duration::from_secs(30)).success());
    let jwt_before = std::fs::read(data.join("jwt.key")).unwrap();

    // Bad input changes nothing.
    let records = |name: &str| {
        let (out, _) = run(
            confab()
                .arg("--data-dir")
                .arg(&data)
                .arg("backup")
                .arg(dir.path().join(name)),
            0,
        );
        out.split(": ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    let before = records("count-before.redb");
    let junk = dir.path().join("junk.redb");
    std::fs::write(&junk, b"not a backup at all").unwrap();
    let (_, err) = run(
        confab()
            .arg("--data-dir")
            .arg(&data)
            .arg("restore")
            .arg(&junk),
        2,
    );
    assert!(err.contains("not a confab backup"), "{err}");
    let truncated = dir.path().join("truncated.redb");
    let full = std::fs::read(&backup).unwrap();
    std::fs::write(&truncated, &full[..full.len() / 3]).unwrap();
    let (_, err) = run(
        confab()
            .arg("--data-dir")
            .arg(&data)
            .arg("restore")
            .arg(&truncated),
        2,
    );
    assert!(err.contains("backup"), "{err}");
    // A plain database file is not a backup either.
    let (_, err) = run(
        confab()
            .arg("--data-dir")
            .arg(&data)
            .arg("restore")
            .arg(data.join("confab.redb")),
        2,
    );
    assert!(err.contains("no backup header"), "{err}");
    // A backup from a newer confab is refused.
    let newer = dir.path().join("newer.redb");
    std::fs::copy(&backup, &newer).unwrap();
    {
        let db = redb::Database::open(&newer).unwrap();
        let t: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("confab_backup");
        let tx = db.begin_write().unwrap();
        {
            use redb::ReadableTable;
            let mut table = tx.open_table(t).unwrap();
            let mut h: serde_json::Value =
                serde_json::from_slice(table.get("header").unwrap().unwrap().value()).unwrap();
            h["schema_version"] = json!(9999);
            table
                .insert("header", serde_json::to_vec(&h).unwrap().as_slice())
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let (_, err) = run(
        confab()
            .arg("--data-dir")
            .arg(&data)
            .arg("restore")
            .arg(&newer),
        2,
    );
    assert!(err.contains("newer confab"), "{err}");
    assert_eq!(records("count-after.redb"), before);
    assert!(
        !std::fs::read_dir(&data).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("restor")),
        "failed restores leave nothing behind"
    );

    let (out, _) = run(
        confab()
            .arg("--data-dir")
            .arg(&data)
            .arg("restore")
            .arg(&backup)
            .arg("--no-reindex"),
        0,
    );
    assert!(out.contains("kept the previous"), "{out}");
    assert!(
        !data.join("index").exists(),
        "the index is dropped, rebuilt at start"
    );
    let kept: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".pre-restore-"))
        .collect();
    assert!(
        kept.iter().any(|n| n.starts_with("confab.redb.")),
        "{kept:?}"
    );
    assert!(kept.iter().any(|n| n.starts_with("jwt.key.")), "{kept:?}");
    // A restore gives the server a new JWT signing key (the backup has
    // none): access tokens issued before it stop working.
    let jwt_after = std::fs::read(data.join("jwt.key")).unwrap();
    assert_ne!(jwt_after, jwt_before);
    assert_eq!(jwt_after.len(), jwt_before.len());

    let srv = start(&data, &config);
    let c = admin.at(&srv.url);
    assert_eq!(c.get(&format!("/api/conversations/{conv}")).await.0, 200);
    assert_eq!(
        c.get(&format!("/api/conversations/{later}")).await.0,
        404,
        "what came after the backup is gone"
    );
    // The server rebuilds the index it found missing.
    let t = Instant::now();
    loop {
        let (hits, partial) = c.search("kept").await;
        if !partial && hits.len() == 1 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "index not rebuilt");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The copy is one read transaction: with a writer appending numbered
/// records as fast as it can, the backup holds exactly a prefix of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_is_one_snapshot_under_concurrent_writes() {
    use confab::store::AuditEntry;
    use confab::store::redb::RedbStore;
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open_shared(&dir.path().join("data")).unwrap();
    let entry = |n: u64| AuditEntry {
        id: uuid::Uuid::now_v7(),
        at: n as i64,
        actor: None,
        actor_name: Some("writer".into()),
        action: "test.write".into(),
        target: Some(n.to_string()),
        ip: None,
        user_agent: None,
        outcome: "ok".into(),
    };
    for n in 0..200 {
        store.append_audit(&entry(n)).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        let rt = tokio::runtime::Handle::current();
        std::thread::spawn(move || {
            let mut n = 200;
            while !stop.load(Ordering::SeqCst) {
                rt.block_on(store.append_audit(&entry(n))).unwrap();
                n += 1;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let dest = dir.path().join("snap.redb");
    let mut calls = 0;
    let header = store
        .file()
        .expect("redb is a file store")
        .backup_to(
            &dest,
            &[("x.key".into(), b"k".to_vec())],
            &confab::store::backup::NoBlobs,
            &mut |_, _| calls += 1,
        )
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().unwrap();
    assert!(calls > 0);
    assert_eq!(header.files, vec!["x.key".to_string()]);
    let in_backup = header.tables["audit"];
    assert!(
        in_backup >= 200 && in_backup < written,
        "{in_backup} of {written}"
    );

    // Restore it and read the audit log back: exactly 0..in_backup.
    let restored = dir.path().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    let prepared = confab::store::backup::prepare_restore(
        &dest,
        &restored.join("confab.redb"),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(prepared.files, vec![("x.key".to_string(), b"k".to_vec())]);
    let store2 = RedbStore::open_shared(&restored).unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store2.list_audit(before, 500).await.unwrap();
        if page.is_empty() {
            break;
        }
        before = Some(page.last().unwrap().id);
        seen.extend(page.into_iter().map(|e| e.at as u64));
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..in_backup).collect::<Vec<_>>(),
        "a gap-free prefix"
    );
}
