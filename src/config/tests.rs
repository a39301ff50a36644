use super::*;

fn load(file: Option<&str>, env: &[(&str, &str)], flags: Overrides) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    if let Some(text) = file {
        std::fs::write(&path, text).unwrap();
    }
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    Config::load_from(file.map(|_| path.as_path()), &env, &flags)
        .map(|(c, _)| c)
        .map_err(|e| e.0)
}

#[test]
fn defaults_parse_and_example_is_valid() {
    let c = load(None, &[], Overrides::default()).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.registration, RegistrationMode::Invite);
    assert_eq!(c.max_body_bytes, 1 << 20);
    // The shipped example must load as-is.
    load(Some(DEFAULT_CONFIG), &[], Overrides::default()).unwrap();
}

#[test]
fn layers_apply_in_order() {
    let file = "listen = \"127.0.0.1:9000\"\nregistration = \"open\"\nlog_level = \"warn\"\n";
    let c = load(
        Some(file),
        &[
            ("CONFAB_LISTEN", "127.0.0.1:9001"),
            ("CONFAB_LOG_LEVEL", "debug"),
        ],
        Overrides {
            listen: Some("127.0.0.1:9002".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(c.listen.port(), 9002, "flag beats env");
    assert_eq!(c.log_level, "debug", "env beats file");
    assert_eq!(c.registration, RegistrationMode::Open, "file beats default");
}

#[test]
fn secret_from_file_and_hidden_in_debug() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("secret");
    std::fs::write(&p, "0123456789abcdef0123456789abcdef\n").unwrap();
    let c = load(
        None,
        &[("CONFAB_JWT_SECRET_FILE", p.to_str().unwrap())],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(
        c.auth.jwt_secret.as_ref().unwrap().expose(),
        "0123456789abcdef0123456789abcdef"
    );
    assert!(!format!("{c:?}").contains("0123456789abcdef"));
}

#[test]
fn bad_values_name_the_setting() {
    let e = load(
        Some("registration = \"sometimes\""),
        &[],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(e.contains("registration") || e.contains("sometimes"), "{e}");
    assert!(e.contains("open"), "{e}");
    let e = load(Some("max_body_bytes = 10"), &[], Overrides::default()).unwrap_err();
    assert!(e.contains("max_body_bytes"), "{e}");
    let e = load(Some("cors_origins = [\"*\"]"), &[], Overrides::default()).unwrap_err();
    assert!(e.contains("cors_origins"), "{e}");
    let e = load(Some("listen = \"nowhere\""), &[], Overrides::default()).unwrap_err();
    assert!(e.contains("listen") || e.contains("address"), "{e}");
    let e = load(Some("bogus = 1"), &[], Overrides::default()).unwrap_err();
    assert!(e.contains("bogus"), "{e}");
    let e = load(
        None,
        &[("CONFAB_MAX_BODY_BYTES", "lots")],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(e.contains("CONFAB_MAX_BODY_BYTES"), "{e}");
}

#[test]
fn provider_settings_and_entries() {
    let c = load(None, &[], Overrides::default()).unwrap();
    assert!(!c.allow_user_keys);
    assert!(c.detect_local_providers);
    assert_eq!(c.provider_idle_timeout_secs, 60);
    assert!(c.default_model.is_none() && c.providers.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vllm.key");
    std::fs::write(&key, "sk-from-file-123\n").unwrap();
    let file = format!(
        "default_model = \"qwen2.5-7b\"\nallow_user_keys = true\n\
         [[providers]]\nkind = \"openai\"\nname = \"local-vllm\"\n\
         base_url = \"http://127.0.0.1:8000/v1\"\napi_key_file = {:?}\nmodels = [\"qwen2.5-7b\"]\n\
         [[providers]]\nkind = \"ollama\"\nname = \"box\"\nbase_url = \"http://10.0.0.2:11434/\"\nenabled = false\n",
        key.to_str().unwrap()
    );
    let c = load(
        Some(&file),
        &[
            ("CONFAB_DETECT_LOCAL_PROVIDERS", "false"),
            ("CONFAB_PROVIDER_IDLE_TIMEOUT_SECS", "5"),
        ],
        Overrides::default(),
    )
    .unwrap();
    assert!(c.allow_user_keys && !c.detect_local_providers);
    assert_eq!(c.provider_idle_timeout_secs, 5);
    assert_eq!(c.default_model.as_deref(), Some("qwen2.5-7b"));
    assert_eq!(c.providers.len(), 2);
    let p = c.providers[0].to_provider_config(0).unwrap();
    assert_eq!(p.api_key.as_deref(), Some("sk-from-file-123"));
    assert_eq!(p.models.as_deref(), Some(&["qwen2.5-7b".to_string()][..]));
    assert!(!format!("{c:?}").contains("sk-from-file"));
    let o = c.providers[1].to_provider_config(1).unwrap();
    assert_eq!(o.base_url, "http://10.0.0.2:11434");
    assert!(!o.enabled && o.api_key.is_none());

    let e = load(
        None,
        &[("CONFAB_ALLOW_USER_KEYS", "maybe")],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(e.contains("CONFAB_ALLOW_USER_KEYS"), "{e}");
    let c = load(
        None,
        &[
            ("CONFAB_ALLOW_USER_KEYS", "yes"),
            ("CONFAB_DEFAULT_MODEL", "m"),
        ],
        Overrides::default(),
    )
    .unwrap();
    assert!(c.allow_user_keys);
    assert_eq!(c.default_model.as_deref(), Some("m"));
}

#[test]
fn bad_provider_entries_name_the_setting() {
    let entry = |body: &str| format!("[[providers]]\n{body}\n");
    let e = load(
        Some(&entry(
            "kind = \"openai\"\nname = \"x\"\nbase_url = \"http://h/v1\"\napi_key_file = \"/nonexistent/confab/key\"",
        )),
        &[],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(e.contains("api_key_file"), "{e}");
    assert!(e.contains("/nonexistent/confab/key"), "{e}");
    let e = load(
        Some(&entry(
            "kind = \"gemini\"\nname = \"x\"\nbase_url = \"http://h/v1\"",
        )),
        &[],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(e.contains("kind") && e.contains("openai"), "{e}");
    let e = load(
        Some(&entry(
            "kind = \"openai\"\nname = \"x\"\nbase_url = \"127.0.0.1:8000\"",
        )),
        &[],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(e.contains("providers[0].base_url"), "{e}");
    let two = format!(
        "{}{}",
        entry("kind = \"openai\"\nname = \"x\"\nbase_url = \"http://h/v1\""),
        entry("kind = \"ollama\"\nname = \"x\"\nbase_url = \"http://h\"")
    );
    let e = load(Some(&two), &[], Overrides::default()).unwrap_err();
    assert!(
        e.contains("providers[1].name") && e.contains("unique"),
        "{e}"
    );
    let e = load(
        Some(&entry(
            "kind = \"openai\"\nname = \"has space\"\nbase_url = \"http://h/v1\"",
        )),
        &[],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(e.contains("providers[0].name"), "{e}");
    let e = load(
        Some(&entry(
            "kind = \"openai\"\nname = \"x\"\nbase_url = \"http://h/v1\"\napi_key = \"k\"\napi_key_file = \"/k\"",
        )),
        &[],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(e.contains("api_key_file") && e.contains("both"), "{e}");
    let e = load(
        Some("provider_idle_timeout_secs = 0"),
        &[],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(e.contains("provider_idle_timeout_secs"), "{e}");
}

#[test]
fn governance_settings_and_errors() {
    let c = load(None, &[], Overrides::default()).unwrap();
    assert!(c.limits.enabled && c.trusted_proxies.is_empty());
    assert_eq!(c.quota.messages_per_day, None);
    let file = "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n\
         [limits]\napi_per_minute = 60\n[quota]\nmessages_per_day = 5\n\
         [[prices]]\nmodel = \"gpt-4o*\"\ninput_per_million = 2.5\noutput_per_million = 10\n";
    let c = load(
        Some(file),
        &[
            ("CONFAB_QUOTA_TOKENS_PER_DAY", "1000"),
            ("CONFAB_METRICS_TOKEN", "0123456789abcdef-token"),
            ("CONFAB_TRUSTED_PROXIES", "127.0.0.1, 192.168.0.0/16"),
        ],
        Overrides {
            metrics_listen: Some("127.0.0.1:9100".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(c.limits.api_per_minute, 60);
    assert_eq!(c.quota.messages_per_day, Some(5));
    assert_eq!(c.quota.tokens_per_day, Some(1000));
    assert_eq!(c.trusted_proxies.len(), 2, "env replaces the file's list");
    assert_eq!(c.prices[0].output_per_million, 10.0);
    assert_eq!(c.metrics_listen.unwrap().port(), 9100);
    assert!(!format!("{c:?}").contains("0123456789abcdef-token"));
    for (text, setting) in [
        ("trusted_proxies = [\"10.0.0/8x\"]", "trusted_proxies[0]"),
        ("metrics_token = \"short\"", "metrics_token"),
        ("[limits]\nchat_burst = 0", "limits.chat_burst"),
        ("[limits]\nmax_tracked_keys = 5", "limits.max_tracked_keys"),
        ("[quota]\nmessages_per_day = -1", "quota.messages_per_day"),
        (
            "[[prices]]\nmodel = \"m\"\ninput_per_million = -1\noutput_per_million = 1",
            "prices[0].input_per_million",
        ),
        ("[limits]\nbogus = 1", "bogus"),
    ] {
        let e = load(Some(text), &[], Overrides::default()).unwrap_err();
        assert!(e.contains(setting), "{text}: {e}");
    }
}

#[test]
fn http_settings_and_errors() {
    let c = load(None, &[], Overrides::default()).unwrap();
    assert_eq!(c.http.header_timeout_secs, 10);
    assert_eq!(c.http.keep_alive_secs, 60);
    assert!(!c.provider_cross_origin_redirects);
    let c = load(
        Some("provider_cross_origin_redirects = true\n[http]\nbody_timeout_secs = 5\n"),
        &[("CONFAB_HTTP_MAX_CONNECTIONS_PER_IP", "8")],
        Overrides::default(),
    )
    .unwrap();
    assert!(c.provider_cross_origin_redirects);
    assert_eq!(c.http.body_timeout_secs, 5);
    assert_eq!(c.http.max_connections_per_ip, 8);
    for (text, setting) in [
        (
            "[http]\nheader_timeout_secs = 0",
            "http.header_timeout_secs",
        ),
        ("[http]\nkeep_alive_secs = 99999", "http.keep_alive_secs"),
        ("[http]\nmax_connections = 0", "http.max_connections"),
        (
            "[http]\nmax_connections = 10\nmax_connections_per_ip = 11",
            "http.max_connections_per_ip",
        ),
        ("[http]\nbogus = 1", "bogus"),
    ] {
        let e = load(Some(text), &[], Overrides::default()).unwrap_err();
        assert!(e.contains(setting), "{text}: {e}");
    }
}

#[test]
fn unknown_env_is_warned() {
    let (_, w) = Config::load_from(
        None,
        &[("CONFAB_LISTN".into(), "x".into())],
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("CONFAB_LISTN"));
}

#[test]
fn routing_strategy_and_provider_priority() {
    let c = load(None, &[], Overrides::default()).unwrap();
    assert_eq!(c.routing.strategy, crate::providers::Strategy::Priority);
    let file = "[routing]\nstrategy = \"least_busy\"\n\n[[providers]]\nkind = \"ollama\"\nname = \"gpu-box\"\nbase_url = \"http://10.0.0.5:11434\"\npriority = 10\n";
    let c = load(Some(file), &[], Overrides::default()).unwrap();
    assert_eq!(c.routing.strategy, crate::providers::Strategy::LeastBusy);
    assert_eq!(c.providers[0].priority, 10);
    assert_eq!(c.providers[0].to_provider_config(0).unwrap().priority, 10);
    let c = load(
        None,
        &[("CONFAB_ROUTING_STRATEGY", "least_busy")],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.routing.strategy, crate::providers::Strategy::LeastBusy);

    let e = load(
        Some("[routing]\nstrategy = \"random\"\n"),
        &[],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(e.contains("least_busy"), "{e}");
    let e = load(
        Some("[routing]\nstrategi = \"priority\"\n"),
        &[],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(e.contains("strategi"), "{e}");
    let e = load(
        Some(&file.replace("priority = 10", "priority = 5000")),
        &[],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(e.contains("providers[0].priority"), "{e}");
}

#[test]
fn store_url_from_a_file_never_prints_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("store-url");
    let url =
        "postgres://confab:hunter2-secret@db1:5432,db2:5432/confab?target_session_attrs=read-write";
    std::fs::write(&p, format!("{url}\n")).unwrap();
    let c = load(
        None,
        &[
            ("CONFAB_STORE_FILE", p.to_str().unwrap()),
            ("CONFAB_STORE_POOL_SIZE", "4"),
        ],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.store.as_ref().unwrap().expose(), url);
    assert_eq!(c.store_pool_size, 4);
    match c.store_choice().unwrap() {
        StoreChoice::Postgres(p) => {
            assert_eq!(p.pool_size, 4);
            assert!(!format!("{p:?}").contains("hunter2"));
        }
        StoreChoice::Redb => panic!("a URL chooses PostgreSQL"),
    }
    assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
    // The default stays redb in the data dir.
    let d = load(None, &[], Overrides::default()).unwrap();
    assert!(matches!(d.store_choice().unwrap(), StoreChoice::Redb));
    // A value that is not a PostgreSQL URL says what to write instead.
    let e = load(
        None,
        &[("CONFAB_STORE", "sqlite:///x.db")],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(e.contains("store must be a PostgreSQL URL"), "{e}");
    let e = load(
        Some("store = \"postgres://u:pw@db/confab?sslmode=verify-all\"\n"),
        &[],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(
        e.contains("sslmode must be one of") && !e.contains(":pw@"),
        "{e}"
    );
}

#[test]
fn store_cache_mib_defaults_to_64_and_is_bounded() {
    let d = load(None, &[], Overrides::default()).unwrap();
    assert_eq!(d.store_cache_mib, 64);
    let c = load(
        None,
        &[("CONFAB_STORE_CACHE_MIB", "256")],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.store_cache_mib, 256);
    let c = load(Some("store_cache_mib = 16\n"), &[], Overrides::default()).unwrap();
    assert_eq!(c.store_cache_mib, 16);
    for bad in ["0", "3", "65537"] {
        let e = load(
            None,
            &[("CONFAB_STORE_CACHE_MIB", bad)],
            Overrides::default(),
        )
        .unwrap_err();
        assert!(
            e.contains("store_cache_mib must be between 4 and 65536"),
            "{bad}: {e}"
        );
    }
}
