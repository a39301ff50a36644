//! systemd/confab.service: `systemd-analyze security --offline=true` rates
//! its overall exposure 3.0 ("OK") or better, `systemd-analyze verify`
//! accepts it, and it carries every setting the service relies on (notify
//! readiness and watchdog, the system user and its directories, only
//! CAP_NET_BIND_SERVICE, and the sandbox). tests/it/ops_signals.rs checks the
//! binary's side of Type=notify, WatchdogSec= and ExecReload=.
//!
//! Needs systemd-analyze (tests/run.sh installs the systemd package when it
//! is missing); systemd itself need not be running.

use crate::ops_support;

use ops_support::tempdir;
use std::path::Path;
use std::process::Command;

const MAX_EXPOSURE: f64 = 3.0;

fn unit_path() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/confab.service"
    ))
}

/// (section, key, value) for every setting of the unit, in order.
fn settings() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(unit_path()).unwrap();
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value");
        out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
    }
    out
}

/// The values a `[Service]` key is set to, in order.
fn service(key: &str) -> Vec<String> {
    settings()
        .into_iter()
        .filter(|(s, k, _)| s == "Service" && k == key)
        .map(|(_, _, v)| v)
        .collect()
}

fn one(key: &str) -> String {
    let v = service(key);
    assert_eq!(v.len(), 1, "{key}= set once in [Service]: {v:?}");
    v[0].clone()
}

#[test]
fn systemd_analyze_security_rates_the_unit_ok() {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit_path())
        .output()
        .expect("systemd-analyze (tests/run.sh installs the systemd package)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{text}\n{err}");
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level for confab.service:"))
        .unwrap_or_else(|| panic!("no overall exposure line:\n{text}\n{err}"));
    let exposure: f64 = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure from {line:?}"));
    eprintln!("{}", line.trim());
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} > {MAX_EXPOSURE}; what counts against it:\n{}",
        text.lines()
            .filter(|l| l.starts_with('✗'))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // "…: 1.4 OK 🙂" (the face only on terminals that can show it).
    let label = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().nth(1))
        .unwrap_or("");
    assert!(
        ["OK", "SAFE"].contains(&label),
        "rated {label:?}, want OK or better: {line}"
    );
    // systemd's own gate agrees (--threshold is in tenths).
    let st = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(format!("--threshold={}", (MAX_EXPOSURE * 10.0) as u32))
        .arg(unit_path())
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    // verify checks that ExecStart= exists: point it at the binary built
    // for these tests, in a copy of the unit.
    let dir = tempdir();
    let unit = dir.path().join("confab.service");
    let text = std::fs::read_to_string(unit_path()).unwrap();
    assert!(text.contains("ExecStart=/usr/bin/confab "));
    std::fs::write(
        &unit,
        text.replace(
            "ExecStart=/usr/bin/confab ",
            &format!("ExecStart={} ", ops_support::BIN),
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    // verify exits 0 on some warnings too; it prints none for this unit.
    let complaints: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("confab.service"))
        .collect();
    assert!(complaints.is_empty(), "{err}");
}

#[test]
fn the_unit_has_every_setting_the_service_relies_on() {
    // Readiness and liveness: READY=1 once listening, WATCHDOG=1 pings.
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("NotifyAccess"), "main");
    assert_eq!(one("WatchdogSec"), "30s");
    assert_eq!(one("Restart"), "on-failure");
    // SIGTERM drains for shutdown_grace_secs (20 s) + at most 5 s.
    assert_eq!(one("KillSignal"), "SIGTERM");
    assert_eq!(one("TimeoutStopSec"), "45");
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(
        one("ExecStart"),
        "/usr/bin/confab --config /etc/confab/confab.toml serve"
    );

    // The system user of packaging/confab.sysusers and its directories.
    assert_eq!(one("User"), "confab");
    assert_eq!(one("Group"), "confab");
    let sysusers = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/confab.sysusers"
    ))
    .unwrap();
    assert!(sysusers.lines().any(|l| l.starts_with("u confab ")));
    assert_eq!(one("StateDirectory"), "confab");
    assert_eq!(one("StateDirectoryMode"), "0700");
    assert_eq!(one("ConfigurationDirectory"), "confab");
    assert_eq!(one("WorkingDirectory"), "/var/lib/confab");
    assert_eq!(one("UMask"), "0077");

    // Ports below 1024 and no other capability.
    assert_eq!(one("AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");

    // The sandbox.
    for (key, want) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectHostname", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        // AF_UNIX for $NOTIFY_SOCKET.
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ] {
        assert_eq!(one(key), want, "{key}=");
    }
    let filters = service("SystemCallFilter");
    assert_eq!(filters[0], "@system-service", "{filters:?}");
    assert!(
        filters.iter().skip(1).all(|f| f.starts_with('~')),
        "later filters only take away: {filters:?}"
    );

    // Packaged under this name and enabled for boot.
    assert!(
        settings()
            .iter()
            .any(|(s, k, v)| s == "Install" && k == "WantedBy" && v == "multi-user.target")
    );
}
