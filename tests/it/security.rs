//! Two-factor sign-in, password reset and email verification through the
//! real server: TOTP codes computed independently by `pyotp`, reset and
//! verification mail delivered to a real SMTP server (`aiosmtpd`) started
//! here and read back from what it wrote. The Python packages are in a venv
//! tests/run.sh makes (`tests/security/requirements.txt`); without it these
//! tests FAIL, saying to run tests/run.sh.

use crate::common;

use common::{Auth, PASSWORD, Resp, Session, TestServer};
use confab::config::{SmtpConfig, SmtpSecurity};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The Python of the venv with pyotp and aiosmtpd: `CONFAB_SECURITY_PYTHON`
/// (exported by tests/run.sh), else `<target>/security/venv/bin/python`.
fn python() -> PathBuf {
    let p = match std::env::var_os("CONFAB_SECURITY_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"));
            let target = if target.is_relative() {
                root.join(target)
            } else {
                target
            };
            target.join("security/venv/bin/python")
        }
    };
    assert!(
        p.exists(),
        "the Python venv with pyotp and aiosmtpd is missing at {}: run tests/run.sh once \
         (it installs tests/security/requirements.txt into that venv), or point \
         CONFAB_SECURITY_PYTHON at a python that has them",
        p.display()
    );
    p
}

/// The code pyotp computes for `secret` (base32) at now + `offset` seconds.
fn pyotp(secret: &str, offset: i64) -> String {
    let out = std::process::Command::new(python())
        .args([
            "-c",
            "import pyotp, sys, time; print(pyotp.TOTP(sys.argv[1]).at(time.time() + int(sys.argv[2])))",
            secret,
            &offset.to_string(),
        ])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(code.len(), 6, "{code}");
    code
}

/// Turns two-factor sign-in on for `who`; returns the secret and the
/// recovery codes. The confirming code is the current step's, so the next
/// sign-in uses the next step's (`pyotp(secret, 30)`).
async fn enrol(s: &TestServer, who: &Session) -> (String, Vec<String>) {
    let r = s
        .post("/api/auth/two-factor/setup", Auth::Session(who), json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let secret = r.body["secret"].as_str().unwrap().to_string();
    assert!(
        r.body["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    assert!(
        r.body["qr_svg"]
            .as_str()
            .unwrap()
            .starts_with("data:image/svg+xml;base64,")
    );
    let r = s
        .post(
            "/api/auth/two-factor/confirm",
            Auth::Session(who),
            json!({"code": pyotp(&secret, 0)}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let codes: Vec<String> = r.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

/// The password step of a two-factor account: a challenge, no session.
async fn password_step(s: &TestServer, name: &str, password: &str) -> String {
    let r = s
        .post(
            "/api/auth/login",
            Auth::None,
            json!({"username": name, "password": password}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["two_factor_required"], true);
    assert!(
        r.header("set-cookie")
            .is_none_or(|c| !c.contains("confab_session="))
    );
    r.body["challenge"].as_str().unwrap().to_string()
}

async fn second_step(s: &TestServer, challenge: &str, code: &str) -> Resp {
    s.post(
        "/api/auth/login/two-factor",
        Auth::None,
        json!({"challenge": challenge, "code": code}),
    )
    .await
}

async fn audit(s: &TestServer, admin: &Session) -> Resp {
    let r = s
        .get("/api/admin/audit?limit=200", Auth::Session(admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r
}

fn has(audit: &Resp, action: &str, outcome: &str) -> bool {
    audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == action && e["outcome"] == outcome)
}

#[tokio::test]
async fn totp_enrolment_two_step_sign_in_replay_and_recovery_codes() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let alice = s.user(&admin, "alice").await;

    // A wrong code does not turn it on.
    let r = s
        .post(
            "/api/auth/two-factor/setup",
            Auth::Session(&alice),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    s.post(
        "/api/auth/two-factor/confirm",
        Auth::Session(&alice),
        json!({"code": "000000"}),
    )
    .await
    .assert_error(401, "INVALID_TWO_FACTOR_CODE");
    s.login("alice", PASSWORD).await;

    let (secret, recovery) = enrol(&s, &alice).await;
    let st = s.get("/api/auth/two-factor", Auth::Session(&alice)).await;
    assert_eq!(st.body["enabled"], true);
    assert_eq!(st.body["recovery_codes_left"], 10);
    s.post(
        "/api/auth/two-factor/setup",
        Auth::Session(&alice),
        json!({}),
    )
    .await
    .assert_error(409, "CONFLICT");

    // Two steps now; a made-up challenge is refused.
    let challenge = password_step(&s, "alice", PASSWORD).await;
    second_step(&s, "not-a-challenge", "123456")
        .await
        .assert_error(401, "CHALLENGE_EXPIRED");
    let code = pyotp(&secret, 30);
    let r = second_step(&s, &challenge, &code).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let signed_in = Session::from_resp(&r);
    assert_eq!(r.body["two_factor"]["enabled"], true);
    let me = s.get("/api/auth/me", Auth::Session(&signed_in)).await;
    assert_eq!(me.body["user"]["username"], "alice");
    // The challenge is single use, and so is the code.
    second_step(&s, &challenge, &code)
        .await
        .assert_error(401, "CHALLENGE_EXPIRED");
    let challenge = password_step(&s, "alice", PASSWORD).await;
    second_step(&s, &challenge, &code)
        .await
        .assert_error(401, "INVALID_TWO_FACTOR_CODE");
    // A wrong code leaves the challenge open; a recovery code signs in,
    // once.
    let r = second_step(&s, &challenge, &recovery[0].to_uppercase()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let challenge = password_step(&s, "alice", PASSWORD).await;
    second_step(&s, &challenge, &recovery[0])
        .await
        .assert_error(401, "INVALID_TWO_FACTOR_CODE");
    let st = s.get("/api/auth/two-factor", Auth::Session(&alice)).await;
    assert_eq!(st.body["recovery_codes_left"], 9);

    // Tokens for programs ask for the code; refresh tokens do not.
    s.post(
        "/api/auth/token",
        Auth::None,
        json!({"username": "alice", "password": PASSWORD}),
    )
    .await
    .assert_error(401, "TWO_FACTOR_REQUIRED");
    s.post(
        "/api/auth/token",
        Auth::None,
        json!({"username": "alice", "password": PASSWORD, "totp_code": "999999"}),
    )
    .await
    .assert_error(401, "INVALID_TWO_FACTOR_CODE");
    let t = s
        .post(
            "/api/auth/token",
            Auth::None,
            json!({"username": "alice", "password": PASSWORD, "totp_code": recovery[1]}),
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.text);
    let r = s
        .post(
            "/api/auth/refresh",
            Auth::None,
            json!({"refresh_token": t.body["refresh_token"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // The audit log tells what happened, and never holds a code or secret.
    let a = audit(&s, &admin).await;
    for (action, outcome) in [
        ("2fa.enrol", "ok"),
        ("2fa.enrol", "INVALID_TWO_FACTOR_CODE"),
        ("2fa.recovery_used", "ok"),
        ("login.2fa", "INVALID_TWO_FACTOR_CODE"),
        ("login", "TWO_FACTOR_PENDING"),
        ("token", "TWO_FACTOR_REQUIRED"),
    ] {
        assert!(has(&a, action, outcome), "{action} {outcome}: {}", a.text);
    }
    for secret_text in [
        secret.as_str(),
        code.as_str(),
        recovery[0].as_str(),
        &challenge,
    ] {
        assert!(!a.text.contains(secret_text), "audit leaks {secret_text}");
    }
}

#[tokio::test]
async fn second_step_has_its_own_lockout() {
    let s = TestServer::start_with(|c| c.auth.two_factor_failures_per_hour = 3).await;
    let admin = s.setup_admin("admin").await;
    let bob = s.user(&admin, "bob").await;
    let (secret, _) = enrol(&s, &bob).await;

    let challenge = password_step(&s, "bob", PASSWORD).await;
    for _ in 0..3 {
        second_step(&s, &challenge, "000000")
            .await
            .assert_error(401, "INVALID_TWO_FACTOR_CODE");
    }
    // Locked: even the right code is refused, on a fresh challenge too.
    let r = second_step(&s, &challenge, &pyotp(&secret, 30)).await;
    r.assert_error(429, "RATE_LIMITED");
    assert!(r.header("retry-after").is_some());
    let challenge = password_step(&s, "bob", PASSWORD).await;
    second_step(&s, &challenge, &pyotp(&secret, 30))
        .await
        .assert_error(429, "RATE_LIMITED");
    // The password step is not what is locked: other accounts sign in.
    s.login("admin", PASSWORD).await;
    let a = audit(&s, &admin).await;
    assert!(has(&a, "2fa.lockout", "RATE_LIMITED"), "{}", a.text);
}

#[tokio::test]
async fn a_challenge_takes_a_few_wrong_codes_then_is_spent() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let carol = s.user(&admin, "carol").await;
    let (secret, _) = enrol(&s, &carol).await;
    let challenge = password_step(&s, "carol", PASSWORD).await;
    for _ in 0..5 {
        second_step(&s, &challenge, "000000")
            .await
            .assert_error(401, "INVALID_TWO_FACTOR_CODE");
    }
    second_step(&s, &challenge, &pyotp(&secret, 30))
        .await
        .assert_error(401, "CHALLENGE_EXPIRED");
}

#[tokio::test]
async fn turning_two_factor_off_needs_the_password_and_a_code() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let dave = s.user(&admin, "dave").await;
    let (secret, recovery) = enrol(&s, &dave).await;
    s.post(
        "/api/auth/two-factor/disable",
        Auth::Session(&dave),
        json!({"current_password": "wrong-password-here", "code": recovery[0]}),
    )
    .await
    .assert_error(403, "WRONG_PASSWORD");
    s.post(
        "/api/auth/two-factor/disable",
        Auth::Session(&dave),
        json!({"current_password": PASSWORD, "code": "000000"}),
    )
    .await
    .assert_error(401, "INVALID_TWO_FACTOR_CODE");
    let r = s
        .post(
            "/api/auth/two-factor/disable",
            Auth::Session(&dave),
            json!({"current_password": PASSWORD, "code": pyotp(&secret, 30)}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    s.login("dave", PASSWORD).await;

    // An admin can turn it off for someone who lost their phone.
    let (_, _) = enrol(&s, &dave).await;
    password_step(&s, "dave", PASSWORD).await;
    let r = s
        .delete(
            &format!("/api/admin/users/{}/two-factor", dave.user_id),
            Auth::Session(&admin),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    s.login("dave", PASSWORD).await;
    let a = audit(&s, &admin).await;
    assert!(has(&a, "2fa.disable", "ok"), "{}", a.text);
    assert!(has(&a, "2fa.disable", "WRONG_PASSWORD"), "{}", a.text);
    assert!(has(&a, "admin.2fa.reset", "ok"), "{}", a.text);
}

#[tokio::test]
async fn the_policy_sends_users_without_a_second_factor_to_enrolment() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let erin = s.user(&admin, "erin").await;
    let key = s
        .post("/api/keys", Auth::Session(&erin), json!({"name": "k"}))
        .await;
    assert_eq!(key.status, 201, "{}", key.text);
    let key = key.body["key"].as_str().unwrap().to_string();

    let r = s
        .req(
            reqwest::Method::PUT,
            "/api/admin/security",
            Auth::Session(&admin),
            Some(json!({"two_factor": "everyone"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The admin's own session is held too (the admin must enrol as well).
    s.get("/api/conversations", Auth::Session(&admin))
        .await
        .assert_error(403, "TWO_FACTOR_ENROLMENT_REQUIRED");

    let erin = s.login("erin", PASSWORD).await;
    let me = s.get("/api/auth/me", Auth::Session(&erin)).await;
    assert_eq!(
        me.body["two_factor"]["enrolment_required"], true,
        "{}",
        me.text
    );
    s.get("/api/conversations", Auth::Session(&erin))
        .await
        .assert_error(403, "TWO_FACTOR_ENROLMENT_REQUIRED");
    // API keys are not asked.
    assert_eq!(
        s.get("/api/conversations", Auth::Bearer(&key)).await.status,
        200
    );
    enrol(&s, &erin).await;
    assert_eq!(
        s.get("/api/conversations", Auth::Session(&erin))
            .await
            .status,
        200
    );
    let me = s.get("/api/auth/me", Auth::Session(&erin)).await;
    assert_eq!(me.body["two_factor"]["enrolment_required"], false);
}

/// The token of a `…#token=` link in `text`.
fn link_token(text: &str, path: &str) -> String {
    let i = text
        .find(&format!("{path}#token="))
        .unwrap_or_else(|| panic!("no {path} link in {text}"));
    text[i + path.len() + 7..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

#[tokio::test]
async fn admin_reset_link_sets_the_password_once_and_signs_out_everywhere() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let frank = s.user(&admin, "frank").await;
    let other = s.login("frank", PASSWORD).await;

    let r = s
        .post(
            &format!("/api/admin/users/{}/reset-link", frank.user_id),
            Auth::Session(&admin),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let url = r.body["url"].as_str().unwrap();
    assert!(url.starts_with(&s.base), "{url}");
    let token = link_token(url, "/reset-password");

    // A weak password does not spend the link.
    s.post(
        "/api/auth/password-reset",
        Auth::None,
        json!({"token": token, "new_password": "short"}),
    )
    .await
    .assert_error(400, "VALIDATION_FAILED");
    let r = s
        .post(
            "/api/auth/password-reset",
            Auth::None,
            json!({"token": token, "new_password": "franks-new-password"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["revoked"]["sessions"], 2);
    for who in [&frank, &other] {
        s.get("/api/auth/me", Auth::Session(who))
            .await
            .assert_error(401, "AUTH_REQUIRED");
    }
    s.login("frank", "franks-new-password").await;
    // Used: refused.
    s.post(
        "/api/auth/password-reset",
        Auth::None,
        json!({"token": token, "new_password": "another-password-1"}),
    )
    .await
    .assert_error(400, "INVALID_LINK");

    // A newer link replaces the older one.
    let link = |r: Resp| link_token(r.body["url"].as_str().unwrap(), "/reset-password");
    let path = format!("/api/admin/users/{}/reset-link", frank.user_id);
    let first = link(s.post(&path, Auth::Session(&admin), json!({})).await);
    let second = link(s.post(&path, Auth::Session(&admin), json!({})).await);
    s.post(
        "/api/auth/password-reset",
        Auth::None,
        json!({"token": first, "new_password": "another-password-1"}),
    )
    .await
    .assert_error(400, "INVALID_LINK");

    // An expired link is refused (made expired in the store directly).
    let expired = "expired-token-for-the-test";
    let now = confab::clock::now();
    s.state()
        .store
        .put_one_time(
            &confab::auth::tokens::hash_token(expired),
            &confab::store::security::OneTimeToken {
                kind: confab::store::security::OneTimeKind::PasswordReset,
                user_id: uuid::Uuid::parse_str(&frank.user_id).unwrap(),
                created_at: now - 100,
                expires_at: now - 1,
                email: None,
                attempts: 0,
                purpose: None,
            },
        )
        .await
        .unwrap();
    s.post(
        "/api/auth/password-reset",
        Auth::None,
        json!({"token": expired, "new_password": "another-password-1"}),
    )
    .await
    .assert_error(400, "INVALID_LINK");
    let r = s
        .post(
            "/api/auth/password-reset",
            Auth::None,
            json!({"token": second, "new_password": "another-password-1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let a = audit(&s, &admin).await;
    assert!(has(&a, "password.reset_link", "ok"), "{}", a.text);
    assert!(has(&a, "password.reset", "ok"), "{}", a.text);
    assert!(has(&a, "password.reset", "INVALID_LINK"), "{}", a.text);
    assert!(!a.text.contains(&token) && !a.text.contains(&second));
}

/// aiosmtpd on a free loopback port, writing each message it receives into
/// a temporary directory.
struct SmtpSink {
    child: tokio::process::Child,
    port: u16,
    dir: tempfile::TempDir,
    seen: usize,
}

impl SmtpSink {
    async fn start() -> SmtpSink {
        use tokio::io::AsyncBufReadExt;
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/security/smtp_sink.py");
        let mut child = tokio::process::Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start aiosmtpd");
        let out = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(out).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("aiosmtpd starts")
            .unwrap();
        assert_eq!(line.as_deref(), Some("listening"));
        SmtpSink {
            child,
            port,
            dir,
            seen: 0,
        }
    }

    fn config(&self) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: Some(self.port),
            security: SmtpSecurity::None,
            username: None,
            password: None,
            password_file: None,
            from: "confab <confab@example.test>".into(),
        }
    }

    fn messages(&self) -> Vec<String> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| decode_qp(&std::fs::read_to_string(p).unwrap()))
            .collect()
    }

    /// The next message delivered (waits for it).
    async fn next(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let all = self.messages();
            if all.len() > self.seen {
                self.seen += 1;
                return all[self.seen - 1].clone();
            }
            assert!(Instant::now() < deadline, "no mail arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Undoes quoted-printable soft line breaks and `=XX` escapes (mail bodies
/// with long lines come so).
fn decode_qp(s: &str) -> String {
    let s = s.replace("=\r\n", "").replace("=\n", "");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'='
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits until the audit log has `action` with `outcome` (the reset mail
/// is looked up and sent after the answer).
async fn wait_audit(s: &TestServer, admin: &Session, action: &str, outcome: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if has(&audit(s, admin).await, action, outcome) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {action} {outcome} in the audit log"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn mailed_reset_needs_a_verified_address_and_reveals_no_account() {
    let mut smtp = SmtpSink::start().await;
    let cfg = smtp.config();
    let s = TestServer::start_with(|c| c.smtp = Some(cfg)).await;
    let info = s.get("/api/server", Auth::None).await;
    assert_eq!(info.body["password_reset_email"], true);
    let admin = s.setup_admin("admin").await;
    let gina = s.user(&admin, "gina").await;

    // Setting an address mails a verification link to it.
    let r = s
        .req(
            reqwest::Method::PUT,
            "/api/auth/email",
            Auth::Session(&gina),
            Some(json!({"email": "gina@example.test"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["email_verified"], false);
    let mail = smtp.next().await;
    assert!(mail.contains("X-Rcpt-To: gina@example.test"), "{mail}");
    let verify = link_token(&mail, "/verify-email");

    // Unverified: a reset request sends nothing.
    let ask = |who: &str| {
        let who = who.to_string();
        let s = &s;
        async move {
            let t = Instant::now();
            let r = s
                .post(
                    "/api/auth/password-reset/request",
                    Auth::None,
                    json!({"username": who}),
                )
                .await;
            (r, t.elapsed())
        }
    };
    let (r, _) = ask("gina").await;
    assert_eq!(r.status, 202, "{}", r.text);
    wait_audit(&s, &admin, "password.reset_request", "NO_MATCH").await;
    assert_eq!(
        smtp.messages().len(),
        1,
        "no reset mail to an unverified address"
    );

    let r = s
        .post(
            "/api/auth/email/verify",
            Auth::None,
            json!({"token": verify}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["email_verified"], true);
    s.post(
        "/api/auth/email/verify",
        Auth::None,
        json!({"token": verify}),
    )
    .await
    .assert_error(400, "INVALID_LINK");

    // The same answer for an account that exists and one that does not.
    let (known, t_known) = ask("gina@example.test").await;
    let (unknown, t_unknown) = ask("nobody@example.test").await;
    let (unknown_name, _) = ask("nobody").await;
    assert_eq!(known.status, 202);
    for r in [&unknown, &unknown_name] {
        assert_eq!(r.status, known.status);
        assert_eq!(r.body["message"], known.body["message"]);
        assert_eq!(
            r.body.as_object().unwrap().len(),
            known.body.as_object().unwrap().len()
        );
    }
    // The lookup and the mail happen after the answer: both are quick.
    assert!(
        t_known < Duration::from_secs(2) && t_unknown < Duration::from_secs(2),
        "{t_known:?} {t_unknown:?}"
    );

    let mail = smtp.next().await;
    assert!(mail.contains("X-Rcpt-To: gina@example.test"), "{mail}");
    assert!(mail.contains("Subject: Reset your password"), "{mail}");
    let token = link_token(&mail, "/reset-password");
    let r = s
        .post(
            "/api/auth/password-reset",
            Auth::None,
            json!({"token": token, "new_password": "ginas-new-password"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    s.get("/api/auth/me", Auth::Session(&gina))
        .await
        .assert_error(401, "AUTH_REQUIRED");
    let gina = s.login("gina", "ginas-new-password").await;
    s.post(
        "/api/auth/password-reset",
        Auth::None,
        json!({"token": token, "new_password": "ginas-third-password"}),
    )
    .await
    .assert_error(400, "INVALID_LINK");

    // A changed address is unverified again, and never gets reset mail.
    let r = s
        .req(
            reqwest::Method::PUT,
            "/api/auth/email",
            Auth::Session(&gina),
            Some(json!({"email": "new-gina@example.test"})),
        )
        .await;
    assert_eq!(r.body["email_verified"], false);
    let mail = smtp.next().await;
    assert!(mail.contains("X-Rcpt-To: new-gina@example.test"), "{mail}");

    let a = audit(&s, &admin).await;
    for (action, outcome) in [
        ("email.change", "ok"),
        ("email.verify", "ok"),
        ("email.verification_sent", "ok"),
        ("password.reset_request", "ok"),
        ("password.reset", "ok"),
    ] {
        assert!(has(&a, action, outcome), "{action} {outcome}: {}", a.text);
    }
    assert!(!a.text.contains(&token) && !a.text.contains(&verify));
}

#[tokio::test]
async fn without_smtp_reset_mail_is_refused_plainly() {
    let s = TestServer::start().await;
    let info = s.get("/api/server", Auth::None).await;
    assert_eq!(info.body["password_reset_email"], false);
    s.post(
        "/api/auth/password-reset/request",
        Auth::None,
        json!({"username": "anyone"}),
    )
    .await
    .assert_error(409, "MAIL_NOT_CONFIGURED");
}

#[tokio::test]
async fn the_command_line_makes_a_reset_link_and_turns_two_factor_off() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let (_, _) = enrol(&s, &admin).await;
    let dir = s.stop().await;
    let run = |args: &[&str]| {
        let out = common::proc::confab()
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let link = run(&["user", "reset-link", "admin"]);
    let token = link_token(link.trim(), "/reset-password");
    let off = run(&["user", "reset-two-factor", "admin"]);
    assert!(off.contains("two-factor sign-in is now off"), "{off}");

    let s = TestServer::start_in(dir, |_| {}).await;
    let r = s
        .post(
            "/api/auth/password-reset",
            Auth::None,
            json!({"token": token, "new_password": "admins-new-password"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Two-factor is off: the password alone signs in.
    let admin = s.login("admin", "admins-new-password").await;
    let a = audit(&s, &admin).await;
    assert!(has(&a, "password.reset_link", "ok"), "{}", a.text);
    assert!(has(&a, "admin.2fa.reset", "ok"), "{}", a.text);
}
