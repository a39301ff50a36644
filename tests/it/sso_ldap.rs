//! LDAP sign-in against Debian's `slapd`, started here on a free loopback
//! port with a small directory (`slapadd` into a temp dir): the sign-in
//! form checks the directory first, links the account by the entry's DN,
//! creates it on first sign-in and maps groups to the admin role.

use crate::common::oidc::free_port;
use crate::common::{Auth, PASSWORD, TestServer};
use confab::config::{LdapConfig, Secret};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BASE: &str = "dc=example,dc=org";
const SERVICE_DN: &str = "cn=confab,ou=services,dc=example,dc=org";
const SERVICE_PW: &str = "service-secret";

const LDIF: &str = "\
dn: dc=example,dc=org
objectClass: top
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: ou=services,dc=example,dc=org
objectClass: organizationalUnit
ou: services

dn: cn=confab,ou=services,dc=example,dc=org
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: confab
userPassword: service-secret

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: Admin
mail: alice@example.org
userPassword: alice-secret

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: User
mail: bob@example.org
userPassword: bob-secret

dn: uid=carol,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: carol
cn: Carol
sn: Outsider
userPassword: carol-secret

dn: cn=confab-users,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: confab-users
member: uid=alice,ou=people,dc=example,dc=org
member: uid=bob,ou=people,dc=example,dc=org

dn: cn=confab-admins,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: confab-admins
member: uid=alice,ou=people,dc=example,dc=org
";

/// slapd serving the directory above; stopped when dropped.
pub(crate) struct Slapd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Slapd {
    pub(crate) fn start() -> Slapd {
        let slapd = ["/usr/sbin/slapd", "/usr/libexec/slapd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("slapd is installed (tests/run.sh installs slapd and ldap-utils)");
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        let conf = dir.path().join("slapd.conf");
        std::fs::write(
            &conf,
            format!(
                "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {pid}
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
suffix \"{BASE}\"
rootdn \"cn=admin,{BASE}\"
rootpw admin-secret-not-used
directory {db}
maxsize 10485760
access to attrs=userPassword by self read by anonymous auth by * none
access to * by users read by * none
",
                pid = dir.path().join("slapd.pid").display(),
                db = db.display()
            ),
        )
        .unwrap();
        let ldif = dir.path().join("data.ldif");
        std::fs::write(&ldif, LDIF).unwrap();
        let out = Command::new(slapd.replace("slapd", "slapadd"))
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&ldif)
            .output()
            .expect("slapadd runs");
        assert!(
            out.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let url = format!("ldap://127.0.0.1:{port}");
        let child = Command::new(slapd)
            .arg("-h")
            .arg(format!("{url}/"))
            .arg("-f")
            .arg(&conf)
            .args(["-d", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slapd starts");
        let mut s = Slapd {
            child,
            url,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("slapd exited: {st}");
            }
            assert!(Instant::now() < deadline, "slapd did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    pub(crate) fn config(&self) -> LdapConfig {
        LdapConfig {
            url: self.url.clone(),
            bind_dn: Some(SERVICE_DN.into()),
            bind_password: Some(Secret(SERVICE_PW.into())),
            user_base: format!("ou=people,{BASE}"),
            group_base: Some(format!("ou=groups,{BASE}")),
            required_groups: vec!["confab-users".into()],
            admin_groups: vec![format!("cn=confab-admins,ou=groups,{BASE}")],
            ..LdapConfig::default()
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn login(s: &TestServer, name: &str, pw: &str) -> crate::common::Resp {
    s.post(
        "/api/auth/login",
        Auth::None,
        json!({"username": name, "password": pw}),
    )
    .await
}

#[tokio::test]
async fn directory_users_sign_in_get_accounts_and_roles_from_groups() {
    let d = Slapd::start();
    let s = TestServer::start_with(|c| c.ldap = Some(d.config())).await;
    let root = s.setup_admin("root").await;
    let info = s.get("/api/server", Auth::None).await;
    assert_eq!(info.body["ldap"], true, "{}", info.text);

    // First sign-in creates the account; the admin group makes an admin.
    let r = login(&s, "alice", "alice-secret").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["user"]["username"], "alice");
    assert_eq!(r.body["user"]["role"], "admin");
    assert_eq!(r.body["user"]["email"], "alice@example.org");
    let alice_id = r.body["user"]["id"].clone();
    let r = login(&s, "bob", "bob-secret").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["user"]["role"], "user");
    let bob = crate::common::Session::from_resp(&r);
    let ids = s.get("/api/auth/identities", Auth::Session(&bob)).await;
    assert_eq!(
        ids.body["identities"][0]["provider"], "ldap",
        "{}",
        ids.text
    );

    // Again: the same account, found by its DN.
    let r = login(&s, "alice", "alice-secret").await;
    assert_eq!(r.body["user"]["id"], alice_id);
    // Names are matched by the directory as it matches them.
    let r = login(&s, "ALICE", "alice-secret").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["user"]["id"], alice_id);

    // Wrong password, unknown user, an empty password (an anonymous bind
    // LDAP would accept): refused like any wrong password.
    for (n, p) in [("alice", "wrong"), ("zed", "whatever"), ("alice", "")] {
        let r = login(&s, n, p).await;
        r.assert_error(401, "INVALID_CREDENTIALS");
    }
    // Not in the required group: the right password, still refused.
    let r = login(&s, "carol", "carol-secret").await;
    r.assert_error(403, "SSO_NOT_ALLOWED");

    // The local admin still signs in with the local password.
    let r = login(&s, "root", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // Audited, without passwords.
    let r = s
        .get("/api/admin/audit?limit=200", Auth::Session(&root))
        .await;
    let text = r.text.clone();
    let entries: Vec<Value> = r.body["items"]
        .as_array()
        .or_else(|| r.body["entries"].as_array())
        .cloned()
        .unwrap_or_else(|| panic!("{text}"));
    let n = |a: &str, o: &str| {
        entries
            .iter()
            .filter(|e| e["action"] == a && e["outcome"] == o)
            .count()
    };
    assert_eq!(n("sso.create", "ok"), 2, "{text}");
    assert_eq!(n("sso.login", "SSO_NOT_ALLOWED"), 1, "{text}");
    for secret in ["alice-secret", "bob-secret", "carol-secret", SERVICE_PW] {
        assert!(!text.contains(secret), "{secret} is in the audit log");
    }
}

#[tokio::test]
async fn dn_template_with_local_passwords_off() {
    let d = Slapd::start();
    let cfg = LdapConfig {
        url: d.url.clone(),
        user_dn_template: Some(format!("uid={{username}},ou=people,{BASE}")),
        ..LdapConfig::default()
    };
    let s = TestServer::start_with(|c| {
        c.ldap = Some(cfg);
        c.auth.local_passwords = false;
    })
    .await;
    s.setup_admin("root").await;
    let r = login(&s, "bob", "bob-secret").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["user"]["role"], "user");
    // Local passwords are off: the local admin's is not accepted.
    let r = login(&s, "root", PASSWORD).await;
    r.assert_error(401, "INVALID_CREDENTIALS");
    let r = login(&s, "bob", "wrong").await;
    r.assert_error(401, "INVALID_CREDENTIALS");
    // A name that would change the DN's meaning is escaped, not injected.
    let r = login(&s, "bob,ou=people", "bob-secret").await;
    r.assert_error(401, "INVALID_CREDENTIALS");
}

#[tokio::test]
async fn an_unreachable_directory_leaves_local_passwords_working() {
    let cfg = LdapConfig {
        url: format!("ldap://127.0.0.1:{}", free_port()),
        user_dn_template: Some(format!("uid={{username}},ou=people,{BASE}")),
        timeout_secs: 2,
        ..LdapConfig::default()
    };
    let s = TestServer::start_with(|c| c.ldap = Some(cfg)).await;
    s.setup_admin("root").await;
    let r = login(&s, "root", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = login(&s, "bob", "bob-secret").await;
    r.assert_error(401, "INVALID_CREDENTIALS");
}
