//! The store contract: what every storage backend must do, written only
//! against the traits of `confab::store` (`&dyn Store`), never against a
//! backend's internals. redb runs it here (`on_redb`), and PostgreSQL
//! (`on_postgres`, one database per test on the cluster of `common::pg`);
//! a new backend adds a
//! module (here or in a file of its own) with an `async fn fresh() ->
//! (SharedStore, guard)` that opens a new, empty store, and calls
//! `crate::store_contract::contract_tests!(fresh);`: one test per case.
//!
//! Each case is a `pub async fn case(s: &dyn Store)` that starts from an
//! empty store. It covers every trait method: the happy path, not-found,
//! conflicts, ownership (another user's record answers NotFound exactly as
//! a missing one does) and the atomicity of the multi-record operations
//! (all or nothing).

use confab::providers::ProviderKind;
use confab::store::acme::{AcmeAccountRecord, AcmeCertRecord};
use confab::store::audit_query::{AuditFilter, MAX_SCAN};
use confab::store::chat::{
    Conversation, ConversationCursor, ConversationFilter, Message, MessageError, MessageRole,
    MessageStatus, ModelParamsPatch, Usage,
};
use confab::store::groups::Group;
use confab::store::identities::{IdentityLink, SsoState};
use confab::store::model_settings::{ModelPrice, ModelSetting};
use confab::store::presets::{Branding, Logo, Preset, PresetParams, SavedPrompt, UserSettings};
use confab::store::provider_records::StoredProvider;
use confab::store::search_outbox::Resolved;
use confab::store::security::{
    OneTimeKind, OneTimeToken, RecoveryCode, TwoFactor, TwoFactorPolicy,
};
use confab::store::uploads::{Thumbnail, Upload, UploadCreated};
use confab::store::usage::{Charge, MAX_NAME, UsageCounts, UsageRow};
use confab::store::{
    ApiKey, AuditEntry, ConversationPatch, Invite, QuotaOverride, RefreshOutcome, RefreshToken,
    Revoked, Role, SearchablePage, Session, SignOut, Store, StoreError, TitleChange, User,
    UserPatch, UserStatus,
};
use futures::future::join_all;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use uuid::{NoContext, Timestamp, Uuid};

// ---- builders ---------------------------------------------------------

/// "Now" for every expiry in the suite (unix seconds).
const NOW: i64 = 1_750_000_000;
const DEFAULT_TITLE: &str = "New chat";

/// A fresh id; ids sort in the order they are made (UUIDv7 one millisecond
/// apart), as confab's own ids do, so "oldest first" and "by id" agree.
fn id() -> Uuid {
    static NEXT_MS: AtomicU64 = AtomicU64::new(1_700_000_000_000);
    let ms = NEXT_MS.fetch_add(1, Ordering::Relaxed);
    Uuid::new_v7(Timestamp::from_unix(
        NoContext,
        ms / 1000,
        (ms % 1000) as u32 * 1_000_000,
    ))
}

/// A token hash (any unique bytes).
fn hash() -> Vec<u8> {
    id().as_bytes().to_vec()
}

fn user(name: &str, role: Role) -> User {
    User {
        id: id(),
        username: name.into(),
        email: Some(format!("{name}@example.test")),
        email_verified: false,
        password_hash: format!("$argon2id$fake${name}"),
        role,
        status: UserStatus::Active,
        created_at: NOW,
        updated_at: NOW,
        quota: None,
    }
}

async fn add_user(s: &dyn Store, name: &str, role: Role) -> User {
    let u = user(name, role);
    s.create_user(&u, false, None, NOW).await.unwrap();
    u
}

fn session(u: &User, last_seen: i64, expires_at: i64) -> (Vec<u8>, Session) {
    let s = Session {
        id: id(),
        user_id: u.id,
        created_at: NOW,
        last_seen,
        expires_at,
        ip: Some("192.0.2.7".into()),
        user_agent: Some("contract-test".into()),
        csrf_secret: format!("csrf-{}", id().simple()),
    };
    (hash(), s)
}

async fn add_session(s: &dyn Store, u: &User) -> (Vec<u8>, Session) {
    let (h, sess) = session(u, NOW, NOW + 3600);
    s.put_session(&h, &sess).await.unwrap();
    (h, sess)
}

fn api_key(u: &User, name: &str) -> (Vec<u8>, ApiKey) {
    let k = ApiKey {
        id: id(),
        user_id: u.id,
        name: name.into(),
        scopes: vec!["chat".into(), "search".into()],
        expires_at: Some(NOW + 86_400),
        last_used_at: None,
        created_at: NOW,
        prefix: "cfb_1234".into(),
    };
    (hash(), k)
}

async fn add_api_key(s: &dyn Store, u: &User) -> (Vec<u8>, ApiKey) {
    let (h, k) = api_key(u, "laptop");
    s.put_api_key(&h, &k).await.unwrap();
    (h, k)
}

fn invite(created_by: Option<Uuid>, uses_left: u32, created_at: i64) -> Invite {
    Invite {
        code: format!("inv-{}", id().simple()),
        created_by,
        created_at,
        expires_at: NOW + 3600,
        uses_left,
        role: Role::User,
    }
}

/// A refresh token of `family`; stored with `put_refresh` under a new hash.
async fn add_refresh(s: &dyn Store, u: &User, family: Uuid, expires_at: i64) -> Vec<u8> {
    let h = hash();
    let r = RefreshToken {
        user_id: u.id,
        family_id: family,
        expires_at,
        used: false,
        created_at: NOW,
    };
    s.put_refresh(&h, &r).await.unwrap();
    h
}

fn conversation(owner: &User, title: &str, updated_at_ms: u64) -> Conversation {
    Conversation {
        id: id(),
        user_id: owner.id,
        title: title.into(),
        title_auto: false,
        model: Some("model-a".into()),
        provider: Some("prov".into()),
        system_prompt: None,
        created_at: NOW,
        updated_at_ms,
        pinned: false,
        archived: false,
        current_leaf: None,
        preset_id: None,
        params: Default::default(),
        collections: Vec::new(),
    }
}

/// A conversation still named automatically (the placeholder title).
fn untitled(owner: &User) -> Conversation {
    Conversation {
        title: DEFAULT_TITLE.into(),
        title_auto: true,
        ..conversation(owner, DEFAULT_TITLE, 1_000)
    }
}

async fn add_conversation(s: &dyn Store, owner: &User, title: &str) -> Conversation {
    let c = conversation(owner, title, 1_000);
    s.create_conversation(&c).await.unwrap();
    c
}

/// A complete message.
fn message(c: &Conversation, parent: Option<Uuid>, role: MessageRole, text: &str) -> Message {
    Message {
        id: id(),
        conversation_id: c.id,
        parent_id: parent,
        role,
        content: text.into(),
        model: (role == MessageRole::Assistant).then(|| "model-a".into()),
        provider: (role == MessageRole::Assistant).then(|| "prov".into()),
        status: MessageStatus::Complete,
        usage: None,
        created_at: NOW,
        duration_ms: None,
        finish_reason: None,
        error: None,
        sources: Vec::new(),
        attachments: Vec::new(),
    }
}

fn ask(c: &Conversation, parent: Option<Uuid>, text: &str) -> Message {
    message(c, parent, MessageRole::User, text)
}

fn reply(c: &Conversation, parent: Option<Uuid>, text: &str) -> Message {
    message(c, parent, MessageRole::Assistant, text)
}

/// An assistant message being streamed (no text yet).
fn answering(c: &Conversation, parent: Option<Uuid>) -> Message {
    Message {
        status: MessageStatus::Streaming,
        ..reply(c, parent, "")
    }
}

/// The final state of a streamed answer.
fn finished(m: &Message, text: &str) -> Message {
    Message {
        content: text.into(),
        status: MessageStatus::Complete,
        usage: Some(Usage {
            input_tokens: 12,
            output_tokens: 34,
            estimated: false,
        }),
        duration_ms: Some(1500),
        finish_reason: Some("stop".into()),
        ..m.clone()
    }
}

/// Starts a turn in a new conversation: (conversation, question, answer
/// still streaming).
async fn new_turn(s: &dyn Store, owner: &User, text: &str) -> (Conversation, Message, Message) {
    let c = untitled(owner);
    let q = ask(&c, None, text);
    let a = answering(&c, Some(q.id));
    let c = s
        .start_turn(
            owner.id,
            Some(&c),
            Some("model-a".into()),
            ModelParamsPatch::default(),
            Some(&q),
            &a,
        )
        .await
        .unwrap();
    (c, q, a)
}

fn audit_entry(at: i64, ms: u32, actor: Option<&User>, action: &str) -> AuditEntry {
    AuditEntry {
        // Audit ids are UUIDv7 of the moment `at` (a backend may use either).
        id: Uuid::new_v7(Timestamp::from_unix(NoContext, at as u64, ms * 1_000_000)),
        at,
        actor: actor.map(|u| u.id),
        actor_name: actor.map(|u| u.username.clone()),
        action: action.into(),
        target: Some("target".into()),
        ip: Some("198.51.100.1".into()),
        user_agent: Some("contract-test".into()),
        outcome: "ok".into(),
    }
}

fn provider(name: &str, created_at: i64) -> StoredProvider {
    StoredProvider {
        name: name.into(),
        kind: ProviderKind::Openai,
        base_url: format!("http://127.0.0.1:9/{name}/v1"),
        models: Some(vec!["m1".into(), "m2".into()]),
        enabled: true,
        encrypted_key: Some(vec![1, 2, 3, 250]),
        created_at,
        updated_at: created_at,
        priority: -3,
        allow_user_keys: true,
    }
}

fn charge(provider: &str, model: &str, input: u64, output: u64) -> Charge {
    Charge {
        provider: provider.into(),
        model: model.into(),
        messages: 1,
        input_tokens: input,
        output_tokens: output,
        cost_nanos: input * 10 + output,
        api_key: None,
    }
}

// ---- assertions -------------------------------------------------------

/// Records compare by every field they store (their serialized form).
fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

macro_rules! assert_same {
    ($got:expr, $want:expr) => {
        assert_eq!(json(&$got), json(&$want), "{} differs", stringify!($got))
    };
}

macro_rules! assert_err {
    ($e:expr, $pat:pat) => {
        match $e {
            Err($pat) => {}
            other => panic!(
                "{}: expected {}, got {:?}",
                stringify!($e),
                stringify!($pat),
                other
            ),
        }
    };
}

macro_rules! assert_not_found {
    ($e:expr) => {
        assert_err!($e, StoreError::NotFound)
    };
}

macro_rules! assert_conflict {
    ($e:expr) => {
        assert_err!($e, StoreError::Conflict(_))
    };
}

fn conv_ids(v: &[Conversation]) -> Vec<Uuid> {
    v.iter().map(|c| c.id).collect()
}

fn msg_ids(v: &[Message]) -> Vec<Uuid> {
    v.iter().map(|m| m.id).collect()
}

fn sorted(mut v: Vec<Uuid>) -> Vec<Uuid> {
    v.sort();
    v
}

async fn all_conversations(s: &dyn Store, u: &User, filter: ConversationFilter) -> Vec<Uuid> {
    conv_ids(
        &s.list_conversations(u.id, None, filter, 1000)
            .await
            .unwrap(),
    )
}

/// The pending search ops, resolved.
async fn outbox(s: &dyn Store) -> Vec<(u64, Resolved)> {
    s.outbox_batch(100_000).await.unwrap()
}

fn resolved_message(ops: &[(u64, Resolved)], message_id: Uuid) -> Option<&Message> {
    ops.iter().find_map(|(_, r)| match r {
        Resolved::Message(m) if m.message.id == message_id => Some(&m.message),
        _ => None,
    })
}

fn resolved_title(ops: &[(u64, Resolved)], conversation_id: Uuid) -> Option<&Conversation> {
    ops.iter().find_map(|(_, r)| match r {
        Resolved::Title(c) if c.id == conversation_id => Some(c.as_ref()),
        _ => None,
    })
}

// ---- users ------------------------------------------------------------

pub async fn users_create_get_find_count(s: &dyn Store) {
    assert_eq!(s.user_count().await.unwrap(), 0);
    let root = user("root", Role::Admin);
    s.create_user(&root, true, None, NOW).await.unwrap();
    let bob = add_user(s, "Bob", Role::User).await;
    assert_eq!(s.user_count().await.unwrap(), 2);

    assert_same!(s.get_user(root.id).await.unwrap(), root);
    assert_same!(s.get_user(bob.id).await.unwrap(), bob);
    assert_not_found!(s.get_user(id()).await);

    let found = s.find_user_by_name("Bob").await.unwrap().expect("by name");
    assert_same!(found, bob);
    // One account whatever the case of the name (`username::key`); the
    // stored spelling is kept.
    for spelling in ["bob", "BOB", "bOb"] {
        let u = s.find_user_by_name(spelling).await.unwrap();
        assert_eq!(u.map(|u| (u.id, u.username)), Some((bob.id, "Bob".into())));
    }
    assert!(s.find_user_by_name("carol").await.unwrap().is_none());
}

pub async fn users_create_conflicts_change_nothing(s: &dyn Store) {
    let root = user("root", Role::Admin);
    s.create_user(&root, true, None, NOW).await.unwrap();
    // The name is taken, in any case.
    for name in ["root", "ROOT"] {
        let again = user(name, Role::User);
        assert_conflict!(s.create_user(&again, false, None, NOW).await);
        assert_not_found!(s.get_user(again.id).await);
    }
    // First-admin setup happens once, whatever the name.
    let second = user("second_admin", Role::Admin);
    assert_conflict!(s.create_user(&second, true, None, NOW).await);
    assert_not_found!(s.get_user(second.id).await);
    assert!(s.find_user_by_name("second_admin").await.unwrap().is_none());
    assert_eq!(s.user_count().await.unwrap(), 1);
    assert_same!(s.get_user(root.id).await.unwrap(), root);
}

pub async fn users_concurrent_registrations_of_one_name_one_wins(s: &dyn Store) {
    let racers: Vec<User> = (0..8).map(|_| user("racer", Role::User)).collect();
    let results = join_all(racers.iter().map(|u| s.create_user(u, false, None, NOW))).await;
    let winners: Vec<&User> = racers
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(u, _)| u)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in &results {
        assert!(matches!(r, Ok(()) | Err(StoreError::Conflict(_))), "{r:?}");
    }
    assert_eq!(s.user_count().await.unwrap(), 1);
    let found = s.find_user_by_name("racer").await.unwrap().unwrap();
    assert_eq!(found.id, winners[0].id);
}

pub async fn users_create_with_invite_spends_one_use(s: &dyn Store) {
    let root = add_user(s, "root", Role::Admin).await;
    let inv = invite(Some(root.id), 2, NOW);
    s.put_invite(&inv).await.unwrap();

    let a = user("invited_a", Role::User);
    s.create_user(&a, false, Some(&inv.code), NOW)
        .await
        .unwrap();
    assert_eq!(s.get_invite(&inv.code).await.unwrap().unwrap().uses_left, 1);
    let b = user("invited_b", Role::User);
    s.create_user(&b, false, Some(&inv.code), NOW)
        .await
        .unwrap();
    assert_eq!(s.get_invite(&inv.code).await.unwrap().unwrap().uses_left, 0);
    assert_same!(s.get_user(b.id).await.unwrap(), b);

    // Used up, unknown, expired (at `now`): NotFound, and no user.
    let c = user("invited_c", Role::User);
    assert_not_found!(s.create_user(&c, false, Some(&inv.code), NOW).await);
    assert_not_found!(s.create_user(&c, false, Some("no-such-code"), NOW).await);
    let old = Invite {
        expires_at: NOW,
        ..invite(Some(root.id), 5, NOW - 10)
    };
    s.put_invite(&old).await.unwrap();
    assert_not_found!(s.create_user(&c, false, Some(&old.code), NOW).await);
    assert_eq!(s.get_invite(&old.code).await.unwrap().unwrap().uses_left, 5);
    assert_not_found!(s.get_user(c.id).await);
    assert!(s.find_user_by_name("invited_c").await.unwrap().is_none());
    assert_eq!(s.user_count().await.unwrap(), 3);
}

pub async fn users_create_refused_leaves_the_invite_unspent(s: &dyn Store) {
    let root = add_user(s, "root", Role::Admin).await;
    add_user(s, "taken", Role::User).await;
    let inv = invite(Some(root.id), 1, NOW);
    s.put_invite(&inv).await.unwrap();

    // A taken name: the invite is not spent.
    let dup = user("Taken", Role::User);
    assert_conflict!(s.create_user(&dup, false, Some(&inv.code), NOW).await);
    // Setup already done: the invite is not spent either.
    let setup = user("fresh_setup", Role::Admin);
    assert_conflict!(s.create_user(&setup, true, Some(&inv.code), NOW).await);
    assert_eq!(s.get_invite(&inv.code).await.unwrap().unwrap().uses_left, 1);
    assert_eq!(s.user_count().await.unwrap(), 2);

    // Its one use is still there for a good registration.
    let ok = user("newcomer", Role::User);
    s.create_user(&ok, false, Some(&inv.code), NOW)
        .await
        .unwrap();
    assert_eq!(s.get_invite(&inv.code).await.unwrap().unwrap().uses_left, 0);
}

pub async fn users_concurrent_registrations_never_overspend_an_invite(s: &dyn Store) {
    let root = add_user(s, "root", Role::Admin).await;
    let inv = invite(Some(root.id), 3, NOW);
    s.put_invite(&inv).await.unwrap();
    let people: Vec<User> = (0..8)
        .map(|i| user(&format!("person{i}"), Role::User))
        .collect();
    let results = join_all(
        people
            .iter()
            .map(|u| s.create_user(u, false, Some(&inv.code), NOW)),
    )
    .await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        3,
        "{results:?}"
    );
    for r in &results {
        assert!(matches!(r, Ok(()) | Err(StoreError::NotFound)), "{r:?}");
    }
    assert_eq!(s.get_invite(&inv.code).await.unwrap().unwrap().uses_left, 0);
    assert_eq!(s.user_count().await.unwrap(), 4);
}

pub async fn users_update_applies_the_patch(s: &dyn Store) {
    add_user(s, "root", Role::Admin).await;
    let carol = add_user(s, "carol", Role::User).await;
    let quota = QuotaOverride {
        messages_per_day: Some(5),
        tokens_per_day: None,
        storage_bytes: Some(1000),
    };
    let (back, revoked) = s
        .update_user(
            carol.id,
            UserPatch {
                role: Some(Role::Admin),
                password_hash: Some("new-hash".into()),
                quota: Some(Some(quota.clone())),
                updated_at: NOW + 10,
                ..UserPatch::default()
            },
            None,
        )
        .await
        .unwrap();
    assert!(revoked.is_none());
    let want = User {
        role: Role::Admin,
        password_hash: "new-hash".into(),
        quota: Some(quota),
        updated_at: NOW + 10,
        ..carol.clone()
    };
    assert_same!(back, want);
    assert_same!(s.get_user(carol.id).await.unwrap(), want);

    // Unset fields are kept; `Some(None)` returns to the default quota.
    let (back, _) = s
        .update_user(
            carol.id,
            UserPatch {
                quota: Some(None),
                status: Some(UserStatus::Disabled),
                updated_at: NOW + 20,
                ..UserPatch::default()
            },
            None,
        )
        .await
        .unwrap();
    let want = User {
        quota: None,
        status: UserStatus::Disabled,
        updated_at: NOW + 20,
        ..want
    };
    assert_same!(back, want);
    assert_same!(s.get_user(carol.id).await.unwrap(), want);

    assert_not_found!(s.update_user(id(), UserPatch::default(), None).await);
    let ghost = s
        .update_user(
            id(),
            UserPatch::default(),
            Some(SignOut {
                keep_session: None,
                api_keys: true,
            }),
        )
        .await;
    assert_not_found!(ghost);
}

pub async fn users_the_last_active_admin_stays(s: &dyn Store) {
    let root = add_user(s, "root", Role::Admin).await;
    let dave = add_user(s, "dave", Role::User).await;
    let (sh, _) = add_session(s, &root).await;
    add_api_key(s, &root).await;
    let rt = add_refresh(s, &root, id(), NOW + 1000).await;
    let everything = Some(SignOut {
        keep_session: None,
        api_keys: true,
    });

    // Demoting or disabling the only active admin is refused, and nothing
    // changes: neither the user nor the sign-out that came with it.
    let demote = UserPatch {
        role: Some(Role::User),
        password_hash: Some("changed".into()),
        updated_at: NOW + 1,
        ..UserPatch::default()
    };
    assert_conflict!(s.update_user(root.id, demote.clone(), everything).await);
    let disable = UserPatch {
        status: Some(UserStatus::Disabled),
        updated_at: NOW + 1,
        ..UserPatch::default()
    };
    assert_conflict!(s.update_user(root.id, disable.clone(), everything).await);
    assert_same!(s.get_user(root.id).await.unwrap(), root);
    assert!(s.get_session(&sh).await.unwrap().is_some());
    assert_eq!(s.list_api_keys(root.id).await.unwrap().len(), 1);
    assert_eq!(
        s.rotate_refresh(&rt, &hash(), NOW, NOW + 2000)
            .await
            .unwrap(),
        RefreshOutcome::Rotated { user_id: root.id }
    );

    // A change that keeps them an active admin is fine.
    let (back, _) = s
        .update_user(
            root.id,
            UserPatch {
                password_hash: Some("rotated".into()),
                updated_at: NOW + 2,
                ..UserPatch::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(back.password_hash, "rotated");

    // With a second active admin, one may step down; then the other is
    // the last.
    let promote = UserPatch {
        role: Some(Role::Admin),
        updated_at: NOW + 3,
        ..UserPatch::default()
    };
    s.update_user(dave.id, promote, None).await.unwrap();
    let (back, _) = s.update_user(root.id, demote, None).await.unwrap();
    assert_eq!(back.role, Role::User);
    assert_conflict!(s.update_user(dave.id, disable.clone(), None).await);

    // A disabled admin does not count as one.
    let disabled_admin = UserPatch {
        role: Some(Role::Admin),
        status: Some(UserStatus::Disabled),
        updated_at: NOW + 4,
        ..UserPatch::default()
    };
    s.update_user(root.id, disabled_admin, None).await.unwrap();
    assert_conflict!(s.update_user(dave.id, disable, None).await);
    let dave_now = s.get_user(dave.id).await.unwrap();
    assert_eq!(
        (dave_now.role, dave_now.status),
        (Role::Admin, UserStatus::Active)
    );
}

pub async fn users_sign_out_ends_sessions_families_and_keys_together(s: &dyn Store) {
    let root = add_user(s, "root", Role::Admin).await;
    let eve = add_user(s, "eve", Role::User).await;
    let (h1, s1) = add_session(s, &eve).await;
    let (h2, _) = add_session(s, &eve).await;
    let (h3, _) = add_session(s, &eve).await;
    let (kh1, _) = add_api_key(s, &eve).await;
    add_api_key(s, &eve).await;
    let r1 = add_refresh(s, &eve, id(), NOW + 1000).await;
    let r2 = add_refresh(s, &eve, id(), NOW + 1000).await;
    let (root_sh, _) = add_session(s, &root).await;
    let (root_kh, _) = add_api_key(s, &root).await;
    let root_rt = add_refresh(s, &root, id(), NOW + 1000).await;

    let (back, revoked) = s
        .update_user(
            eve.id,
            UserPatch {
                password_hash: Some("new-password".into()),
                updated_at: NOW + 5,
                ..UserPatch::default()
            },
            Some(SignOut {
                keep_session: Some(s1.id),
                api_keys: true,
            }),
        )
        .await
        .unwrap();
    assert_eq!(back.password_hash, "new-password");
    assert_eq!(
        revoked,
        Some(Revoked {
            sessions: 2,
            api_keys: 2
        })
    );
    let left: Vec<Uuid> = s
        .list_sessions(eve.id)
        .await
        .unwrap()
        .iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(left, [s1.id]);
    assert!(s.get_session(&h1).await.unwrap().is_some());
    assert!(s.get_session(&h2).await.unwrap().is_none());
    assert!(s.get_session(&h3).await.unwrap().is_none());
    assert!(s.list_api_keys(eve.id).await.unwrap().is_empty());
    assert!(s.get_api_key(&kh1).await.unwrap().is_none());
    // Every refresh family of the user ends.
    for r in [&r1, &r2] {
        assert_eq!(
            s.rotate_refresh(r, &hash(), NOW, NOW + 2000).await.unwrap(),
            RefreshOutcome::Invalid
        );
    }
    // Another user keeps everything.
    assert!(s.get_session(&root_sh).await.unwrap().is_some());
    assert!(s.get_api_key(&root_kh).await.unwrap().is_some());
    assert_eq!(
        s.rotate_refresh(&root_rt, &hash(), NOW, NOW + 2000)
            .await
            .unwrap(),
        RefreshOutcome::Rotated { user_id: root.id }
    );
}

pub async fn users_sign_out_without_keys_keeps_api_keys(s: &dyn Store) {
    add_user(s, "root", Role::Admin).await;
    let fay = add_user(s, "fay", Role::User).await;
    add_session(s, &fay).await;
    add_session(s, &fay).await;
    let (kh, _) = add_api_key(s, &fay).await;
    let rt = add_refresh(s, &fay, id(), NOW + 1000).await;
    let (_, revoked) = s
        .update_user(
            fay.id,
            UserPatch {
                updated_at: NOW + 1,
                ..UserPatch::default()
            },
            Some(SignOut {
                keep_session: None,
                api_keys: false,
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        revoked,
        Some(Revoked {
            sessions: 2,
            api_keys: 0
        })
    );
    assert!(s.list_sessions(fay.id).await.unwrap().is_empty());
    assert!(s.get_api_key(&kh).await.unwrap().is_some());
    assert_eq!(
        s.rotate_refresh(&rt, &hash(), NOW, NOW + 2000)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
}

pub async fn users_list_oldest_first_with_cursor(s: &dyn Store) {
    let mut made = Vec::new();
    for i in 0..5 {
        let u = User {
            created_at: NOW + i,
            ..user(&format!("user{i}"), Role::User)
        };
        s.create_user(&u, false, None, NOW).await.unwrap();
        made.push(u.id);
    }
    let all: Vec<Uuid> = s
        .list_users(None, 100)
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(all, made);
    let mut walked = Vec::new();
    let mut cursor = None;
    for want in [2, 2, 1, 0] {
        let page = s.list_users(cursor, 2).await.unwrap();
        assert_eq!(page.len(), want);
        walked.extend(page.iter().map(|u| u.id));
        cursor = page.last().map(|u| u.id).or(cursor);
    }
    assert_eq!(walked, made);
    assert_same!(
        s.list_users(None, 1).await.unwrap()[0],
        s.get_user(made[0]).await.unwrap()
    );
}

// ---- sessions and refresh tokens --------------------------------------

pub async fn sessions_put_get_list_delete(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let ben = add_user(s, "ben", Role::User).await;
    let (ha1, sa1) = add_session(s, &ann).await;
    let (ha2, sa2) = add_session(s, &ann).await;
    let (hb, sb) = add_session(s, &ben).await;

    assert_same!(s.get_session(&ha1).await.unwrap().unwrap(), sa1);
    assert!(s.get_session(&hash()).await.unwrap().is_none());
    let listed = s.list_sessions(ann.id).await.unwrap();
    assert_eq!(
        sorted(listed.iter().map(|x| x.id).collect()),
        sorted(vec![sa1.id, sa2.id])
    );
    let listed_b = s.list_sessions(ben.id).await.unwrap();
    assert_eq!(listed_b.len(), 1);
    assert_same!(listed_b[0], sb);
    assert!(s.list_sessions(id()).await.unwrap().is_empty());

    // Another user's session answers as a missing one, and stays.
    assert_not_found!(s.delete_session(ann.id, sb.id).await);
    assert_not_found!(s.delete_session(ann.id, id()).await);
    assert!(s.get_session(&hb).await.unwrap().is_some());

    s.delete_session(ann.id, sa1.id).await.unwrap();
    assert!(s.get_session(&ha1).await.unwrap().is_none());
    assert!(s.get_session(&ha2).await.unwrap().is_some());
    let listed = s.list_sessions(ann.id).await.unwrap();
    assert_eq!(listed.iter().map(|x| x.id).collect::<Vec<_>>(), [sa2.id]);
    assert_not_found!(s.delete_session(ann.id, sa1.id).await);
}

pub async fn sessions_touch_moves_last_seen_forward(s: &dyn Store) {
    let u = add_user(s, "toucher", Role::Admin).await;
    let (h, sess) = add_session(s, &u).await;
    s.touch_session(&h, NOW + 60).await.unwrap();
    let back = s.get_session(&h).await.unwrap().unwrap();
    assert_same!(
        back,
        Session {
            last_seen: NOW + 60,
            ..sess
        }
    );
    // A missing session is ignored (and not created).
    let ghost = hash();
    s.touch_session(&ghost, NOW + 60).await.unwrap();
    assert!(s.get_session(&ghost).await.unwrap().is_none());
    assert_eq!(s.list_sessions(u.id).await.unwrap().len(), 1);
}

/// Documented ("never back"); redb sets `last_seen` to whatever it is given.
pub async fn sessions_touch_never_moves_last_seen_back(s: &dyn Store) {
    let u = add_user(s, "toucher", Role::Admin).await;
    let (h, _) = add_session(s, &u).await;
    s.touch_session(&h, NOW + 60).await.unwrap();
    s.touch_session(&h, NOW + 30).await.unwrap();
    assert_eq!(
        s.get_session(&h).await.unwrap().unwrap().last_seen,
        NOW + 60
    );
}

pub async fn sessions_delete_all_but_one(s: &dyn Store) {
    let u = add_user(s, "many", Role::Admin).await;
    let other = add_user(s, "other", Role::User).await;
    let (h1, s1) = add_session(s, &u).await;
    add_session(s, &u).await;
    add_session(s, &u).await;
    let (ho, _) = add_session(s, &other).await;

    assert_eq!(
        s.delete_sessions_except(u.id, Some(s1.id)).await.unwrap(),
        2
    );
    let left: Vec<Uuid> = s
        .list_sessions(u.id)
        .await
        .unwrap()
        .iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(left, [s1.id]);
    assert!(s.get_session(&h1).await.unwrap().is_some());
    assert!(s.get_session(&ho).await.unwrap().is_some());
    assert_eq!(s.delete_sessions_except(u.id, None).await.unwrap(), 1);
    assert!(s.get_session(&h1).await.unwrap().is_none());
    assert_eq!(s.delete_sessions_except(u.id, None).await.unwrap(), 0);
    assert_eq!(s.list_sessions(other.id).await.unwrap().len(), 1);
}

pub async fn sessions_prune_expired_and_idle(s: &dyn Store) {
    let u = add_user(s, "pruned", Role::Admin).await;
    let (now, idle) = (NOW + 1000, 600);
    // Expired at `now`; idle for exactly `idle`; alive.
    let (he, expired) = session(&u, now - 1, now);
    let (hi, idle_one) = session(&u, now - idle, now + 10_000);
    let (hl, live) = session(&u, now - idle + 1, now + 10_000);
    for (h, x) in [(&he, &expired), (&hi, &idle_one), (&hl, &live)] {
        s.put_session(h, x).await.unwrap();
    }
    assert_eq!(s.prune_sessions(now, idle).await.unwrap(), 2);
    assert!(s.get_session(&he).await.unwrap().is_none());
    assert!(s.get_session(&hi).await.unwrap().is_none());
    assert!(s.get_session(&hl).await.unwrap().is_some());
    let left: Vec<Uuid> = s
        .list_sessions(u.id)
        .await
        .unwrap()
        .iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(left, [live.id]);
    assert_eq!(s.prune_sessions(now, idle).await.unwrap(), 0);
}

pub async fn refresh_rotation_and_reuse(s: &dyn Store) {
    let u = add_user(s, "rotator", Role::Admin).await;
    let t0 = add_refresh(s, &u, id(), NOW + 100).await;
    let other_family = add_refresh(s, &u, id(), NOW + 100).await;
    let (t1, t2, t3, t9) = (hash(), hash(), hash(), hash());
    let rotated = RefreshOutcome::Rotated { user_id: u.id };

    assert_eq!(
        s.rotate_refresh(&t0, &t1, NOW + 1, NOW + 200)
            .await
            .unwrap(),
        rotated
    );
    assert_eq!(
        s.rotate_refresh(&t1, &t2, NOW + 2, NOW + 300)
            .await
            .unwrap(),
        rotated
    );
    // The spent t0 presented again: reuse, and the family is revoked.
    assert_eq!(
        s.rotate_refresh(&t0, &t9, NOW + 3, NOW + 400)
            .await
            .unwrap(),
        RefreshOutcome::Reused { user_id: u.id }
    );
    // So its newest token fails, and the reuse minted nothing.
    assert_eq!(
        s.rotate_refresh(&t2, &t3, NOW + 4, NOW + 500)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
    assert_eq!(
        s.rotate_refresh(&t9, &hash(), NOW + 4, NOW + 500)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
    assert_eq!(
        s.rotate_refresh(&t3, &hash(), NOW + 4, NOW + 500)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
    // Another family of the same user is untouched.
    assert_eq!(
        s.rotate_refresh(&other_family, &hash(), NOW + 5, NOW + 600)
            .await
            .unwrap(),
        rotated
    );
}

pub async fn refresh_unknown_and_expired_are_invalid(s: &dyn Store) {
    let u = add_user(s, "expiring", Role::Admin).await;
    assert_eq!(
        s.rotate_refresh(&hash(), &hash(), NOW, NOW + 100)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
    // Expired at `now`: invalid, and no successor stored.
    let old = add_refresh(s, &u, id(), NOW + 10).await;
    let next = hash();
    assert_eq!(
        s.rotate_refresh(&old, &next, NOW + 10, NOW + 100)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
    assert_eq!(
        s.rotate_refresh(&next, &hash(), NOW + 11, NOW + 100)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
    // A successor lives until the expiry given for it.
    let a = add_refresh(s, &u, id(), NOW + 1000).await;
    let b = hash();
    assert_eq!(
        s.rotate_refresh(&a, &b, NOW, NOW + 50).await.unwrap(),
        RefreshOutcome::Rotated { user_id: u.id }
    );
    assert_eq!(
        s.rotate_refresh(&b, &hash(), NOW + 50, NOW + 100)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
}

pub async fn tokens_prune_expired_refresh_and_finished_invites(s: &dyn Store) {
    let u = add_user(s, "pruner", Role::Admin).await;
    let family = id();
    let expired = add_refresh(s, &u, family, NOW).await;
    let live = add_refresh(s, &u, family, NOW + 1000).await;
    let gone = Invite {
        expires_at: NOW,
        ..invite(Some(u.id), 3, NOW - 100)
    };
    let used_up = invite(Some(u.id), 0, NOW);
    let usable = invite(Some(u.id), 1, NOW);
    for i in [&gone, &used_up, &usable] {
        s.put_invite(i).await.unwrap();
    }
    assert_eq!(s.prune_tokens(NOW + 1).await.unwrap(), 3);
    assert!(s.get_invite(&gone.code).await.unwrap().is_none());
    assert!(s.get_invite(&used_up.code).await.unwrap().is_none());
    assert!(s.get_invite(&usable.code).await.unwrap().is_some());
    assert_eq!(
        s.rotate_refresh(&expired, &hash(), NOW + 1, NOW + 2000)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
    // The family's live token still works.
    assert_eq!(
        s.rotate_refresh(&live, &hash(), NOW + 1, NOW + 2000)
            .await
            .unwrap(),
        RefreshOutcome::Rotated { user_id: u.id }
    );
    assert_eq!(s.prune_tokens(NOW + 1).await.unwrap(), 0);
}

// ---- API keys and invites ---------------------------------------------

pub async fn api_keys_put_get_touch_list_delete(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let ben = add_user(s, "ben", Role::User).await;
    let (ha1, ka1) = add_api_key(s, &ann).await;
    let (ha2, ka2) = api_key(&ann, "phone");
    s.put_api_key(&ha2, &ka2).await.unwrap();
    let (hb, kb) = add_api_key(s, &ben).await;

    assert_same!(s.get_api_key(&ha1).await.unwrap().unwrap(), ka1);
    assert!(s.get_api_key(&hash()).await.unwrap().is_none());

    s.touch_api_key(&ha1, NOW + 5).await.unwrap();
    let touched = ApiKey {
        last_used_at: Some(NOW + 5),
        ..ka1.clone()
    };
    assert_same!(s.get_api_key(&ha1).await.unwrap().unwrap(), touched);
    let ghost = hash();
    s.touch_api_key(&ghost, NOW + 5).await.unwrap();
    assert!(s.get_api_key(&ghost).await.unwrap().is_none());

    let listed = s.list_api_keys(ann.id).await.unwrap();
    assert_eq!(
        sorted(listed.iter().map(|k| k.id).collect()),
        sorted(vec![ka1.id, ka2.id])
    );
    let listed_b = s.list_api_keys(ben.id).await.unwrap();
    assert_eq!(listed_b.len(), 1);
    assert_same!(listed_b[0], kb);

    // Another user's key answers as a missing one, and stays.
    assert_not_found!(s.delete_api_key(ann.id, kb.id).await);
    assert_not_found!(s.delete_api_key(ann.id, id()).await);
    assert!(s.get_api_key(&hb).await.unwrap().is_some());

    let deleted = s.delete_api_key(ann.id, ka1.id).await.unwrap();
    assert_same!(deleted, touched);
    assert!(s.get_api_key(&ha1).await.unwrap().is_none());
    let listed = s.list_api_keys(ann.id).await.unwrap();
    assert_eq!(listed.iter().map(|k| k.id).collect::<Vec<_>>(), [ka2.id]);
    assert_not_found!(s.delete_api_key(ann.id, ka1.id).await);
}

pub async fn invites_put_get_list_delete(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let ben = add_user(s, "ben", Role::Admin).await;
    let by_ann = invite(Some(ann.id), 2, NOW);
    let by_ben = invite(Some(ben.id), 1, NOW + 1);
    let by_cli = invite(None, 5, NOW + 2);
    for i in [&by_ann, &by_ben, &by_cli] {
        s.put_invite(i).await.unwrap();
    }
    assert_same!(s.get_invite(&by_ann.code).await.unwrap().unwrap(), by_ann);
    assert!(s.get_invite("inv-none").await.unwrap().is_none());
    // Newest first.
    let codes: Vec<String> = s
        .list_invites()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.code)
        .collect();
    assert_eq!(
        codes,
        [&by_cli.code, &by_ben.code, &by_ann.code].map(|c| c.as_str())
    );

    // put replaces.
    let fewer = Invite {
        uses_left: 1,
        ..by_ann.clone()
    };
    s.put_invite(&fewer).await.unwrap();
    assert_same!(s.get_invite(&by_ann.code).await.unwrap().unwrap(), fewer);
    assert_eq!(s.list_invites().await.unwrap().len(), 3);

    // Another user's invite answers as a missing one, and stays.
    assert_not_found!(s.delete_invite(&by_ann.code, Some(ben.id)).await);
    assert!(s.get_invite(&by_ann.code).await.unwrap().is_some());
    s.delete_invite(&by_ann.code, Some(ann.id)).await.unwrap();
    assert!(s.get_invite(&by_ann.code).await.unwrap().is_none());
    assert_not_found!(s.delete_invite(&by_ann.code, Some(ann.id)).await);
    assert_not_found!(s.delete_invite("inv-none", None).await);
    // Without an owner (the command line): any invite.
    s.delete_invite(&by_ben.code, None).await.unwrap();
    // An invite made from the command line may be revoked by any admin.
    s.delete_invite(&by_cli.code, Some(ann.id)).await.unwrap();
    assert!(s.list_invites().await.unwrap().is_empty());
}

// ---- audit ------------------------------------------------------------

pub async fn audit_newest_first_with_cursor(s: &dyn Store) {
    let root = add_user(s, "root", Role::Admin).await;
    let entries: Vec<AuditEntry> = (0..5)
        .map(|i| audit_entry(NOW + i, 0, Some(&root), "login"))
        .collect();
    // Appended out of order: listing follows time, not insertion.
    for i in [2, 0, 4, 1, 3] {
        s.append_audit(&entries[i]).await.unwrap();
    }
    let newest_first: Vec<Uuid> = entries.iter().rev().map(|e| e.id).collect();
    let all = s.list_audit(None, 100).await.unwrap();
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), newest_first);
    assert_same!(all[0], entries[4]);

    let mut walked = Vec::new();
    let mut before = None;
    for want in [2, 2, 1, 0] {
        let page = s.list_audit(before, 2).await.unwrap();
        assert_eq!(page.len(), want);
        walked.extend(page.iter().map(|e| e.id));
        before = page.last().map(|e| e.id).or(before);
    }
    assert_eq!(walked, newest_first);
}

/// Walks a filtered listing page by page, continuing from the resume point
/// when the store gives one, else after the last entry of a full page.
async fn walk_filtered(s: &dyn Store, f: &AuditFilter, limit: usize) -> Vec<Uuid> {
    let mut out = Vec::new();
    let mut before = None;
    for _ in 0..1000 {
        let (page, resume) = s.list_audit_filtered(before, limit, f).await.unwrap();
        assert!(page.len() <= limit);
        out.extend(page.iter().map(|e| e.id));
        before = match (resume, page.last()) {
            (Some(r), _) => Some(r),
            (None, Some(last)) if page.len() == limit => Some(last.id),
            _ => return out,
        };
    }
    panic!("the filtered walk did not end");
}

pub async fn audit_filtered_by_actor_action_and_time(s: &dyn Store) {
    let root = add_user(s, "root", Role::Admin).await;
    let alice = add_user(s, "alice", Role::User).await;
    let stranger = AuditEntry {
        actor: None,
        actor_name: Some("mallory".into()),
        outcome: "BAD_PASSWORD".into(),
        ..audit_entry(NOW + 20, 0, None, "login")
    };
    let e = [
        audit_entry(NOW, 0, Some(&alice), "login"),
        audit_entry(NOW + 10, 0, Some(&root), "admin.user.update"),
        stranger,
        audit_entry(NOW + 30, 0, Some(&root), "provider.create"),
        audit_entry(NOW + 40, 0, Some(&root), "admin.invite.create"),
        audit_entry(NOW + 50, 0, Some(&alice), "provider.delete"),
    ];
    for x in &e {
        s.append_audit(x).await.unwrap();
    }
    let ids = |idx: &[usize]| idx.iter().map(|&i| e[i].id).collect::<Vec<_>>();
    let filter = |actor: Option<&str>, action: Option<&str>, from, to| AuditFilter {
        actor: actor.map(Into::into),
        action: action.map(Into::into),
        from,
        to,
    };
    let cases = [
        // The actor by name (any case) or by id.
        (filter(Some("ROOT"), None, None, None), ids(&[4, 3, 1])),
        (
            filter(Some(&root.id.to_string().to_uppercase()), None, None, None),
            ids(&[4, 3, 1]),
        ),
        (filter(Some("mallory"), None, None, None), ids(&[2])),
        // An action, or a prefix ending in `.` or `*`.
        (filter(None, Some("login"), None, None), ids(&[2, 0])),
        (filter(None, Some("admin."), None, None), ids(&[4, 1])),
        (filter(None, Some("provider*"), None, None), ids(&[5, 3])),
        (filter(None, Some("admin"), None, None), ids(&[])),
        // From inclusive, to exclusive.
        (
            filter(None, None, Some(NOW + 10), Some(NOW + 40)),
            ids(&[3, 2, 1]),
        ),
        (
            filter(Some("alice"), Some("provider*"), None, None),
            ids(&[5]),
        ),
        (filter(Some("alice"), None, Some(NOW + 1), None), ids(&[5])),
        (AuditFilter::default(), ids(&[5, 4, 3, 2, 1, 0])),
    ];
    for (f, want) in &cases {
        let (got, resume) = s.list_audit_filtered(None, 100, f).await.unwrap();
        assert_eq!(got.iter().map(|x| x.id).collect::<Vec<_>>(), *want, "{f:?}");
        assert!(
            resume.is_none(),
            "{f:?}: a short scan has nothing to resume"
        );
        // Page by page, the same entries.
        assert_eq!(walk_filtered(s, f, 1).await, *want, "{f:?} paged");
    }
    let (full, _) = s
        .list_audit_filtered(None, 100, &AuditFilter::default())
        .await
        .unwrap();
    assert_same!(full[3], e[2]);
    // `before` starts below an entry.
    let (got, _) = s
        .list_audit_filtered(Some(e[3].id), 100, &filter(Some("root"), None, None, None))
        .await
        .unwrap();
    assert_eq!(got.iter().map(|x| x.id).collect::<Vec<_>>(), ids(&[1]));
}

/// A filter that matches little still answers in bounded pages: the store
/// may stop early and say where to resume (at most `MAX_SCAN` entries
/// examined per call), and walking on finds every match.
pub async fn audit_filtered_scan_resumes(s: &dyn Store) {
    let root = add_user(s, "root", Role::Admin).await;
    let needle = audit_entry(NOW, 0, Some(&root), "needle");
    s.append_audit(&needle).await.unwrap();
    // More newer non-matching entries than one call may examine.
    let hay: Vec<AuditEntry> = (0..MAX_SCAN as i64 + 10)
        .map(|i| audit_entry(NOW + 1 + i / 1000, (i % 1000) as u32, None, "hay"))
        .collect();
    for chunk in hay.chunks(500) {
        for r in join_all(chunk.iter().map(|e| s.append_audit(e))).await {
            r.unwrap();
        }
    }
    let f = AuditFilter {
        action: Some("needle".into()),
        ..AuditFilter::default()
    };
    let (first, resume) = s.list_audit_filtered(None, 10, &f).await.unwrap();
    if first.is_empty() {
        assert!(resume.is_some(), "nothing found and nowhere to resume");
    }
    assert_eq!(walk_filtered(s, &f, 10).await, [needle.id]);
    assert_eq!(
        s.list_audit(None, 1).await.unwrap()[0].id,
        hay.last().unwrap().id
    );
}

// ---- providers --------------------------------------------------------

pub async fn providers_create_get_list_put_delete(s: &dyn Store) {
    assert!(s.list_providers().await.unwrap().is_empty());
    let (b, c, a) = (provider("b", 2), provider("c", 2), provider("a", 3));
    for p in [&a, &b, &c] {
        s.create_provider(p).await.unwrap();
    }
    // Oldest first, by name within one second.
    let names: Vec<String> = s
        .list_providers()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["b", "c", "a"]);
    assert_eq!(s.get_provider("a").await.unwrap(), Some(a.clone()));
    assert!(s.get_provider("zzz").await.unwrap().is_none());

    // A taken name: Conflict, and the stored record is unchanged.
    let dup = StoredProvider {
        base_url: "http://elsewhere/v1".into(),
        ..provider("a", 9)
    };
    assert_conflict!(s.create_provider(&dup).await);
    assert_eq!(s.get_provider("a").await.unwrap(), Some(a.clone()));

    // put replaces, or inserts.
    let changed = StoredProvider {
        enabled: false,
        encrypted_key: None,
        models: None,
        updated_at: 7,
        ..a.clone()
    };
    s.put_provider(&changed).await.unwrap();
    assert_eq!(s.get_provider("a").await.unwrap(), Some(changed));
    let d = provider("d", 4);
    s.put_provider(&d).await.unwrap();
    assert_eq!(s.get_provider("d").await.unwrap(), Some(d));
    assert_eq!(s.list_providers().await.unwrap().len(), 4);

    s.delete_provider("a").await.unwrap();
    assert!(s.get_provider("a").await.unwrap().is_none());
    assert_not_found!(s.delete_provider("a").await);
    assert_not_found!(s.delete_provider("zzz").await);
    assert_eq!(s.list_providers().await.unwrap().len(), 3);
}

// ---- conversations ----------------------------------------------------

pub async fn conversations_create_and_get(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let ben = add_user(s, "ben", Role::User).await;
    let c = Conversation {
        system_prompt: Some("be brief".into()),
        pinned: true,
        ..conversation(&ann, "Hello", 5_000)
    };
    s.create_conversation(&c).await.unwrap();
    assert_same!(s.get_conversation(ann.id, c.id).await.unwrap(), c);
    assert_not_found!(s.get_conversation(ben.id, c.id).await);
    assert_not_found!(s.get_conversation(ann.id, id()).await);
    assert_eq!(
        all_conversations(s, &ann, ConversationFilter::default()).await,
        [c.id]
    );
    assert!(
        all_conversations(s, &ben, ConversationFilter::default())
            .await
            .is_empty()
    );
}

/// Documented ("Conflict when the id exists"). redb replaces the record,
/// and with another `updated_at_ms` lists it twice (a second index entry
/// that outlives a delete).
pub async fn conversations_create_with_a_taken_id_conflicts(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let c = add_conversation(s, &ann, "Original").await;
    let again = Conversation {
        title: "Replacement".into(),
        updated_at_ms: 9_000,
        ..c.clone()
    };
    assert_conflict!(s.create_conversation(&again).await);
    assert_same!(s.get_conversation(ann.id, c.id).await.unwrap(), c);
    assert_eq!(
        all_conversations(s, &ann, ConversationFilter::default()).await,
        [c.id]
    );
    assert_eq!(s.conversation_ids(ann.id).await.unwrap(), [c.id]);
}

pub async fn conversations_list_newest_first_with_cursor_and_filters(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let ben = add_user(s, "ben", Role::User).await;
    let c1 = conversation(&ann, "one", 1_000);
    let c2 = conversation(&ann, "two", 2_000);
    // Same time as c2, later id: ties go by id, newest first.
    let c2b = conversation(&ann, "two too", 2_000);
    let c3 = Conversation {
        archived: true,
        ..conversation(&ann, "three", 3_000)
    };
    let c4 = Conversation {
        pinned: true,
        ..conversation(&ann, "four", 4_000)
    };
    let c5 = conversation(&ann, "five", 5_000);
    let cb = conversation(&ben, "ben's", 6_000);
    for c in [&c3, &c1, &c5, &c2b, &cb, &c4, &c2] {
        s.create_conversation(c).await.unwrap();
    }
    let f = |archived, pinned| ConversationFilter { archived, pinned };
    let shown = vec![c5.id, c4.id, c2b.id, c2.id, c1.id];
    assert_eq!(all_conversations(s, &ann, f(None, None)).await, shown);
    assert_eq!(
        all_conversations(s, &ann, f(Some(false), None)).await,
        shown
    );
    assert_eq!(
        all_conversations(s, &ann, f(Some(true), None)).await,
        [c3.id]
    );
    assert_eq!(
        all_conversations(s, &ann, f(None, Some(true))).await,
        [c4.id]
    );
    assert_eq!(
        all_conversations(s, &ann, f(None, Some(false))).await,
        [c5.id, c2b.id, c2.id, c1.id]
    );
    assert_eq!(all_conversations(s, &ben, f(None, None)).await, [cb.id]);

    // Pages of 3, then from the cursor (strictly older than it).
    let page = s
        .list_conversations(ann.id, None, f(None, None), 3)
        .await
        .unwrap();
    assert_eq!(conv_ids(&page), &shown[..3]);
    let last = page.last().unwrap();
    let cursor = ConversationCursor {
        updated_at_ms: last.updated_at_ms,
        id: last.id,
    };
    let page = s
        .list_conversations(ann.id, Some(cursor), f(None, None), 3)
        .await
        .unwrap();
    assert_eq!(conv_ids(&page), &shown[3..]);
    let end = ConversationCursor {
        updated_at_ms: c1.updated_at_ms,
        id: c1.id,
    };
    let page = s
        .list_conversations(ann.id, Some(end), f(None, None), 3)
        .await
        .unwrap();
    assert!(page.is_empty());
    assert_same!(
        s.list_conversations(ann.id, None, f(None, None), 1)
            .await
            .unwrap()[0],
        c5
    );
}

pub async fn conversations_update_fields(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let ben = add_user(s, "ben", Role::User).await;
    let c = Conversation {
        model: Some("m1".into()),
        system_prompt: Some("be brief".into()),
        ..conversation(&ann, "Plain", 1_000)
    };
    s.create_conversation(&c).await.unwrap();

    let patch = ConversationPatch {
        model: Some(Some("m2".into())),
        // Blank removes it.
        system_prompt: Some(Some("   ".into())),
        pinned: Some(true),
        archived: Some(true),
        ..ConversationPatch::default()
    };
    let back = s.update_conversation(ann.id, c.id, patch).await.unwrap();
    let want = Conversation {
        model: Some("m2".into()),
        system_prompt: None,
        pinned: true,
        archived: true,
        ..c.clone()
    };
    // Without `touch` it keeps its place (updated_at_ms unchanged).
    assert_same!(back, want);
    assert_same!(s.get_conversation(ann.id, c.id).await.unwrap(), want);

    let patch = ConversationPatch {
        model: Some(None),
        system_prompt: Some(Some("terse".into())),
        archived: Some(false),
        ..ConversationPatch::default()
    };
    let back = s.update_conversation(ann.id, c.id, patch).await.unwrap();
    let want = Conversation {
        model: None,
        system_prompt: Some("terse".into()),
        archived: false,
        ..want
    };
    assert_same!(back, want);
    let patch = ConversationPatch {
        system_prompt: Some(None),
        ..ConversationPatch::default()
    };
    let back = s.update_conversation(ann.id, c.id, patch).await.unwrap();
    assert_eq!(back.system_prompt, None);
    assert!(back.pinned);

    // Another user's conversation answers as a missing one, and is unchanged.
    let unpin = || ConversationPatch {
        pinned: Some(false),
        title: Some(TitleChange::Set("Hijacked".into())),
        ..ConversationPatch::default()
    };
    assert_not_found!(s.update_conversation(ben.id, c.id, unpin()).await);
    assert_not_found!(s.update_conversation(ann.id, id(), unpin()).await);
    let now = s.get_conversation(ann.id, c.id).await.unwrap();
    assert!(now.pinned);
    assert_eq!(now.title, "Plain");
}

pub async fn conversations_touch_moves_to_the_top(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let c1 = conversation(&ann, "one", 1_000);
    let c2 = conversation(&ann, "two", 2_000);
    for c in [&c1, &c2] {
        s.create_conversation(c).await.unwrap();
    }
    let all = ConversationFilter::default();
    assert_eq!(all_conversations(s, &ann, all).await, [c2.id, c1.id]);

    let touch = ConversationPatch {
        touch: true,
        ..ConversationPatch::default()
    };
    let back = s.update_conversation(ann.id, c1.id, touch).await.unwrap();
    assert!(back.updated_at_ms > c2.updated_at_ms);
    assert_eq!(all_conversations(s, &ann, all).await, [c1.id, c2.id]);
    // The cursor of its new place continues with the rest.
    let cursor = ConversationCursor {
        updated_at_ms: back.updated_at_ms,
        id: c1.id,
    };
    let rest = s
        .list_conversations(ann.id, Some(cursor), all, 10)
        .await
        .unwrap();
    assert_eq!(conv_ids(&rest), [c2.id]);

    // A change without touch keeps the order.
    let pin = ConversationPatch {
        pinned: Some(true),
        ..ConversationPatch::default()
    };
    s.update_conversation(ann.id, c2.id, pin).await.unwrap();
    assert_eq!(all_conversations(s, &ann, all).await, [c1.id, c2.id]);
    // Touching twice in a row still moves forward.
    let again = s
        .update_conversation(ann.id, c1.id, touch_patch())
        .await
        .unwrap();
    assert!(again.updated_at_ms > back.updated_at_ms);
    assert_eq!(all_conversations(s, &ann, all).await, [c1.id, c2.id]);
}

fn touch_patch() -> ConversationPatch {
    ConversationPatch {
        touch: true,
        ..ConversationPatch::default()
    }
}

fn title_patch(t: TitleChange) -> ConversationPatch {
    ConversationPatch {
        title: Some(t),
        ..ConversationPatch::default()
    }
}

fn auto(title: &str, last: bool) -> TitleChange {
    TitleChange::Auto {
        title: title.into(),
        last,
        default: DEFAULT_TITLE.into(),
    }
}

pub async fn conversations_title_set_and_auto(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let c = untitled(&ann);
    s.create_conversation(&c).await.unwrap();
    let title = |t: TitleChange| s.update_conversation(ann.id, c.id, title_patch(t));
    let state = |c: Conversation| (c.title, c.title_auto);

    // While it has the default title, an automatic one applies.
    assert_eq!(
        state(title(auto("First guess", false)).await.unwrap()),
        ("First guess".into(), true)
    );
    // No longer the default: only the last automatic title applies ...
    assert_eq!(
        state(title(auto("Second guess", false)).await.unwrap()),
        ("First guess".into(), true)
    );
    assert_eq!(
        state(title(auto("Final", true)).await.unwrap()),
        ("Final".into(), false)
    );
    // ... and ends automatic naming.
    assert_eq!(
        state(title(auto("Late", true)).await.unwrap()),
        ("Final".into(), false)
    );
    assert_eq!(
        state(s.get_conversation(ann.id, c.id).await.unwrap()),
        ("Final".into(), false)
    );

    // A title a person sets always applies and stops automatic naming.
    let d = untitled(&ann);
    s.create_conversation(&d).await.unwrap();
    let title = |t: TitleChange| s.update_conversation(ann.id, d.id, title_patch(t));
    assert_eq!(
        state(title(TitleChange::Set("Mine".into())).await.unwrap()),
        ("Mine".into(), false)
    );
    assert_eq!(
        state(title(auto("Robot", true)).await.unwrap()),
        ("Mine".into(), false)
    );
    assert_eq!(
        state(title(TitleChange::Set("Mine 2".into())).await.unwrap()),
        ("Mine 2".into(), false)
    );
    // A last automatic title applies over the default at once.
    let e = untitled(&ann);
    s.create_conversation(&e).await.unwrap();
    let back = s
        .update_conversation(ann.id, e.id, title_patch(auto("Only", true)))
        .await
        .unwrap();
    assert_eq!(state(back), ("Only".into(), false));
}

pub async fn conversations_current_leaf(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let c = add_conversation(s, &ann, "tree").await;
    let other = add_conversation(s, &ann, "elsewhere").await;
    // q1 → a1; q1 → a1b (newer) → q2 → a2
    let q1 = ask(&c, None, "q1");
    let a1 = reply(&c, Some(q1.id), "a1");
    let a1b = reply(&c, Some(q1.id), "a1b");
    let q2 = ask(&c, Some(a1b.id), "q2");
    let a2 = reply(&c, Some(q2.id), "a2");
    s.insert_messages(ann.id, c.id, &[q1.clone(), a1.clone(), a1b, q2, a2.clone()])
        .await
        .unwrap();
    let foreign = ask(&other, None, "not here");
    s.insert_messages(ann.id, other.id, std::slice::from_ref(&foreign))
        .await
        .unwrap();

    let leaf = |m: Uuid| ConversationPatch {
        current_leaf: Some(m),
        ..ConversationPatch::default()
    };
    let back = s
        .update_conversation(ann.id, c.id, leaf(a1.id))
        .await
        .unwrap();
    assert_eq!(back.current_leaf, Some(a1.id));
    // From a message, the newest path down to a leaf.
    let back = s
        .update_conversation(ann.id, c.id, leaf(q1.id))
        .await
        .unwrap();
    assert_eq!(back.current_leaf, Some(a2.id));
    assert_eq!(
        s.get_conversation(ann.id, c.id).await.unwrap().current_leaf,
        Some(a2.id)
    );

    // A message of another conversation, or none: Conflict, and nothing of
    // the patch applies.
    for bad in [foreign.id, id()] {
        let patch = ConversationPatch {
            current_leaf: Some(bad),
            pinned: Some(true),
            title: Some(TitleChange::Set("changed".into())),
            ..ConversationPatch::default()
        };
        assert_conflict!(s.update_conversation(ann.id, c.id, patch).await);
    }
    let now = s.get_conversation(ann.id, c.id).await.unwrap();
    assert_eq!(
        (now.current_leaf, now.pinned, now.title.as_str()),
        (Some(a2.id), false, "tree")
    );
}

pub async fn conversations_delete_removes_messages_and_queues_removal(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let ben = add_user(s, "ben", Role::User).await;
    let (c, q, a) = new_turn(s, &ann, "doomed").await;
    let q2 = ask(&c, Some(a.id), "more");
    s.insert_messages(ann.id, c.id, std::slice::from_ref(&q2))
        .await
        .unwrap();
    let keep = add_conversation(s, &ann, "kept").await;
    let kept_msg = ask(&keep, None, "stay");
    s.insert_messages(ann.id, keep.id, std::slice::from_ref(&kept_msg))
        .await
        .unwrap();
    assert_eq!(s.message_count().await.unwrap(), 4);

    // Not ben's to delete.
    assert_not_found!(s.delete_conversation(ben.id, c.id).await);
    assert_eq!(s.list_messages(ann.id, c.id).await.unwrap().len(), 3);

    assert_eq!(s.delete_conversation(ann.id, c.id).await.unwrap(), 3);
    assert_not_found!(s.get_conversation(ann.id, c.id).await);
    assert_not_found!(s.list_messages(ann.id, c.id).await);
    assert_not_found!(s.get_message(ann.id, c.id, q.id).await);
    assert_not_found!(s.conversation_with_messages(ann.id, c.id).await);
    assert_not_found!(s.delete_conversation(ann.id, c.id).await);
    assert_eq!(
        all_conversations(s, &ann, ConversationFilter::default()).await,
        [keep.id]
    );
    assert_eq!(s.conversation_ids(ann.id).await.unwrap(), [keep.id]);
    assert_eq!(s.message_count().await.unwrap(), 1);
    assert_eq!(
        msg_ids(&s.list_messages(ann.id, keep.id).await.unwrap()),
        [kept_msg.id]
    );
    // Its streaming answer went with it.
    assert_eq!(s.recover_streaming().await.unwrap(), 0);

    // The index is told, and what was queued for it resolves to nothing.
    let ops = outbox(s).await;
    assert!(ops.iter().any(|(_, r)| matches!(r,
        Resolved::DeleteConversation { conversation_id } if *conversation_id == c.id)));
    assert!(resolved_title(&ops, c.id).is_none());
    assert!(resolved_message(&ops, q.id).is_none());
    assert!(ops.iter().any(|(_, r)| matches!(r,
        Resolved::MessageGone { message_id } if *message_id == q.id)));
    let page = s.searchable_page(None, 100).await.unwrap();
    let walked: Vec<Uuid> = page.conversations.iter().map(|(c, _)| c.id).collect();
    assert_eq!(walked, [keep.id]);
}

pub async fn conversations_ids_and_whole_conversations(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let ben = add_user(s, "ben", Role::User).await;
    let c1 = conversation(&ann, "one", 1_000);
    let c2 = Conversation {
        archived: true,
        ..conversation(&ann, "two", 2_000)
    };
    let c3 = conversation(&ann, "three", 3_000);
    let cb = conversation(&ben, "ben's", 4_000);
    for c in [&c2, &c3, &cb, &c1] {
        s.create_conversation(c).await.unwrap();
    }
    // Every conversation of the user, archived too, newest first.
    assert_eq!(
        s.conversation_ids(ann.id).await.unwrap(),
        [c3.id, c2.id, c1.id]
    );
    assert_eq!(s.conversation_ids(ben.id).await.unwrap(), [cb.id]);
    assert!(s.conversation_ids(id()).await.unwrap().is_empty());

    let q = ask(&c2, None, "question");
    let a = reply(&c2, Some(q.id), "answer");
    s.insert_messages(ann.id, c2.id, &[q.clone(), a.clone()])
        .await
        .unwrap();
    let (conv, msgs) = s.conversation_with_messages(ann.id, c2.id).await.unwrap();
    assert_same!(conv, c2);
    assert_same!(msgs, vec![q, a]);
    let (_, none) = s.conversation_with_messages(ann.id, c1.id).await.unwrap();
    assert!(none.is_empty());
    assert_not_found!(s.conversation_with_messages(ben.id, c2.id).await);
    assert_not_found!(s.conversation_with_messages(ann.id, id()).await);
}

// ---- messages and turns -----------------------------------------------

pub async fn messages_insert_get_list(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let ben = add_user(s, "ben", Role::User).await;
    let c = add_conversation(s, &ann, "talk").await;
    let d = add_conversation(s, &ann, "other").await;
    let q = ask(&c, None, "question");
    let a = Message {
        usage: Some(Usage {
            input_tokens: 3,
            output_tokens: 4,
            estimated: true,
        }),
        duration_ms: Some(250),
        finish_reason: Some("length".into()),
        ..reply(&c, Some(q.id), "answer")
    };
    let failed = Message {
        status: MessageStatus::Error,
        error: Some(MessageError {
            code: "UPSTREAM".into(),
            message: "the provider failed".into(),
        }),
        ..reply(&c, Some(q.id), "")
    };
    let sys = message(&c, None, MessageRole::System, "system text");
    let all = vec![q.clone(), a.clone(), failed.clone(), sys];
    s.insert_messages(ann.id, c.id, &all).await.unwrap();

    // Oldest first, every field as stored.
    assert_same!(s.list_messages(ann.id, c.id).await.unwrap(), all);
    assert_same!(s.get_message(ann.id, c.id, a.id).await.unwrap(), a);
    assert_same!(
        s.get_message(ann.id, c.id, failed.id).await.unwrap(),
        failed
    );
    assert!(s.list_messages(ann.id, d.id).await.unwrap().is_empty());
    assert_eq!(s.message_count().await.unwrap(), 4);
    // Inserted complete messages are searchable.
    let ops = outbox(s).await;
    assert_eq!(
        resolved_message(&ops, q.id).map(|m| m.content.as_str()),
        Some("question")
    );

    // Not in that conversation, missing, or not the user's: NotFound.
    assert_not_found!(s.get_message(ann.id, d.id, a.id).await);
    assert_not_found!(s.get_message(ann.id, c.id, id()).await);
    assert_not_found!(s.get_message(ben.id, c.id, a.id).await);
    assert_not_found!(s.list_messages(ben.id, c.id).await);
    assert_not_found!(s.list_messages(ann.id, id()).await);
    // Inserting into another user's conversation writes nothing.
    let intruder = ask(&c, None, "intruder");
    assert_not_found!(
        s.insert_messages(ben.id, c.id, std::slice::from_ref(&intruder))
            .await
    );
    assert_not_found!(
        s.insert_messages(ann.id, id(), std::slice::from_ref(&intruder))
            .await
    );
    assert_eq!(s.message_count().await.unwrap(), 4);
    assert_eq!(s.list_messages(ann.id, c.id).await.unwrap().len(), 4);
}

pub async fn turn_starts_a_conversation(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let nc = untitled(&ann);
    let q = ask(&nc, None, "hello there");
    let a = answering(&nc, Some(q.id));
    let head = s.outbox_head().await.unwrap();
    let got = s
        .start_turn(
            ann.id,
            Some(&nc),
            Some("model-b".into()),
            ModelParamsPatch::default(),
            Some(&q),
            &a,
        )
        .await
        .unwrap();
    assert_eq!(got.id, nc.id);
    assert_eq!(got.model.as_deref(), Some("model-b"));
    assert_eq!(got.current_leaf, Some(a.id));
    assert!(got.updated_at_ms > nc.updated_at_ms);
    assert_eq!((got.title.as_str(), got.title_auto), (DEFAULT_TITLE, true));
    assert_same!(s.get_conversation(ann.id, nc.id).await.unwrap(), got);

    let msgs = s.list_messages(ann.id, nc.id).await.unwrap();
    assert_same!(msgs, vec![q.clone(), a.clone()]);
    assert_eq!(msgs[1].status, MessageStatus::Streaming);
    assert_eq!(
        all_conversations(s, &ann, ConversationFilter::default()).await,
        [nc.id]
    );
    // The title and the question reach the index; the answer waits until
    // it is complete.
    assert!(s.outbox_head().await.unwrap() > head);
    let ops = outbox(s).await;
    assert!(resolved_title(&ops, nc.id).is_some());
    assert_eq!(
        resolved_message(&ops, q.id).map(|m| m.content.as_str()),
        Some("hello there")
    );
    assert!(ops.iter().any(|(_, r)| matches!(r,
        Resolved::Message(m) if m.message.id == q.id && m.user_id == ann.id)));
    assert!(resolved_message(&ops, a.id).is_none());
}

pub async fn turn_and_update_remember_sampling_settings(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let nc = untitled(&ann);
    let q = ask(&nc, None, "warm up");
    let a = answering(&nc, Some(q.id));
    let set = ModelParamsPatch {
        temperature: Some(Some(0.5)),
        max_tokens: Some(Some(300)),
        top_p: None,
    };
    let got = s
        .start_turn(ann.id, Some(&nc), None, set, Some(&q), &a)
        .await
        .unwrap();
    assert_eq!(
        (
            got.params.temperature,
            got.params.max_tokens,
            got.params.top_p
        ),
        (Some(0.5), Some(300), None)
    );
    // An update changes only what it names; Some(None) clears.
    let patch = ConversationPatch {
        params: ModelParamsPatch {
            temperature: Some(None),
            top_p: Some(Some(0.9)),
            max_tokens: None,
        },
        ..Default::default()
    };
    let c = s.update_conversation(ann.id, nc.id, patch).await.unwrap();
    assert_eq!(
        (c.params.temperature, c.params.max_tokens, c.params.top_p),
        (None, Some(300), Some(0.9))
    );
    assert_same!(s.get_conversation(ann.id, nc.id).await.unwrap(), c);
    // A turn without settings leaves them as they are.
    let q2 = ask(&nc, Some(a.id), "again");
    let a2 = answering(&nc, Some(q2.id));
    let c2 = s
        .start_turn(
            ann.id,
            None,
            None,
            ModelParamsPatch::default(),
            Some(&q2),
            &a2,
        )
        .await
        .unwrap();
    assert_eq!(c2.params, c.params);
}

pub async fn turn_continues_regenerates_and_edits(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let (c, q1, a1) = new_turn(s, &ann, "first").await;
    s.finish_message(&finished(&a1, "first answer"))
        .await
        .unwrap();

    // A follow-up; no model given keeps the conversation's.
    let q2 = ask(&c, Some(a1.id), "second");
    let a2 = answering(&c, Some(q2.id));
    let before = s.get_conversation(ann.id, c.id).await.unwrap();
    let got = s
        .start_turn(
            ann.id,
            None,
            None,
            ModelParamsPatch::default(),
            Some(&q2),
            &a2,
        )
        .await
        .unwrap();
    assert_eq!(got.current_leaf, Some(a2.id));
    assert_eq!(got.model.as_deref(), Some("model-a"));
    assert!(got.updated_at_ms > before.updated_at_ms);

    // Regenerate: no new question, a new answer to q2, another model.
    let a3 = answering(&c, Some(q2.id));
    let got = s
        .start_turn(
            ann.id,
            None,
            Some("model-c".into()),
            ModelParamsPatch::default(),
            None,
            &a3,
        )
        .await
        .unwrap();
    assert_eq!(got.current_leaf, Some(a3.id));
    assert_eq!(got.model.as_deref(), Some("model-c"));

    // Edit: a sibling question under a1.
    let q2b = ask(&c, Some(a1.id), "second, edited");
    let a4 = answering(&c, Some(q2b.id));
    let got = s
        .start_turn(
            ann.id,
            None,
            None,
            ModelParamsPatch::default(),
            Some(&q2b),
            &a4,
        )
        .await
        .unwrap();
    assert_eq!(got.current_leaf, Some(a4.id));
    assert_same!(s.get_conversation(ann.id, c.id).await.unwrap(), got);
    let msgs = s.list_messages(ann.id, c.id).await.unwrap();
    assert_eq!(
        msg_ids(&msgs),
        [q1.id, a1.id, q2.id, a2.id, a3.id, q2b.id, a4.id]
    );
    assert_eq!(msgs[1].content, "first answer");
    // A root question in an existing conversation is fine too.
    let q0 = ask(&c, None, "new root");
    let a0 = answering(&c, Some(q0.id));
    s.start_turn(
        ann.id,
        None,
        None,
        ModelParamsPatch::default(),
        Some(&q0),
        &a0,
    )
    .await
    .unwrap();
    assert_eq!(s.list_messages(ann.id, c.id).await.unwrap().len(), 9);
}

pub async fn turn_with_a_parent_outside_the_conversation_writes_nothing(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let (c, _, a) = new_turn(s, &ann, "first").await;
    s.finish_message(&finished(&a, "done")).await.unwrap();
    let other = add_conversation(s, &ann, "other").await;
    let elsewhere = ask(&other, None, "elsewhere");
    s.insert_messages(ann.id, other.id, std::slice::from_ref(&elsewhere))
        .await
        .unwrap();
    let snapshot = s.conversation_with_messages(ann.id, c.id).await.unwrap();
    let (head, count) = (
        s.outbox_head().await.unwrap(),
        s.message_count().await.unwrap(),
    );
    let listed = all_conversations(s, &ann, ConversationFilter::default()).await;

    // The question's parent is in another conversation.
    let q = ask(&c, Some(elsewhere.id), "q");
    let ans = answering(&c, Some(q.id));
    assert_not_found!(
        s.start_turn(
            ann.id,
            None,
            Some("model-z".into()),
            ModelParamsPatch::default(),
            Some(&q),
            &ans
        )
        .await
    );
    // Regenerating from a message that does not exist.
    let ans = answering(&c, Some(id()));
    assert_not_found!(
        s.start_turn(ann.id, None, None, ModelParamsPatch::default(), None, &ans)
            .await
    );
    // The answer's parent is not the question nor in the conversation.
    let q = ask(&c, Some(a.id), "q");
    let ans = answering(&c, Some(elsewhere.id));
    assert_not_found!(
        s.start_turn(
            ann.id,
            None,
            None,
            ModelParamsPatch::default(),
            Some(&q),
            &ans
        )
        .await
    );
    // A new conversation whose first question names a parent elsewhere:
    // the conversation is not created either.
    let nc = untitled(&ann);
    let q = ask(&nc, Some(elsewhere.id), "q");
    let ans = answering(&nc, Some(q.id));
    assert_not_found!(
        s.start_turn(
            ann.id,
            Some(&nc),
            Some("model-z".into()),
            ModelParamsPatch::default(),
            Some(&q),
            &ans
        )
        .await
    );
    assert_not_found!(s.get_conversation(ann.id, nc.id).await);

    assert_same!(
        s.conversation_with_messages(ann.id, c.id).await.unwrap(),
        snapshot
    );
    assert_eq!(
        all_conversations(s, &ann, ConversationFilter::default()).await,
        listed
    );
    assert_eq!(s.message_count().await.unwrap(), count);
    assert_eq!(s.outbox_head().await.unwrap(), head);
    assert_eq!(s.recover_streaming().await.unwrap(), 0);
}

pub async fn turn_in_another_users_conversation_writes_nothing(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let ben = add_user(s, "ben", Role::User).await;
    let (cb, _, ab) = new_turn(s, &ben, "ben's").await;
    s.finish_message(&finished(&ab, "ben's answer"))
        .await
        .unwrap();
    let snapshot = s.conversation_with_messages(ben.id, cb.id).await.unwrap();
    let (head, count) = (
        s.outbox_head().await.unwrap(),
        s.message_count().await.unwrap(),
    );

    let q = ask(&cb, Some(ab.id), "from ann");
    let a = answering(&cb, Some(q.id));
    assert_not_found!(
        s.start_turn(
            ann.id,
            None,
            Some("m".into()),
            ModelParamsPatch::default(),
            Some(&q),
            &a
        )
        .await
    );
    // A conversation missing altogether.
    let ghost = untitled(&ann);
    let q = ask(&ghost, None, "q");
    let a = answering(&ghost, Some(q.id));
    assert_not_found!(
        s.start_turn(
            ann.id,
            None,
            None,
            ModelParamsPatch::default(),
            Some(&q),
            &a
        )
        .await
    );
    // A new conversation that belongs to someone else.
    let nc = untitled(&ben);
    let q = ask(&nc, None, "q");
    let a = answering(&nc, Some(q.id));
    assert_not_found!(
        s.start_turn(
            ann.id,
            Some(&nc),
            None,
            ModelParamsPatch::default(),
            Some(&q),
            &a
        )
        .await
    );
    assert_not_found!(s.get_conversation(ben.id, nc.id).await);

    assert_same!(
        s.conversation_with_messages(ben.id, cb.id).await.unwrap(),
        snapshot
    );
    assert!(
        all_conversations(s, &ann, ConversationFilter::default())
            .await
            .is_empty()
    );
    assert_eq!(s.message_count().await.unwrap(), count);
    assert_eq!(s.outbox_head().await.unwrap(), head);
}

pub async fn streaming_flush_then_finish(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let other = add_conversation(s, &ann, "older").await;
    let (c, q, a) = new_turn(s, &ann, "stream please").await;
    s.flush_partials(&[
        (c.id, a.id, "Hel".into()),
        // A complete message is left alone; unknown ones are ignored.
        (c.id, q.id, "overwritten?".into()),
        (id(), id(), "nowhere".into()),
    ])
    .await
    .unwrap();
    let now = s.get_message(ann.id, c.id, a.id).await.unwrap();
    assert_eq!(
        (now.content.as_str(), now.status),
        ("Hel", MessageStatus::Streaming)
    );
    assert_eq!(
        s.get_message(ann.id, c.id, q.id).await.unwrap().content,
        "stream please"
    );
    s.flush_partials(&[(c.id, a.id, "Hello".into())])
        .await
        .unwrap();
    s.flush_partials(&[]).await.unwrap();
    assert_eq!(
        s.get_message(ann.id, c.id, a.id).await.unwrap().content,
        "Hello"
    );
    // Still streaming: not offered to the index yet.
    let page = s.searchable_page(None, 10).await.unwrap();
    let (_, msgs) = page
        .conversations
        .iter()
        .find(|(x, _)| x.id == c.id)
        .unwrap();
    assert_eq!(msg_ids(msgs), [q.id]);

    // Make `other` the newest, then finish: the conversation moves up.
    s.update_conversation(ann.id, other.id, touch_patch())
        .await
        .unwrap();
    let before = s.get_conversation(ann.id, c.id).await.unwrap();
    let done = finished(&a, "Hello, world");
    s.finish_message(&done).await.unwrap();
    assert_same!(s.get_message(ann.id, c.id, a.id).await.unwrap(), done);
    let after = s.get_conversation(ann.id, c.id).await.unwrap();
    assert!(after.updated_at_ms > before.updated_at_ms);
    assert_eq!(
        all_conversations(s, &ann, ConversationFilter::default()).await,
        [c.id, other.id]
    );
    // A late flush does not undo it; nothing is left streaming.
    s.flush_partials(&[(c.id, a.id, "late".into())])
        .await
        .unwrap();
    assert_same!(s.get_message(ann.id, c.id, a.id).await.unwrap(), done);
    assert_eq!(s.recover_streaming().await.unwrap(), 0);
    // Now it is searchable.
    let ops = outbox(s).await;
    assert_eq!(
        resolved_message(&ops, a.id).map(|m| m.content.as_str()),
        Some("Hello, world")
    );
    let page = s.searchable_page(None, 10).await.unwrap();
    let (_, msgs) = page
        .conversations
        .iter()
        .find(|(x, _)| x.id == c.id)
        .unwrap();
    assert_eq!(msg_ids(msgs), [q.id, a.id]);
}

pub async fn streaming_finish_after_delete_is_dropped(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let (c, _, a) = new_turn(s, &ann, "gone soon").await;
    s.delete_conversation(ann.id, c.id).await.unwrap();
    s.flush_partials(&[(c.id, a.id, "partial".into())])
        .await
        .unwrap();
    s.finish_message(&finished(&a, "too late")).await.unwrap();
    assert_not_found!(s.get_conversation(ann.id, c.id).await);
    assert_eq!(s.message_count().await.unwrap(), 0);
    assert!(s.conversation_ids(ann.id).await.unwrap().is_empty());
    assert!(
        s.searchable_page(None, 10)
            .await
            .unwrap()
            .conversations
            .is_empty()
    );
    assert_eq!(s.recover_streaming().await.unwrap(), 0);
}

/// An answer finishing at the moment its conversation is deleted: both
/// calls succeed (whichever goes first), and nothing is left. (A backend
/// that locked the message before the conversation here, and a delete the
/// other way round, would deadlock.)
pub async fn streaming_finish_racing_a_delete_never_fails(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let mut turns = Vec::new();
    for i in 0..20 {
        let (c, _, a) = new_turn(s, &ann, &format!("race {i}")).await;
        s.flush_partials(&[(c.id, a.id, "partial".into())])
            .await
            .unwrap();
        turns.push((c, a));
    }
    let races = turns.iter().map(|(c, a)| async move {
        let done = finished(a, "finished");
        let (f, d) = futures::join!(s.finish_message(&done), s.delete_conversation(ann.id, c.id));
        f.unwrap();
        d.unwrap();
    });
    join_all(races).await;
    assert!(s.conversation_ids(ann.id).await.unwrap().is_empty());
    assert_eq!(s.message_count().await.unwrap(), 0);
    assert_eq!(s.recover_streaming().await.unwrap(), 0);
}

pub async fn streaming_recover_interrupts_what_was_left(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let (c1, _, a1) = new_turn(s, &ann, "one").await;
    let (c2, _, a2) = new_turn(s, &ann, "two").await;
    let (c3, _, a3) = new_turn(s, &ann, "three").await;
    s.flush_partials(&[(c1.id, a1.id, "partial one".into())])
        .await
        .unwrap();
    let done = finished(&a3, "complete");
    s.finish_message(&done).await.unwrap();

    assert_eq!(s.recover_streaming().await.unwrap(), 2);
    let m1 = s.get_message(ann.id, c1.id, a1.id).await.unwrap();
    assert_eq!(
        (m1.status, m1.content.as_str(), m1.finish_reason.as_deref()),
        (
            MessageStatus::Interrupted,
            "partial one",
            Some("server_restart")
        )
    );
    let m2 = s.get_message(ann.id, c2.id, a2.id).await.unwrap();
    assert_eq!(
        (m2.status, m2.content.as_str()),
        (MessageStatus::Interrupted, "")
    );
    assert_same!(s.get_message(ann.id, c3.id, a3.id).await.unwrap(), done);
    assert_eq!(s.recover_streaming().await.unwrap(), 0);

    // No longer streaming: flushes are ignored, and the index gets it.
    s.flush_partials(&[(c1.id, a1.id, "more".into())])
        .await
        .unwrap();
    assert_eq!(
        s.get_message(ann.id, c1.id, a1.id).await.unwrap().content,
        "partial one"
    );
    let ops = outbox(s).await;
    assert_eq!(
        resolved_message(&ops, a1.id).map(|m| m.status),
        Some(MessageStatus::Interrupted)
    );
}

pub async fn import_whole_conversations(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let c1 = conversation(&ann, "imported one", 1_000);
    let q = ask(&c1, None, "old question");
    let a = reply(&c1, Some(q.id), "old answer");
    let c1 = Conversation {
        current_leaf: Some(a.id),
        ..c1
    };
    let c2 = Conversation {
        archived: true,
        ..conversation(&ann, "imported two", 2_000)
    };
    let q2 = ask(&c2, None, "archived question");
    let list = vec![
        (c1.clone(), vec![q.clone(), a.clone()]),
        (c2.clone(), vec![q2.clone()]),
    ];
    s.import_conversations(&list).await.unwrap();

    for (c, msgs) in &list {
        assert_same!(
            s.conversation_with_messages(ann.id, c.id).await.unwrap(),
            (c, msgs)
        );
    }
    assert_eq!(s.conversation_ids(ann.id).await.unwrap(), [c2.id, c1.id]);
    assert_eq!(
        all_conversations(s, &ann, ConversationFilter::default()).await,
        [c1.id]
    );
    assert_eq!(s.message_count().await.unwrap(), 3);
    let ops = outbox(s).await;
    for c in [&c1, &c2] {
        assert!(resolved_title(&ops, c.id).is_some());
    }
    for m in [&q, &a, &q2] {
        assert!(resolved_message(&ops, m.id).is_some());
    }

    s.import_conversations(&[]).await.unwrap();
    assert_eq!(s.conversation_ids(ann.id).await.unwrap().len(), 2);
}

/// Documented ("all or none"), but the trait names no failure; a taken id
/// is the obvious one. redb replaces the existing conversation instead.
pub async fn import_with_a_taken_id_writes_nothing(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let existing = add_conversation(s, &ann, "existing").await;
    let fresh = conversation(&ann, "fresh", 2_000);
    let q = ask(&fresh, None, "q");
    let clash = Conversation {
        title: "clash".into(),
        ..existing.clone()
    };
    let list = vec![(fresh.clone(), vec![q]), (clash, vec![])];
    assert!(s.import_conversations(&list).await.is_err());
    assert_not_found!(s.get_conversation(ann.id, fresh.id).await);
    assert_same!(
        s.get_conversation(ann.id, existing.id).await.unwrap(),
        existing
    );
    assert_eq!(s.message_count().await.unwrap(), 0);
}

/// Every read and write of another user's conversation, message, session,
/// key or invite answers exactly as a missing one would, and changes nothing.
pub async fn ownership_another_users_records_are_not_found(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let ben = add_user(s, "ben", Role::Admin).await;
    let (c, q, a) = new_turn(s, &ann, "ann's secret").await;
    s.finish_message(&finished(&a, "ann's answer"))
        .await
        .unwrap();
    let (_, sess) = add_session(s, &ann).await;
    let (_, key) = add_api_key(s, &ann).await;
    let inv = invite(Some(ann.id), 1, NOW);
    s.put_invite(&inv).await.unwrap();
    let snapshot = s.conversation_with_messages(ann.id, c.id).await.unwrap();
    let missing = id();

    for conv in [c.id, missing] {
        assert_not_found!(s.get_conversation(ben.id, conv).await);
        assert_not_found!(s.list_messages(ben.id, conv).await);
        assert_not_found!(s.get_message(ben.id, conv, q.id).await);
        assert_not_found!(s.conversation_with_messages(ben.id, conv).await);
        assert_not_found!(s.update_conversation(ben.id, conv, touch_patch()).await);
        assert_not_found!(s.delete_conversation(ben.id, conv).await);
        let m = Message {
            conversation_id: conv,
            ..ask(&c, None, "x")
        };
        assert_not_found!(
            s.insert_messages(ben.id, conv, std::slice::from_ref(&m))
                .await
        );
        let ans = Message {
            conversation_id: conv,
            ..answering(&c, Some(a.id))
        };
        assert_not_found!(
            s.start_turn(ben.id, None, None, ModelParamsPatch::default(), None, &ans)
                .await
        );
    }
    for sid in [sess.id, missing] {
        assert_not_found!(s.delete_session(ben.id, sid).await);
    }
    for kid in [key.id, missing] {
        assert_not_found!(s.delete_api_key(ben.id, kid).await);
    }
    for code in [inv.code.as_str(), "inv-missing"] {
        assert_not_found!(s.delete_invite(code, Some(ben.id)).await);
    }
    assert!(s.conversation_ids(ben.id).await.unwrap().is_empty());
    assert!(s.list_sessions(ben.id).await.unwrap().is_empty());
    assert!(s.list_api_keys(ben.id).await.unwrap().is_empty());

    assert_same!(
        s.conversation_with_messages(ann.id, c.id).await.unwrap(),
        snapshot
    );
    assert_eq!(s.list_sessions(ann.id).await.unwrap().len(), 1);
    assert_eq!(s.list_api_keys(ann.id).await.unwrap().len(), 1);
    assert!(s.get_invite(&inv.code).await.unwrap().is_some());
}

// ---- usage ------------------------------------------------------------

pub async fn usage_per_key_adds_up_beside_the_user_totals(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let ben = add_user(s, "ben", Role::User).await;
    let (k1, k2, k3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let (d1, d2) = (20250301, 20250302);
    let with_key = |k: Uuid, input, output| Charge {
        api_key: Some(k),
        ..charge("oa", "m1", input, output)
    };
    s.charge_usage(ann.id, d1, &with_key(k1, 10, 20))
        .await
        .unwrap();
    s.charge_usage(ann.id, d1, &with_key(k1, 1, 2))
        .await
        .unwrap();
    s.charge_usage(ann.id, d2, &with_key(k2, 5, 5))
        .await
        .unwrap();
    // Without a key: the user's totals only.
    s.charge_usage(ann.id, d1, &charge("oa", "m1", 100, 100))
        .await
        .unwrap();
    s.charge_usage(ben.id, d1, &with_key(k3, 7, 7))
        .await
        .unwrap();

    // The user's totals include the keyed charges.
    let day1 = s.usage_user_day(ann.id, d1).await.unwrap();
    assert_eq!(
        (day1.messages, day1.input_tokens, day1.output_tokens),
        (3, 111, 122)
    );

    let mut mine = s.usage_by_key(Some(ann.id), d1, d2).await.unwrap();
    mine.sort_by_key(|r| (r.day, r.api_key_id));
    let got: Vec<(u32, Uuid, u64, u64, u64)> = mine
        .iter()
        .map(|r| {
            assert_eq!(r.user_id, ann.id, "only ann's keys");
            (
                r.day,
                r.api_key_id,
                r.counts.messages,
                r.counts.input_tokens,
                r.counts.output_tokens,
            )
        })
        .collect();
    assert_eq!(got, vec![(d1, k1, 2, 11, 22), (d2, k2, 1, 5, 5)]);

    // One day only, and everyone's.
    let d1_only = s.usage_by_key(Some(ann.id), d1, d1).await.unwrap();
    assert_eq!(d1_only.len(), 1);
    let all = s.usage_by_key(None, d1, d2).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(
        all.iter()
            .any(|r| r.user_id == ben.id && r.api_key_id == k3)
    );
    // Outside the range: nothing.
    assert!(
        s.usage_by_key(None, 20250401, 20250430)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn usage_charges_add_up(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let ben = add_user(s, "ben", Role::User).await;
    let (d1, d2, d3) = (20250101, 20250102, 20250131);
    assert_eq!(
        s.usage_user_day(ann.id, d1).await.unwrap(),
        UsageCounts::default()
    );
    s.charge_usage(ann.id, d1, &charge("oa", "m1", 10, 20))
        .await
        .unwrap();
    s.charge_usage(ann.id, d1, &charge("oa", "m1", 1, 2))
        .await
        .unwrap();
    s.charge_usage(ann.id, d1, &charge("oa", "m2", 5, 5))
        .await
        .unwrap();
    // A title: tokens, no message.
    let title = Charge {
        messages: 0,
        ..charge("oa", "m2", 7, 1)
    };
    s.charge_usage(ann.id, d1, &title).await.unwrap();
    s.charge_usage(ann.id, d2, &charge("an", "m1", 7, 7))
        .await
        .unwrap();
    s.charge_usage(ben.id, d1, &charge("oa", "m1", 100, 100))
        .await
        .unwrap();
    s.charge_usage(ben.id, d3, &charge("oa", "m1", 1, 1))
        .await
        .unwrap();

    let counts = |messages, input_tokens, output_tokens, cost_nanos| UsageCounts {
        messages,
        input_tokens,
        output_tokens,
        cost_nanos,
    };
    let row = |day, u: &User, p: &str, m: &str, c| UsageRow {
        day,
        user_id: u.id,
        provider: p.into(),
        model: m.into(),
        counts: c,
    };
    assert_eq!(
        s.usage_user_day(ann.id, d1).await.unwrap(),
        counts(3, 23, 28, 258)
    );
    assert_eq!(
        s.usage_user_day(ann.id, d2).await.unwrap(),
        counts(1, 7, 7, 77)
    );
    assert_eq!(
        s.usage_user_day(ann.id, d3).await.unwrap(),
        UsageCounts::default()
    );

    let key = |r: &UsageRow| (r.day, r.user_id, r.provider.clone(), r.model.clone());
    let mut mine = s.usage_of_user(ann.id, d1, d2).await.unwrap();
    mine.sort_by_key(key);
    let mut want = vec![
        row(d1, &ann, "oa", "m1", counts(2, 11, 22, 132)),
        row(d1, &ann, "oa", "m2", counts(1, 12, 6, 126)),
        row(d2, &ann, "an", "m1", counts(1, 7, 7, 77)),
    ];
    want.sort_by_key(key);
    assert_eq!(mine, want);
    // Both ends are inclusive.
    assert_eq!(s.usage_of_user(ann.id, d2, d2).await.unwrap().len(), 1);
    assert_eq!(s.usage_of_user(ann.id, d2, d3).await.unwrap().len(), 1);
    assert!(
        s.usage_of_user(ann.id, d2 + 1, d3)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.usage_of_user(id(), d1, d3).await.unwrap().is_empty());

    let mut day1 = s.usage_between(d1, d1).await.unwrap();
    day1.sort_by_key(key);
    let mut want = vec![
        row(d1, &ann, "oa", "m1", counts(2, 11, 22, 132)),
        row(d1, &ann, "oa", "m2", counts(1, 12, 6, 126)),
        row(d1, &ben, "oa", "m1", counts(1, 100, 100, 1100)),
    ];
    want.sort_by_key(key);
    assert_eq!(day1, want);
    assert_eq!(s.usage_between(d1, d3).await.unwrap().len(), 5);
    assert_eq!(s.usage_between(d2, d3).await.unwrap().len(), 2);
    assert!(s.usage_between(d3 + 1, 20251231).await.unwrap().is_empty());
}

pub async fn usage_long_names_are_clipped_consistently(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let long = "m".repeat(MAX_NAME + 50);
    s.charge_usage(ann.id, 20250101, &charge("oa", &long, 1, 1))
        .await
        .unwrap();
    s.charge_usage(ann.id, 20250101, &charge("oa", &long, 2, 2))
        .await
        .unwrap();
    let rows = s.usage_of_user(ann.id, 20250101, 20250101).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].model.chars().count(), MAX_NAME);
    assert_eq!(rows[0].counts.input_tokens, 3);
    assert_eq!(s.usage_between(20250101, 20250101).await.unwrap(), rows);
}

// ---- search outbox ----------------------------------------------------

pub async fn outbox_starts_empty(s: &dyn Store) {
    assert_eq!(s.outbox_len().await.unwrap(), 0);
    assert_eq!(s.outbox_head().await.unwrap(), 0);
    assert!(outbox(s).await.is_empty());
    assert_eq!(s.message_count().await.unwrap(), 0);
    let page = s.searchable_page(None, 10).await.unwrap();
    assert!(page.conversations.is_empty());
    assert!(page.next.is_none());
    s.outbox_ack(10).await.unwrap();
    assert_eq!(s.outbox_len().await.unwrap(), 0);
}

pub async fn outbox_orders_and_resolves_ops(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let c = add_conversation(s, &ann, "Searchable").await;
    let m = ask(&c, None, "findable words");
    s.insert_messages(ann.id, c.id, std::slice::from_ref(&m))
        .await
        .unwrap();
    s.update_conversation(
        ann.id,
        c.id,
        title_patch(TitleChange::Set("Renamed".into())),
    )
    .await
    .unwrap();

    let ops = outbox(s).await;
    let seqs: Vec<u64> = ops.iter().map(|(q, _)| *q).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(s.outbox_len().await.unwrap(), ops.len() as u64);
    assert_eq!(s.outbox_head().await.unwrap(), *seqs.last().unwrap());
    // Resolved against the current data: the title as it is now.
    assert_eq!(
        resolved_title(&ops, c.id).map(|c| c.title.as_str()),
        Some("Renamed")
    );
    let found = ops.iter().find_map(|(_, r)| match r {
        Resolved::Message(x) if x.message.id == m.id => Some(x),
        _ => None,
    });
    let found = found.expect("the message op");
    assert_eq!(found.user_id, ann.id);
    assert_same!(found.message, m);
    // A smaller batch is the oldest ops.
    let first = s.outbox_batch(1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, seqs[0]);

    // Once the conversation is deleted, everything queued for it resolves
    // to its removal.
    s.delete_conversation(ann.id, c.id).await.unwrap();
    let ops = outbox(s).await;
    assert!(resolved_title(&ops, c.id).is_none());
    assert!(resolved_message(&ops, m.id).is_none());
    assert!(ops.iter().any(|(_, r)| matches!(r,
        Resolved::TitleGone { conversation_id } if *conversation_id == c.id)));
    assert!(ops.iter().any(|(_, r)| matches!(r,
        Resolved::MessageGone { message_id } if *message_id == m.id)));
    assert!(ops.iter().any(|(_, r)| matches!(r,
        Resolved::DeleteConversation { conversation_id } if *conversation_id == c.id)));
}

pub async fn outbox_ack_removes_through_seq(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let convs = [
        add_conversation(s, &ann, "a").await,
        add_conversation(s, &ann, "b").await,
        add_conversation(s, &ann, "c").await,
    ];
    let ops = outbox(s).await;
    assert!(ops.len() >= 3);
    let total = ops.len() as u64;
    let head = s.outbox_head().await.unwrap();

    s.outbox_ack(ops[1].0).await.unwrap();
    assert_eq!(s.outbox_len().await.unwrap(), total - 2);
    let left = outbox(s).await;
    assert_eq!(left[0].0, ops[2].0);
    assert_eq!(s.outbox_head().await.unwrap(), head);
    // Acking again, or an older seq, changes nothing.
    s.outbox_ack(ops[0].0).await.unwrap();
    assert_eq!(s.outbox_len().await.unwrap(), total - 2);

    s.outbox_ack(head).await.unwrap();
    assert_eq!(s.outbox_len().await.unwrap(), 0);
    assert!(outbox(s).await.is_empty());
    // The data stays; a later change queues again.
    assert_eq!(s.conversation_ids(ann.id).await.unwrap().len(), 3);
    let d = add_conversation(s, &ann, "d").await;
    let ops = outbox(s).await;
    assert!(!ops.is_empty());
    assert!(resolved_title(&ops, d.id).is_some());
    assert!(resolved_title(&ops, convs[0].id).is_none());
    assert_eq!(s.outbox_len().await.unwrap(), ops.len() as u64);
    assert_eq!(s.outbox_head().await.unwrap(), ops.last().unwrap().0);
}

/// A drain that acknowledges while writers are still queueing ops never
/// loses one: everything up to an acknowledged seq had been delivered (a
/// backend whose seqs do not follow commit order would drop the ops of a
/// transaction that took a smaller seq but committed later).
pub async fn outbox_acks_racing_writers_lose_no_op(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let writers = futures::future::join_all((0..8).map(|w| {
        let ann = &ann;
        async move {
            let mut ids = Vec::new();
            for i in 0..25 {
                ids.push(add_conversation(s, ann, &format!("w{w} c{i}")).await.id);
            }
            ids
        }
    }));
    let done = std::sync::atomic::AtomicBool::new(false);
    let reader = async {
        let mut seen = std::collections::HashSet::new();
        loop {
            let finished = done.load(std::sync::atomic::Ordering::SeqCst);
            let batch = s.outbox_batch(7).await.unwrap();
            for (_, r) in &batch {
                if let Resolved::Title(c) = r {
                    seen.insert(c.id);
                }
            }
            match batch.last() {
                Some((seq, _)) => s.outbox_ack(*seq).await.unwrap(),
                None if finished => return seen,
                None => tokio::task::yield_now().await,
            }
        }
    };
    let (written, seen) = futures::join!(
        async {
            let w = writers.await;
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            w
        },
        reader
    );
    let written: Vec<Uuid> = written.into_iter().flatten().collect();
    assert_eq!(written.len(), 200);
    let lost: Vec<&Uuid> = written.iter().filter(|c| !seen.contains(c)).collect();
    assert!(lost.is_empty(), "{} ops lost: {lost:?}", lost.len());
    assert_eq!(s.outbox_len().await.unwrap(), 0);
}

pub async fn searchable_pages_walk_every_conversation(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::Admin).await;
    let ben = add_user(s, "ben", Role::User).await;
    // Five conversations, ids in this order, of two users.
    let c0 = add_conversation(s, &ann, "c0").await;
    let c1 = add_conversation(s, &ben, "c1").await;
    let (c2, q2, _) = new_turn(s, &ann, "streaming one").await;
    let c3 = add_conversation(s, &ben, "c3").await;
    let archive = ConversationPatch {
        archived: Some(true),
        ..ConversationPatch::default()
    };
    s.update_conversation(ben.id, c3.id, archive).await.unwrap();
    let c4 = add_conversation(s, &ann, "c4").await;
    let q0 = ask(&c0, None, "x");
    let m0 = vec![q0.clone(), reply(&c0, Some(q0.id), "y")];
    s.insert_messages(ann.id, c0.id, &m0).await.unwrap();
    assert_eq!(s.message_count().await.unwrap(), 4);

    let page = s.searchable_page(None, 2).await.unwrap();
    let ids = |p: &SearchablePage| {
        p.conversations
            .iter()
            .map(|(c, _)| c.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&page), [c0.id, c1.id]);
    assert_eq!(page.next, Some(c1.id));
    assert_same!(page.conversations[0].1, m0);
    assert_eq!(page.conversations[0].0.title, "c0");
    let page = s.searchable_page(page.next, 2).await.unwrap();
    assert_eq!(ids(&page), [c2.id, c3.id]);
    assert_eq!(page.next, Some(c3.id));
    // The answer still streaming is left out; archived ones are in.
    assert_eq!(msg_ids(&page.conversations[0].1), [q2.id]);
    assert!(page.conversations[1].0.archived);
    let page = s.searchable_page(page.next, 2).await.unwrap();
    assert_eq!(ids(&page), [c4.id]);
    assert_eq!(page.next, None);

    // A page that holds exactly the rest may end the walk, or point at an
    // empty last page.
    let page = s.searchable_page(None, 5).await.unwrap();
    assert_eq!(ids(&page), [c0.id, c1.id, c2.id, c3.id, c4.id]);
    assert!(page.next.is_none_or(|n| n == c4.id), "{:?}", page.next);
    let page = s.searchable_page(Some(c4.id), 2).await.unwrap();
    assert!(page.conversations.is_empty());
    assert_eq!(page.next, None);
}

// ---- ACME and health --------------------------------------------------

pub async fn acme_accounts_and_certificates(s: &dyn Store) {
    let dir = "https://acme.example/directory";
    assert!(s.get_acme_account(dir).await.unwrap().is_none());
    let account = AcmeAccountRecord {
        directory: dir.into(),
        credentials: serde_json::json!({"id": "acct-1", "key": "secret"}),
        email: Some("ops@example.test".into()),
        created_at: NOW,
    };
    s.put_acme_account(&account).await.unwrap();
    assert_same!(s.get_acme_account(dir).await.unwrap().unwrap(), account);
    assert!(
        s.get_acme_account("https://other/dir")
            .await
            .unwrap()
            .is_none()
    );
    let replaced = AcmeAccountRecord {
        credentials: serde_json::json!({"id": "acct-2"}),
        ..account.clone()
    };
    s.put_acme_account(&replaced).await.unwrap();
    assert_same!(s.get_acme_account(dir).await.unwrap().unwrap(), replaced);

    let cert = AcmeCertRecord {
        directory: dir.into(),
        domains: vec!["b.example".into(), "A.example".into()],
        chain_pem: "-----BEGIN CERTIFICATE-----".into(),
        key_pem: "-----BEGIN PRIVATE KEY-----".into(),
        not_before: NOW,
        not_after: NOW + 90 * 86_400,
        issued_at: NOW,
        challenge: Some("tls-alpn-01".into()),
    };
    s.put_acme_cert(&cert).await.unwrap();
    // The same set of names in any order and case.
    for names in [["a.example", "b.example"], ["B.EXAMPLE", "a.example"]] {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        assert_same!(s.get_acme_cert(dir, &names).await.unwrap().unwrap(), cert);
    }
    assert!(
        s.get_acme_cert(dir, &["a.example".into()])
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.get_acme_cert("https://other/dir", &cert.domains)
            .await
            .unwrap()
            .is_none()
    );
    let renewed = AcmeCertRecord {
        domains: vec!["a.example".into(), "b.example".into()],
        issued_at: NOW + 60 * 86_400,
        ..cert.clone()
    };
    s.put_acme_cert(&renewed).await.unwrap();
    assert_same!(
        s.get_acme_cert(dir, &cert.domains).await.unwrap().unwrap(),
        renewed
    );

    // Deleting the account leaves the certificates.
    s.delete_acme_account(dir).await.unwrap();
    assert!(s.get_acme_account(dir).await.unwrap().is_none());
    s.delete_acme_account(dir).await.unwrap();
    assert!(s.get_acme_cert(dir, &cert.domains).await.unwrap().is_some());
}

pub async fn health_schema_and_probe(s: &dyn Store) {
    let v = s.schema_version().await.unwrap();
    assert!(v > 0);
    s.probe(NOW).await.unwrap();
    s.probe(NOW + 1).await.unwrap();
    assert_eq!(s.schema_version().await.unwrap(), v);
    // The probe leaves no trace in what confab stores.
    assert_eq!(s.user_count().await.unwrap(), 0);
    assert_eq!(s.outbox_len().await.unwrap(), 0);
}

fn preset(owner: Option<Uuid>, name: &str) -> Preset {
    Preset {
        id: id(),
        owner,
        name: name.into(),
        description: String::new(),
        model: Some("m".into()),
        system_prompt: Some("be brief".into()),
        params: PresetParams {
            temperature: Some(0.5),
            max_tokens: Some(100),
            top_p: None,
        },
        created_by: owner.unwrap_or_else(id),
        created_at: NOW,
        updated_at: NOW,
    }
}

fn prompt(owner: Option<Uuid>, command: &str) -> SavedPrompt {
    SavedPrompt {
        id: id(),
        owner,
        title: format!("Title of {command}"),
        command: command.into(),
        text: format!("text of {command}"),
        created_by: owner.unwrap_or_else(id),
        created_at: NOW,
        updated_at: NOW,
    }
}

pub async fn presets_own_and_shared_are_seen_others_are_not_found(s: &dyn Store) {
    let (alice, bob) = (id(), id());
    let mine = preset(Some(alice), "beta");
    let theirs = preset(Some(bob), "Alpha");
    let shared = preset(None, "alpha shared");
    for p in [&mine, &theirs, &shared] {
        s.put_preset(p).await.unwrap();
    }
    assert_same!(s.get_preset(alice, mine.id).await.unwrap(), mine);
    assert_same!(s.get_preset(alice, shared.id).await.unwrap(), shared);
    assert!(matches!(
        s.get_preset(alice, theirs.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.get_preset(alice, id()).await,
        Err(StoreError::NotFound)
    ));
    // By name, case-insensitively.
    let names: Vec<String> = s
        .list_presets(alice)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["alpha shared", "beta"]);
    assert_eq!(s.list_presets(bob).await.unwrap().len(), 2);

    let renamed = Preset {
        name: "gamma".into(),
        params: PresetParams::default(),
        system_prompt: None,
        ..mine.clone()
    };
    s.put_preset(&renamed).await.unwrap();
    assert_same!(s.get_preset(alice, mine.id).await.unwrap(), renamed);

    s.delete_preset(mine.id).await.unwrap();
    assert!(matches!(
        s.delete_preset(mine.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.get_preset(alice, mine.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.list_presets(alice).await.unwrap().len(), 1);
}

pub async fn prompts_commands_are_unique_per_owner(s: &dyn Store) {
    let (alice, bob) = (id(), id());
    let a = prompt(Some(alice), "sum");
    s.put_prompt(&a).await.unwrap();
    // Another owner (or the shared library) may use the same command.
    let b = prompt(Some(bob), "sum");
    s.put_prompt(&b).await.unwrap();
    let shared = prompt(None, "sum");
    s.put_prompt(&shared).await.unwrap();
    // The same owner may not; the refused write changes nothing.
    let dup = prompt(Some(alice), "sum");
    assert!(matches!(
        s.put_prompt(&dup).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.get_prompt(alice, dup.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.put_prompt(&prompt(None, "sum")).await,
        Err(StoreError::Conflict(_))
    ));
    // Replacing a prompt keeps its own command.
    let edited = SavedPrompt {
        text: "new text".into(),
        ..a.clone()
    };
    s.put_prompt(&edited).await.unwrap();
    assert_same!(s.get_prompt(alice, a.id).await.unwrap(), edited);
    assert!(matches!(
        s.get_prompt(alice, b.id).await,
        Err(StoreError::NotFound)
    ));

    let other = prompt(Some(alice), "abc");
    s.put_prompt(&other).await.unwrap();
    // By command, the user's own before the shared one.
    let listed: Vec<(String, bool)> = s
        .list_prompts(alice)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.command, p.owner.is_none()))
        .collect();
    assert_eq!(
        listed,
        [
            ("abc".to_string(), false),
            ("sum".to_string(), false),
            ("sum".to_string(), true)
        ]
    );
    s.delete_prompt(a.id).await.unwrap();
    assert!(matches!(
        s.delete_prompt(a.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.list_prompts(alice).await.unwrap().len(), 2);
    assert_eq!(s.list_prompts(bob).await.unwrap().len(), 2);
}

pub async fn settings_per_user_and_branding(s: &dyn Store) {
    let (alice, bob) = (id(), id());
    assert_same!(
        s.get_user_settings(alice).await.unwrap(),
        UserSettings::default()
    );
    let mine = UserSettings {
        custom_instructions: Some("I use metric units.".into()),
        updated_at: NOW,
    };
    s.put_user_settings(alice, &mine).await.unwrap();
    assert_same!(s.get_user_settings(alice).await.unwrap(), mine);
    assert_same!(
        s.get_user_settings(bob).await.unwrap(),
        UserSettings::default()
    );

    assert_same!(s.get_branding().await.unwrap(), Branding::default());
    let b = Branding {
        server_name: Some("Acme Chat".into()),
        accent_color: Some("#112233".into()),
        sign_in_message: Some("Staff only.".into()),
        logo: Some(Logo {
            content_type: "image/png".into(),
            bytes: vec![0x89, b'P', b'N', b'G', 0, 255],
            etag: "abc".into(),
        }),
        updated_at: NOW,
    };
    s.put_branding(&b).await.unwrap();
    assert_same!(s.get_branding().await.unwrap(), b);
    let cleared = Branding {
        logo: None,
        ..b.clone()
    };
    s.put_branding(&cleared).await.unwrap();
    assert_same!(s.get_branding().await.unwrap(), cleared);
}

// ---- model settings -----------------------------------------------------

fn model_setting(model: &str) -> ModelSetting {
    ModelSetting {
        model: model.into(),
        hidden: true,
        display_name: Some("Shown name".into()),
        description: Some("What it is for".into()),
        price: Some(ModelPrice {
            input_per_million: 2.5,
            output_per_million: 10.0,
        }),
        vision: Some(true),
        updated_at: NOW,
    }
}

pub async fn model_settings_put_list_replace_and_default(s: &dyn Store) {
    assert!(s.list_model_settings().await.unwrap().is_empty());
    assert_eq!(s.default_model().await.unwrap(), None);
    let a = model_setting("gpt-4o");
    let b = model_setting("meta-llama/llama-3.1-8b:free");
    s.put_model_setting(&a).await.unwrap();
    s.put_model_setting(&b).await.unwrap();
    let mut got = s.list_model_settings().await.unwrap();
    got.sort_by(|x, y| x.model.cmp(&y.model));
    assert_same!(got, vec![a.clone(), b.clone()]);
    // Replacing keeps one record per model.
    let mut a2 = a.clone();
    a2.hidden = false;
    a2.price = None;
    s.put_model_setting(&a2).await.unwrap();
    let got = s.list_model_settings().await.unwrap();
    assert_eq!(got.len(), 2);
    assert_same!(got.iter().find(|x| x.model == "gpt-4o").unwrap(), &a2);
    // A record back at the defaults is gone.
    let cleared = ModelSetting {
        model: "gpt-4o".into(),
        hidden: false,
        display_name: None,
        description: None,
        price: None,
        vision: None,
        updated_at: NOW + 1,
    };
    s.put_model_setting(&cleared).await.unwrap();
    let got = s.list_model_settings().await.unwrap();
    assert_same!(got, vec![b]);
    // The default model: set, replaced, removed.
    s.set_default_model(Some("gpt-4o")).await.unwrap();
    assert_eq!(s.default_model().await.unwrap().as_deref(), Some("gpt-4o"));
    s.set_default_model(Some("llama3.2")).await.unwrap();
    assert_eq!(
        s.default_model().await.unwrap().as_deref(),
        Some("llama3.2")
    );
    s.set_default_model(None).await.unwrap();
    assert_eq!(s.default_model().await.unwrap(), None);
    s.set_default_model(None).await.unwrap();
}

// ---- documents and collections ------------------------------------------

fn document(owner: &User, file_id: Uuid, chunks: u32) -> confab::store::knowledge::DocumentRecord {
    use confab::store::knowledge::*;
    DocumentRecord {
        file_id,
        owner: owner.id,
        name: "report.pdf".into(),
        kind: "pdf".into(),
        status: DocumentStatus::Ready,
        error: None,
        pages: Some(chunks),
        chars: 100 * u64::from(chunks),
        tokens: 25 * u64::from(chunks),
        chunks,
        truncated: None,
        embedding_model: None,
        created_at: NOW,
    }
}

fn chunks_of(file_id: Uuid, n: u32) -> Vec<confab::store::knowledge::Chunk> {
    use confab::store::knowledge::*;
    (0..n)
        .map(|i| Chunk {
            file_id,
            ordinal: i,
            text: format!("chunk {i} of the report"),
            span: ChunkSpan {
                page_start: Some(i + 1),
                page_end: Some(i + 1),
                ..Default::default()
            },
        })
        .collect()
}

/// The document ops pending in the outbox, resolved: (file id, chunks
/// indexed or None when gone).
async fn document_ops(s: &dyn Store) -> Vec<(Uuid, Option<usize>)> {
    s.outbox_batch(100_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|(_, r)| match r {
            Resolved::Document(d) => Some((d.file_id, Some(d.chunks.len()))),
            Resolved::DocumentGone { file_id } => Some((file_id, None)),
            _ => None,
        })
        .collect()
}

pub async fn documents_put_read_replace_and_delete(s: &dyn Store) {
    use confab::store::knowledge::*;
    let ann = add_user(s, "ann", Role::User).await;
    let bob = add_user(s, "bob", Role::User).await;
    let f = id();
    s.put_document(&document(&ann, f, 3), &chunks_of(f, 3))
        .await
        .unwrap();
    assert_eq!(s.get_document(ann.id, f).await.unwrap().chunks, 3);
    assert_eq!(s.list_documents(ann.id).await.unwrap().len(), 1);
    assert!(s.list_documents(bob.id).await.unwrap().is_empty());
    let c = s.document_chunks(ann.id, f, 1, 3).await.unwrap();
    assert_eq!(c.iter().map(|c| c.ordinal).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(c[0].span.page_start, Some(2));
    let picked = s
        .get_chunks(ann.id, &[(f, 2), (f, 0), (f, 9)])
        .await
        .unwrap();
    assert_eq!(picked.iter().map(|c| c.ordinal).collect::<Vec<_>>(), [2, 0]);
    // Replacing drops the old chunks.
    s.put_document(&document(&ann, f, 1), &chunks_of(f, 1))
        .await
        .unwrap();
    assert_eq!(s.document_chunks(ann.id, f, 0, 10).await.unwrap().len(), 1);
    // The outbox has one op per change; resolved against the current data.
    assert_eq!(document_ops(s).await, [(f, Some(1)), (f, Some(1))]);
    // A failed reading is kept, and indexes nothing.
    let g = id();
    let mut failed = document(&ann, g, 0);
    failed.status = DocumentStatus::Failed;
    failed.error = Some("the file is empty".into());
    s.put_document(&failed, &[]).await.unwrap();
    assert_eq!(
        s.get_document(ann.id, g).await.unwrap().error.as_deref(),
        Some("the file is empty")
    );
    assert!(document_ops(s).await.contains(&(g, None)));
    // Deleting removes record and chunks; a second time is no error.
    assert!(s.delete_document(ann.id, f).await.unwrap());
    assert!(matches!(
        s.get_document(ann.id, f).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.document_chunks(ann.id, f, 0, 10).await,
        Err(StoreError::NotFound)
    ));
    assert!(!s.delete_document(ann.id, f).await.unwrap());
    assert_eq!(document_ops(s).await.last(), Some(&(f, None)));
}

pub async fn documents_of_another_user_are_not_found(s: &dyn Store) {
    use confab::store::knowledge::*;
    let ann = add_user(s, "ann", Role::User).await;
    let bob = add_user(s, "bob", Role::User).await;
    let f = id();
    s.put_document(&document(&ann, f, 2), &chunks_of(f, 2))
        .await
        .unwrap();
    assert!(matches!(
        s.get_document(bob.id, f).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.document_chunks(bob.id, f, 0, 2).await,
        Err(StoreError::NotFound)
    ));
    assert!(s.get_chunks(bob.id, &[(f, 0)]).await.unwrap().is_empty());
    assert!(matches!(
        s.get_vectors(bob.id, f).await,
        Err(StoreError::NotFound)
    ));
    let v = ChunkVectors {
        file_id: f,
        model: "m".into(),
        dims: 2,
        scales: vec![0.1, 0.2],
        data: vec![1, 2, 3, 4],
    };
    assert!(matches!(
        s.put_vectors(bob.id, &v).await,
        Err(StoreError::NotFound)
    ));
    // Bob cannot delete it, nor take it over by storing a document of its id.
    assert!(!s.delete_document(bob.id, f).await.unwrap());
    assert!(matches!(
        s.put_document(&document(&bob, f, 1), &chunks_of(f, 1))
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.get_document(ann.id, f).await.unwrap().chunks, 2);
    // Vectors: stored, read, their model noted on the record.
    s.put_vectors(ann.id, &v).await.unwrap();
    assert_eq!(s.get_vectors(ann.id, f).await.unwrap(), Some(v));
    assert_eq!(
        s.get_document(ann.id, f)
            .await
            .unwrap()
            .embedding_model
            .as_deref(),
        Some("m")
    );
    // The rebuild walk sees every user's documents, with chunks.
    let g = id();
    s.put_document(&document(&bob, g, 1), &chunks_of(g, 1))
        .await
        .unwrap();
    let page = s.documents_page(None, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    let rest = s.documents_page(Some(page[0].0.file_id), 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    let all: Vec<usize> = page.iter().chain(&rest).map(|(_, c)| c.len()).collect();
    assert_eq!(all, [2, 1]);
}

pub async fn collections_crud_ownership_and_deleted_files(s: &dyn Store) {
    use confab::store::knowledge::*;
    let ann = add_user(s, "ann", Role::User).await;
    let bob = add_user(s, "bob", Role::User).await;
    let (f1, f2) = (id(), id());
    s.put_document(&document(&ann, f1, 1), &chunks_of(f1, 1))
        .await
        .unwrap();
    let c = Collection {
        id: id(),
        owner: ann.id,
        name: "Reports".into(),
        description: String::new(),
        file_ids: vec![f1],
        created_at: NOW,
        updated_at: NOW,
    };
    s.create_collection(&c).await.unwrap();
    assert!(matches!(
        s.create_collection(&c).await,
        Err(StoreError::Conflict(_))
    ));
    let other = Collection {
        id: id(),
        owner: ann.id,
        name: "archive".into(),
        ..c.clone()
    };
    s.create_collection(&other).await.unwrap();
    let names: Vec<String> = s
        .list_collections(ann.id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["archive", "Reports"]);
    assert!(s.list_collections(bob.id).await.unwrap().is_empty());
    assert!(matches!(
        s.get_collection(bob.id, c.id).await,
        Err(StoreError::NotFound)
    ));
    let patch = || CollectionPatch {
        name: Some("Q3 reports".into()),
        add: vec![f2, f1],
        ..Default::default()
    };
    assert!(matches!(
        s.update_collection(bob.id, c.id, patch(), NOW + 1).await,
        Err(StoreError::NotFound)
    ));
    let up = s
        .update_collection(ann.id, c.id, patch(), NOW + 1)
        .await
        .unwrap();
    assert_eq!(up.name, "Q3 reports");
    assert_eq!(up.file_ids, [f1, f2]);
    assert_eq!(up.updated_at, NOW + 1);
    let up = s
        .update_collection(
            ann.id,
            c.id,
            CollectionPatch {
                remove: vec![f2],
                ..Default::default()
            },
            NOW + 2,
        )
        .await
        .unwrap();
    assert_eq!(up.file_ids, [f1]);
    // A deleted document leaves every collection it was in.
    assert!(s.delete_document(ann.id, f1).await.unwrap());
    assert!(
        s.get_collection(ann.id, c.id)
            .await
            .unwrap()
            .file_ids
            .is_empty()
    );
    assert!(
        s.get_collection(ann.id, other.id)
            .await
            .unwrap()
            .file_ids
            .is_empty()
    );
    assert!(matches!(
        s.delete_collection(bob.id, c.id).await,
        Err(StoreError::NotFound)
    ));
    s.delete_collection(ann.id, c.id).await.unwrap();
    assert!(matches!(
        s.get_collection(ann.id, c.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.delete_collection(ann.id, c.id).await,
        Err(StoreError::NotFound)
    ));
    // Attached to a conversation through its patch.
    let conv = add_conversation(s, &ann, "chat").await;
    let attached = s
        .update_conversation(
            ann.id,
            conv.id,
            ConversationPatch {
                collections: Some(vec![other.id]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(attached.collections, [other.id]);
    assert_eq!(
        s.get_conversation(ann.id, conv.id)
            .await
            .unwrap()
            .collections,
        [other.id]
    );
}

// ---- running the suite ------------------------------------------------

// ---- uploads --------------------------------------------------------------

fn sha(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn upload(owner: &User, name: &str, size: u64, content: u8) -> Upload {
    Upload {
        id: id(),
        owner: owner.id,
        name: name.into(),
        mime: "image/png".into(),
        size,
        sha256: sha(content),
        created_at: NOW,
        width: Some(10),
        height: Some(20),
        thumbnail: None,
    }
}

pub async fn uploads_create_get_list_and_usage(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::User).await;
    assert_eq!(s.upload_usage(ann.id).await.unwrap(), 0);
    let a = upload(&ann, "a.png", 100, 1);
    let b = upload(&ann, "b.png", 250, 2);
    let c = upload(&ann, "c.png", 50, 3);
    for u in [&a, &b, &c] {
        assert!(matches!(
            s.create_upload(u, None).await.unwrap(),
            UploadCreated::Stored { .. }
        ));
    }
    assert_conflict!(s.create_upload(&c, None).await);
    assert_same!(s.get_upload(ann.id, b.id).await.unwrap(), b);
    assert_eq!(s.upload_usage(ann.id).await.unwrap(), 400);
    // Newest first, paged with the last id seen.
    let page: Vec<Uuid> = s
        .list_uploads(ann.id, None, 2)
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(page, vec![c.id, b.id]);
    let rest: Vec<Uuid> = s
        .list_uploads(ann.id, Some(b.id), 10)
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(rest, vec![a.id]);
    let all: Vec<Uuid> = s
        .all_uploads(None, 10)
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(all, vec![a.id, b.id, c.id]);
    let after: Vec<Uuid> = s
        .all_uploads(Some(a.id), 1)
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(after, vec![b.id]);
    assert_not_found!(s.get_upload(ann.id, id()).await);
}

pub async fn uploads_quota_is_checked_in_the_transaction(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::User).await;
    let a = upload(&ann, "a.png", 600, 1);
    assert_eq!(
        s.create_upload(&a, Some(1000)).await.unwrap(),
        UploadCreated::Stored { used: 600 }
    );
    let b = upload(&ann, "b.png", 500, 2);
    assert_eq!(
        s.create_upload(&b, Some(1000)).await.unwrap(),
        UploadCreated::OverQuota { used: 600 }
    );
    // Nothing of the refused file was stored.
    assert_not_found!(s.get_upload(ann.id, b.id).await);
    assert!(!s.blob_referenced(&b.sha256).await.unwrap());
    assert_eq!(s.upload_usage(ann.id).await.unwrap(), 600);
    // Exactly at the quota is allowed.
    let c = upload(&ann, "c.png", 400, 3);
    assert_eq!(
        s.create_upload(&c, Some(1000)).await.unwrap(),
        UploadCreated::Stored { used: 1000 }
    );
    // Concurrent uploads never pass the quota together.
    let bob = add_user(s, "bob", Role::User).await;
    let tries: Vec<Upload> = (0..8).map(|i| upload(&bob, "x.png", 300, 10 + i)).collect();
    let results = join_all(tries.iter().map(|u| s.create_upload(u, Some(1000)))).await;
    let stored = results
        .iter()
        .filter(|r| matches!(r, Ok(UploadCreated::Stored { .. })))
        .count();
    assert_eq!(stored, 3);
    assert_eq!(s.upload_usage(bob.id).await.unwrap(), 900);
}

pub async fn uploads_another_users_files_are_not_found(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::User).await;
    let bob = add_user(s, "bob", Role::User).await;
    let a = upload(&ann, "a.png", 100, 1);
    s.create_upload(&a, None).await.unwrap();
    assert_not_found!(s.get_upload(bob.id, a.id).await);
    assert_not_found!(s.delete_upload(bob.id, a.id).await);
    let t = Thumbnail {
        sha256: sha(9),
        mime: "image/jpeg".into(),
        size: 10,
        width: 5,
        height: 5,
    };
    assert_not_found!(s.set_upload_thumbnail(bob.id, a.id, &t).await);
    assert!(s.list_uploads(bob.id, None, 10).await.unwrap().is_empty());
    assert_eq!(s.upload_usage(bob.id).await.unwrap(), 0);
    // Still ann's, untouched.
    assert_same!(s.get_upload(ann.id, a.id).await.unwrap(), a);
}

pub async fn uploads_delete_frees_blobs_nothing_else_references(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::User).await;
    let bob = add_user(s, "bob", Role::User).await;
    // The same bytes uploaded by two users share one blob.
    let a = upload(&ann, "a.png", 100, 1);
    let b = upload(&bob, "b.png", 100, 1);
    s.create_upload(&a, None).await.unwrap();
    s.create_upload(&b, None).await.unwrap();
    assert!(s.blob_referenced(&a.sha256).await.unwrap());
    let d = s.delete_upload(ann.id, a.id).await.unwrap();
    assert_same!(d.upload, a);
    assert!(d.unreferenced.is_empty(), "bob's file still uses it");
    assert!(s.blob_referenced(&a.sha256).await.unwrap());
    assert_eq!(s.upload_usage(ann.id).await.unwrap(), 0);
    let d = s.delete_upload(bob.id, b.id).await.unwrap();
    assert_eq!(d.unreferenced, vec![b.sha256.clone()]);
    assert!(!s.blob_referenced(&b.sha256).await.unwrap());
    assert_not_found!(s.delete_upload(bob.id, b.id).await);
}

pub async fn uploads_thumbnails_reference_their_blobs(s: &dyn Store) {
    let ann = add_user(s, "ann", Role::User).await;
    let a = upload(&ann, "a.png", 100, 1);
    s.create_upload(&a, None).await.unwrap();
    let t1 = Thumbnail {
        sha256: sha(7),
        mime: "image/jpeg".into(),
        size: 10,
        width: 5,
        height: 10,
    };
    let (u, freed) = s.set_upload_thumbnail(ann.id, a.id, &t1).await.unwrap();
    assert_eq!(u.thumbnail.as_ref(), Some(&t1));
    assert!(freed.is_empty());
    assert!(s.blob_referenced(&t1.sha256).await.unwrap());
    assert_eq!(
        s.get_upload(ann.id, a.id).await.unwrap().thumbnail,
        Some(t1.clone())
    );
    // A new thumbnail frees the old one's blob.
    let t2 = Thumbnail {
        sha256: sha(8),
        ..t1.clone()
    };
    let (_, freed) = s.set_upload_thumbnail(ann.id, a.id, &t2).await.unwrap();
    assert_eq!(freed, vec![t1.sha256.clone()]);
    assert!(!s.blob_referenced(&t1.sha256).await.unwrap());
    // Deleting the file frees both its blobs; thumbnails count nothing.
    assert_eq!(s.upload_usage(ann.id).await.unwrap(), 100);
    let d = s.delete_upload(ann.id, a.id).await.unwrap();
    let mut freed = d.unreferenced.clone();
    freed.sort();
    let mut want = vec![a.sha256.clone(), t2.sha256.clone()];
    want.sort();
    assert_eq!(freed, want);
}

// ---- blobs --------------------------------------------------------------

/// The store's blob store: the shared one a database brings, else one in a
/// temporary directory (what a server on a local file uses), with the
/// directory that must outlive it.
fn blobs_of(
    s: &dyn Store,
) -> (
    std::sync::Arc<dyn confab::store::blobs::BlobStore>,
    Option<tempfile::TempDir>,
) {
    match s.shared_blobs() {
        Some(b) => (b, None),
        None => {
            let dir = tempfile::tempdir().unwrap();
            let b = confab::store::blobs::LocalBlobs::open(dir.path()).unwrap();
            (std::sync::Arc::new(b), Some(dir))
        }
    }
}

fn body_of(parts: Vec<Vec<u8>>) -> confab::store::blobs::BodyStream<'static> {
    use futures::StreamExt;
    futures::stream::iter(
        parts
            .into_iter()
            .map(|p| Ok(bytes::Bytes::from(p)))
            .collect::<Vec<_>>(),
    )
    .boxed()
}

/// 2.5 MiB of varied bytes (several of the database's 1 MiB chunks), in
/// uneven pieces.
fn big_content() -> (Vec<u8>, Vec<Vec<u8>>) {
    let all: Vec<u8> = (0..(5 * 512 * 1024u32))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let parts = all.chunks(300_007).map(|c| c.to_vec()).collect();
    (all, parts)
}

pub async fn blobs_stage_commit_read_stream_and_delete(s: &dyn Store) {
    use confab::store::blobs::BlobError;
    use futures::StreamExt;
    use sha2::Digest;
    let (b, _dir) = blobs_of(s);
    let (all, parts) = big_content();
    let want = hex::encode(sha2::Sha256::digest(&all));
    let staged = b.stage(body_of(parts)).await.unwrap();
    assert_eq!(staged.sha256, want);
    assert_eq!(staged.size, all.len() as u64);
    assert!(!b.exists(&want).await.unwrap(), "not visible before commit");
    assert!(b.list().await.unwrap().is_empty());
    let hold = b.commit(staged).await.unwrap();
    assert_eq!(hold.sha256, want);
    b.release(hold).await.unwrap();
    assert!(b.exists(&want).await.unwrap());
    assert!(b.read(&want, all.len() as u64).await.unwrap()[..] == all[..]);
    assert!(b.read(&want, all.len() as u64 - 1).await.is_err());
    let (stream, len) = b.open(&want).await.unwrap();
    assert_eq!(len, all.len() as u64);
    let streamed: Vec<u8> = stream.map(|c| c.unwrap().to_vec()).concat().await;
    assert!(streamed == all, "the stream differs");
    // The same bytes again are the same one blob.
    let hold = b.put_bytes(bytes::Bytes::from(all.clone())).await.unwrap();
    assert_eq!(hold.sha256, want);
    b.release(hold).await.unwrap();
    let small = b
        .put_bytes(bytes::Bytes::from_static(b"hello world"))
        .await
        .unwrap();
    let hello = small.sha256.clone();
    assert_eq!(
        hello,
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    );
    b.release(small).await.unwrap();
    let mut both = vec![want.clone(), hello.clone()];
    both.sort();
    assert_eq!(b.list().await.unwrap(), both);
    // Nothing references them: deleting removes them, twice is fine.
    b.delete(&want).await.unwrap();
    b.delete(&want).await.unwrap();
    assert!(matches!(
        b.read(&want, u64::MAX).await,
        Err(BlobError::NotFound)
    ));
    assert!(matches!(b.open(&want).await, Err(BlobError::NotFound)));
    assert_eq!(b.list().await.unwrap(), vec![hello.clone()]);
    assert_eq!(&b.read(&hello, 100).await.unwrap()[..], b"hello world");
    // Only addresses are addresses.
    for bad in ["../../etc/passwd", "", "ABCD", &"g".repeat(64)] {
        assert!(matches!(b.read(bad, 10).await, Err(BlobError::NotFound)));
        assert!(!b.exists(bad).await.unwrap_or(false));
    }
}

pub async fn blobs_a_failing_or_dropped_staging_leaves_nothing(s: &dyn Store) {
    use confab::store::blobs::BlobError;
    use futures::StreamExt;
    let (b, _dir) = blobs_of(s);
    let (_, mut parts) = big_content();
    parts.truncate(5);
    let failing = futures::stream::iter(
        parts
            .into_iter()
            .map(|p| Ok(bytes::Bytes::from(p)))
            .chain(std::iter::once(Err(std::io::Error::other(
                "client went away",
            ))))
            .collect::<Vec<_>>(),
    )
    .boxed();
    assert!(matches!(b.stage(failing).await, Err(BlobError::Source(_))));
    let staged = b
        .stage(body_of(vec![b"never committed".to_vec()]))
        .await
        .unwrap();
    let sha = staged.sha256.clone();
    drop(staged);
    assert!(!b.exists(&sha).await.unwrap());
    b.sweep().await.unwrap();
    assert!(b.list().await.unwrap().is_empty());
}

/// A blob store several instances share keeps, when asked to delete, a
/// blob that a record or a live hold references by then (the instance
/// that asked saw it unreferenced a moment earlier); a store in one
/// process's data directory leaves that to the process's own lock, and
/// only a database brings a shared one.
pub async fn blobs_a_shared_store_keeps_what_a_record_or_a_hold_references(s: &dyn Store) {
    let Some(b) = s.shared_blobs() else {
        assert!(s.file().is_some(), "a store of one process has a file");
        return;
    };
    let ann = add_user(s, "ann", Role::User).await;
    let hold = b
        .put_bytes(bytes::Bytes::from_static(b"shared content"))
        .await
        .unwrap();
    let content = hold.sha256.clone();
    // Held: another instance's delete leaves it.
    b.delete(&content).await.unwrap();
    assert!(b.exists(&content).await.unwrap(), "held");
    // Referenced by a record: released, and still kept.
    let mut u = upload(&ann, "a.png", 14, 1);
    u.sha256 = content.clone();
    s.create_upload(&u, None).await.unwrap();
    b.release(hold).await.unwrap();
    b.delete(&content).await.unwrap();
    assert!(b.exists(&content).await.unwrap(), "referenced");
    // A thumbnail's reference counts the same.
    let thumb = b
        .put_bytes(bytes::Bytes::from_static(b"thumbnail bytes"))
        .await
        .unwrap();
    let t = Thumbnail {
        sha256: thumb.sha256.clone(),
        mime: "image/jpeg".into(),
        size: 15,
        width: 1,
        height: 1,
    };
    s.set_upload_thumbnail(ann.id, u.id, &t).await.unwrap();
    b.release(thumb).await.unwrap();
    b.delete(&t.sha256).await.unwrap();
    assert!(b.exists(&t.sha256).await.unwrap(), "a thumbnail");
    // The record gone, both go.
    let d = s.delete_upload(ann.id, u.id).await.unwrap();
    for sha in &d.unreferenced {
        b.delete(sha).await.unwrap();
    }
    assert!(!b.exists(&content).await.unwrap());
    assert!(!b.exists(&t.sha256).await.unwrap());
    // Concurrent uploads of one content and deletes of it: whatever the
    // order, a record never outlives its bytes.
    for round in 0..10u8 {
        let bytes = bytes::Bytes::from(vec![round; 3000]);
        let first = b.put_bytes(bytes.clone()).await.unwrap();
        let mut old = upload(&ann, "old.png", 3000, 1);
        old.sha256 = first.sha256.clone();
        s.create_upload(&old, None).await.unwrap();
        b.release(first).await.unwrap();
        let deleter = async {
            let d = s.delete_upload(ann.id, old.id).await.unwrap();
            for sha in &d.unreferenced {
                b.delete(sha).await.unwrap();
            }
        };
        let uploader = async {
            let hold = b.put_bytes(bytes.clone()).await.unwrap();
            let mut new = upload(&ann, "new.png", 3000, 1);
            new.sha256 = hold.sha256.clone();
            s.create_upload(&new, None).await.unwrap();
            b.release(hold).await.unwrap();
            new
        };
        let ((), new) = futures::join!(deleter, uploader);
        assert!(
            b.read(&new.sha256, u64::MAX).await.unwrap()[..] == bytes[..],
            "round {round}: the new record's bytes are there"
        );
        let d = s.delete_upload(ann.id, new.id).await.unwrap();
        for sha in &d.unreferenced {
            b.delete(sha).await.unwrap();
        }
        assert!(!b.exists(&new.sha256).await.unwrap());
    }
}

// ---- single sign-on ---------------------------------------------------

fn identity(u: &User, issuer: &str, subject: &str) -> IdentityLink {
    IdentityLink {
        id: id(),
        user_id: u.id,
        provider: "corp".into(),
        issuer: issuer.into(),
        subject: subject.into(),
        email: u.email.clone(),
        created_at: NOW,
    }
}

fn sso_state(provider: &str, created_at: i64, ttl: i64) -> SsoState {
    SsoState {
        provider: provider.into(),
        nonce: format!("nonce-{}", id()),
        pkce_verifier: format!("verifier-{}", id()),
        link_user: None,
        created_at,
        expires_at: created_at + ttl,
    }
}

pub async fn identities_link_find_list_unlink(s: &dyn Store) {
    let alice = add_user(s, "alice", Role::User).await;
    let bob = add_user(s, "bob", Role::User).await;
    let a1 = identity(&alice, "https://id.example", "sub-a");
    let a2 = identity(&alice, "ldap:ldap://dir", "uid=alice,dc=example");
    s.link_identity(&a1, None).await.unwrap();
    s.link_identity(&a2, None).await.unwrap();
    assert_same!(
        s.find_identity("https://id.example", "sub-a")
            .await
            .unwrap(),
        Some(a1.clone())
    );
    // Issuer and subject together are the key.
    assert!(
        s.find_identity("https://other", "sub-a")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.find_identity("https://id.example", "sub-b")
            .await
            .unwrap()
            .is_none()
    );
    assert_same!(
        s.list_identities(alice.id).await.unwrap(),
        vec![a1.clone(), a2.clone()]
    );
    assert!(s.list_identities(bob.id).await.unwrap().is_empty());
    // One identity, one account.
    let again = identity(&bob, "https://id.example", "sub-a");
    assert_conflict!(s.link_identity(&again, None).await);
    assert!(s.list_identities(bob.id).await.unwrap().is_empty());
    // Another user's identity is not found; nothing changes.
    assert_not_found!(s.unlink_identity(bob.id, a1.id).await);
    assert_not_found!(s.unlink_identity(alice.id, id()).await);
    assert_same!(
        s.unlink_identity(alice.id, a1.id).await.unwrap(),
        a1.clone()
    );
    assert!(
        s.find_identity("https://id.example", "sub-a")
            .await
            .unwrap()
            .is_none()
    );
    assert_same!(s.list_identities(alice.id).await.unwrap(), vec![a2.clone()]);
    // Once unlinked, the identity may be linked to another account.
    s.link_identity(&again, None).await.unwrap();
    assert_same!(s.list_identities(bob.id).await.unwrap(), vec![again]);
    // A link to an account that does not exist is refused.
    let ghost = user("ghost", Role::User);
    assert_not_found!(
        s.link_identity(&identity(&ghost, "https://id.example", "g"), None)
            .await
    );
}

pub async fn identities_link_with_a_new_user_is_one_transaction(s: &dyn Store) {
    let taken = add_user(s, "carol", Role::User).await;
    let existing = identity(&taken, "https://id.example", "sub-c");
    s.link_identity(&existing, None).await.unwrap();
    // The identity is linked already: the new user is not created either.
    let dave = user("dave", Role::User);
    assert_conflict!(
        s.link_identity(&identity(&dave, "https://id.example", "sub-c"), Some(&dave))
            .await
    );
    assert!(s.find_user_by_name("dave").await.unwrap().is_none());
    // The name is taken: the link is not stored either.
    let carol2 = user("Carol", Role::User);
    let l = identity(&carol2, "https://id.example", "sub-new");
    assert_conflict!(s.link_identity(&l, Some(&carol2)).await);
    assert!(
        s.find_identity("https://id.example", "sub-new")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.user_count().await.unwrap(), 1);
    // Both new: both stored.
    let erin = user("erin", Role::Admin);
    let l = identity(&erin, "https://id.example", "sub-e");
    s.link_identity(&l, Some(&erin)).await.unwrap();
    assert_same!(s.get_user(erin.id).await.unwrap(), erin);
    assert_same!(
        s.find_identity("https://id.example", "sub-e")
            .await
            .unwrap(),
        Some(l)
    );
}

fn group(name: &str, models: &[&str]) -> Group {
    Group {
        id: id(),
        name: name.into(),
        models: models.iter().map(|m| m.to_string()).collect(),
        providers: Vec::new(),
        quota: None,
        created_at: NOW,
        updated_at: NOW,
    }
}

pub async fn groups_create_rename_list_and_delete(s: &dyn Store) {
    let staff = group("Staff", &["llama3.2"]);
    let mut guests = group("guests", &[]);
    guests.quota = Some(QuotaOverride {
        messages_per_day: Some(5),
        tokens_per_day: None,
        storage_bytes: None,
    });
    s.create_group(&staff).await.unwrap();
    s.create_group(&guests).await.unwrap();
    // Names are unique once folded: "staff" is "Staff".
    assert_conflict!(s.create_group(&group("staff", &[])).await);
    assert_same!(s.get_group(staff.id).await.unwrap(), staff);
    assert_not_found!(s.get_group(id()).await);
    // By name (folded), whatever the order of creation.
    assert_same!(
        s.list_groups().await.unwrap(),
        vec![guests.clone(), staff.clone()]
    );
    // A rename to another group's name is refused and changes nothing.
    let mut clash = staff.clone();
    clash.name = "Guests".into();
    assert_conflict!(s.update_group(&clash).await);
    assert_same!(s.get_group(staff.id).await.unwrap(), staff);
    // A rename frees the old name.
    let mut renamed = staff.clone();
    renamed.name = "Team".into();
    renamed.providers = vec!["local".into()];
    renamed.updated_at = NOW + 1;
    s.update_group(&renamed).await.unwrap();
    assert_same!(s.get_group(staff.id).await.unwrap(), renamed);
    s.create_group(&group("staff", &[])).await.unwrap();
    assert_not_found!(s.update_group(&group("nobody", &[])).await);
    // Deleting returns the group and frees its name.
    assert_same!(s.delete_group(guests.id).await.unwrap(), guests);
    assert_not_found!(s.delete_group(guests.id).await);
    assert_not_found!(s.get_group(guests.id).await);
    s.create_group(&group("Guests", &[])).await.unwrap();
    assert_eq!(s.list_groups().await.unwrap().len(), 3);
}

pub async fn groups_members_both_ways(s: &dyn Store) {
    let (alice, bob) = (
        add_user(s, "alice", Role::User).await,
        add_user(s, "bob", Role::User).await,
    );
    let (a, b) = (group("b-team", &["m1"]), group("a-team", &["m2"]));
    s.create_group(&a).await.unwrap();
    s.create_group(&b).await.unwrap();
    assert!(s.add_group_member(a.id, alice.id).await.unwrap());
    assert!(
        !s.add_group_member(a.id, alice.id).await.unwrap(),
        "added once"
    );
    assert!(s.add_group_member(a.id, bob.id).await.unwrap());
    assert!(s.add_group_member(b.id, alice.id).await.unwrap());
    // No such group or user.
    assert_not_found!(s.add_group_member(id(), alice.id).await);
    assert_not_found!(s.add_group_member(a.id, id()).await);
    assert_not_found!(s.remove_group_member(id(), alice.id).await);
    assert_not_found!(s.group_members(id()).await);
    assert_eq!(
        s.group_members(a.id).await.unwrap(),
        sorted(vec![alice.id, bob.id])
    );
    // A user's groups, by name.
    assert_same!(
        s.user_groups(alice.id).await.unwrap(),
        vec![b.clone(), a.clone()]
    );
    assert_same!(s.user_groups(bob.id).await.unwrap(), vec![a.clone()]);
    assert!(s.user_groups(id()).await.unwrap().is_empty());
    assert!(s.remove_group_member(a.id, bob.id).await.unwrap());
    assert!(
        !s.remove_group_member(a.id, bob.id).await.unwrap(),
        "removed once"
    );
    assert!(s.user_groups(bob.id).await.unwrap().is_empty());
    // A renamed group is seen renamed through its members.
    let mut renamed = a.clone();
    renamed.name = "z-team".into();
    s.update_group(&renamed).await.unwrap();
    assert_same!(
        s.user_groups(alice.id).await.unwrap(),
        vec![b.clone(), renamed]
    );
    // Deleting a group ends its memberships, both ways.
    s.delete_group(b.id).await.unwrap();
    assert_eq!(s.user_groups(alice.id).await.unwrap().len(), 1);
    s.delete_group(a.id).await.unwrap();
    assert!(s.user_groups(alice.id).await.unwrap().is_empty());
}

pub async fn sso_states_are_single_use_and_expire(s: &dyn Store) {
    let (k1, k2, k3) = (hash(), hash(), hash());
    let st = sso_state("corp", NOW, 600);
    s.put_sso_state(&k1, &st).await.unwrap();
    assert!(s.take_sso_state(&hash(), NOW).await.unwrap().is_none());
    assert_same!(
        s.take_sso_state(&k1, NOW + 1).await.unwrap(),
        Some(st.clone())
    );
    // A replay finds nothing.
    assert!(s.take_sso_state(&k1, NOW + 1).await.unwrap().is_none());
    // Expired: not returned, and gone.
    s.put_sso_state(&k2, &sso_state("corp", NOW, 600))
        .await
        .unwrap();
    assert!(s.take_sso_state(&k2, NOW + 600).await.unwrap().is_none());
    // A later put drops the expired ones it finds.
    s.put_sso_state(&k3, &sso_state("corp", NOW, 60))
        .await
        .unwrap();
    let later = sso_state("corp", NOW + 61, 600);
    s.put_sso_state(&k1, &later).await.unwrap();
    assert!(s.take_sso_state(&k3, NOW).await.unwrap().is_none());
    let mut linking = sso_state("corp", NOW, 600);
    linking.link_user = Some(id());
    s.put_sso_state(&k2, &linking).await.unwrap();
    assert_same!(s.take_sso_state(&k2, NOW).await.unwrap(), Some(linking));
    assert_same!(s.take_sso_state(&k1, NOW + 62).await.unwrap(), Some(later));
}

pub async fn sso_states_taken_at_once_are_taken_once(s: &dyn Store) {
    let k = hash();
    s.put_sso_state(&k, &sso_state("corp", NOW, 600))
        .await
        .unwrap();
    let got = join_all((0..8).map(|_| s.take_sso_state(&k, NOW))).await;
    let found = got.into_iter().filter(|r| matches!(r, Ok(Some(_)))).count();
    assert_eq!(found, 1);
}

// ---- security: second factors, one-time tokens, policy -----------------

fn two_factor(user_id: Uuid) -> TwoFactor {
    TwoFactor {
        user_id,
        secret: vec![7; 20],
        enabled: false,
        created_at: NOW,
        enabled_at: None,
        last_step: 0,
        recovery: Vec::new(),
    }
}

pub async fn security_two_factor_put_get_update_delete(s: &dyn Store) {
    let (a, b) = (id(), id());
    assert!(s.get_two_factor(a).await.unwrap().is_none());
    assert!(
        s.update_two_factor(a, Box::new(|_| true))
            .await
            .unwrap()
            .is_none()
    );
    let rec = two_factor(a);
    s.put_two_factor(&rec).await.unwrap();
    s.put_two_factor(&two_factor(b)).await.unwrap();
    assert_same!(s.get_two_factor(a).await.unwrap().unwrap(), rec);

    // A change that says "unchanged" is not written.
    let (after, changed) = s
        .update_two_factor(
            a,
            Box::new(|t| {
                t.last_step = 99;
                false
            }),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!changed);
    assert_eq!(after.last_step, 99);
    assert_eq!(s.get_two_factor(a).await.unwrap().unwrap().last_step, 0);

    let (after, changed) = s
        .update_two_factor(
            a,
            Box::new(|t| {
                t.enabled = true;
                t.last_step = 5;
                t.recovery.push(RecoveryCode {
                    hash: "h".into(),
                    used_at: None,
                });
                true
            }),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(changed);
    assert_same!(s.get_two_factor(a).await.unwrap().unwrap(), after);
    // The other user's record is untouched.
    assert_same!(s.get_two_factor(b).await.unwrap().unwrap(), two_factor(b));

    assert!(s.delete_two_factor(a).await.unwrap());
    assert!(!s.delete_two_factor(a).await.unwrap());
    assert!(s.get_two_factor(a).await.unwrap().is_none());
    assert!(s.get_two_factor(b).await.unwrap().is_some());
}

pub async fn security_two_factor_concurrent_updates_accept_a_step_once(s: &dyn Store) {
    let a = id();
    s.put_two_factor(&two_factor(a)).await.unwrap();
    // Ten checks of the same code at once: exactly one advances the step.
    let tries = (0..10).map(|_| {
        s.update_two_factor(
            a,
            Box::new(|t| {
                if t.last_step >= 7 {
                    return false;
                }
                t.last_step = 7;
                true
            }),
        )
    });
    let won = join_all(tries)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().as_ref().unwrap().1)
        .count();
    assert_eq!(won, 1);
}

fn one_time(kind: OneTimeKind, user_id: Uuid, expires_at: i64) -> OneTimeToken {
    OneTimeToken {
        kind,
        user_id,
        created_at: NOW,
        expires_at,
        email: Some("a@example.test".into()),
        attempts: 2,
        purpose: None,
    }
}

pub async fn security_one_time_tokens_are_single_use(s: &dyn Store) {
    let u = id();
    let (h1, h2, h3) = (hash(), hash(), hash());
    let t = one_time(OneTimeKind::PasswordReset, u, NOW + 60);
    s.put_one_time(&h1, &t).await.unwrap();
    // Another kind does not take it, and leaves it.
    assert!(
        s.take_one_time(OneTimeKind::EmailVerification, &h1, NOW)
            .await
            .unwrap()
            .is_none()
    );
    assert_same!(
        s.take_one_time(OneTimeKind::PasswordReset, &h1, NOW)
            .await
            .unwrap()
            .unwrap(),
        t
    );
    assert!(
        s.take_one_time(OneTimeKind::PasswordReset, &h1, NOW)
            .await
            .unwrap()
            .is_none()
    );
    // Expired: refused, and gone.
    s.put_one_time(&h2, &t).await.unwrap();
    assert!(
        s.take_one_time(OneTimeKind::PasswordReset, &h2, NOW + 60)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.take_one_time(OneTimeKind::PasswordReset, &h2, NOW)
            .await
            .unwrap()
            .is_none()
    );
    // Concurrent takers: one wins.
    s.put_one_time(&h3, &t).await.unwrap();
    let got = join_all((0..8).map(|_| s.take_one_time(OneTimeKind::PasswordReset, &h3, NOW)))
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().is_some())
        .count();
    assert_eq!(got, 1);
}

pub async fn security_one_time_tokens_delete_by_user_and_prune(s: &dyn Store) {
    let (u, v) = (id(), id());
    let (h1, h2, h3, h4) = (hash(), hash(), hash(), hash());
    s.put_one_time(&h1, &one_time(OneTimeKind::PasswordReset, u, NOW + 60))
        .await
        .unwrap();
    s.put_one_time(&h2, &one_time(OneTimeKind::PasswordReset, u, NOW + 60))
        .await
        .unwrap();
    s.put_one_time(&h3, &one_time(OneTimeKind::LoginChallenge, u, NOW + 60))
        .await
        .unwrap();
    s.put_one_time(&h4, &one_time(OneTimeKind::PasswordReset, v, NOW + 10))
        .await
        .unwrap();
    assert_eq!(
        s.delete_one_time_of_user(u, OneTimeKind::PasswordReset)
            .await
            .unwrap(),
        2
    );
    assert!(
        s.take_one_time(OneTimeKind::PasswordReset, &h1, NOW)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.prune_one_time(NOW + 30).await.unwrap(), 1);
    assert!(
        s.take_one_time(OneTimeKind::PasswordReset, &h4, NOW)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.take_one_time(OneTimeKind::LoginChallenge, &h3, NOW)
            .await
            .unwrap()
            .is_some()
    );
}

pub async fn security_policy_defaults_to_optional(s: &dyn Store) {
    assert_eq!(
        s.two_factor_policy().await.unwrap(),
        TwoFactorPolicy::Optional
    );
    s.set_two_factor_policy(TwoFactorPolicy::Admins)
        .await
        .unwrap();
    assert_eq!(
        s.two_factor_policy().await.unwrap(),
        TwoFactorPolicy::Admins
    );
    s.set_two_factor_policy(TwoFactorPolicy::Everyone)
        .await
        .unwrap();
    assert_eq!(
        s.two_factor_policy().await.unwrap(),
        TwoFactorPolicy::Everyone
    );
}

pub async fn users_email_change_unverifies_and_verify_checks_the_address(s: &dyn Store) {
    // An active admin, so that changing another account is allowed.
    s.create_user(&user("root", Role::Admin), false, None, NOW)
        .await
        .unwrap();
    let u = user("erin", Role::User);
    s.create_user(&u, false, None, NOW).await.unwrap();
    let patch = |email: Option<Option<String>>, verify: Option<String>| UserPatch {
        email,
        verify_email: verify,
        updated_at: NOW,
        ..UserPatch::default()
    };
    let (back, _) = s
        .update_user(u.id, patch(None, Some("erin@example.test".into())), None)
        .await
        .unwrap();
    assert!(back.email_verified);
    // A verification of another address does nothing.
    let (back, _) = s
        .update_user(
            u.id,
            patch(Some(Some("new@example.test".into())), None),
            None,
        )
        .await
        .unwrap();
    assert!(!back.email_verified);
    assert_eq!(back.email.as_deref(), Some("new@example.test"));
    let (back, _) = s
        .update_user(u.id, patch(None, Some("erin@example.test".into())), None)
        .await
        .unwrap();
    assert!(!back.email_verified);
    let (back, _) = s
        .update_user(u.id, patch(None, Some("new@example.test".into())), None)
        .await
        .unwrap();
    assert!(back.email_verified);
    assert_same!(s.get_user(u.id).await.unwrap(), back);
}

pub async fn import_sourced_skips_what_was_imported_before(s: &dyn Store) {
    use confab::store::shares::Sourced;
    let ann = add_user(s, "ann", Role::Admin).await;
    let bob = add_user(s, "bob", Role::User).await;
    let c1 = conversation(&ann, "from chatgpt", 1_000);
    let q = ask(&c1, None, "question");
    let c2 = conversation(&ann, "unsourced", 2_000);
    let src = Some("chatgpt:abc".to_string());
    let out = s
        .import_sourced(
            ann.id,
            &[
                (src.clone(), c1.clone(), vec![q.clone()]),
                (None, c2.clone(), vec![]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out, [Sourced::Imported, Sourced::Imported]);
    assert_same!(
        s.conversation_with_messages(ann.id, c1.id).await.unwrap(),
        (&c1, &vec![q.clone()])
    );
    // The same source again: left out, pointing at the first import.
    let again = conversation(&ann, "from chatgpt", 3_000);
    let out = s
        .import_sourced(ann.id, &[(src.clone(), again.clone(), vec![])])
        .await
        .unwrap();
    assert_eq!(out, [Sourced::Existing(c1.id)]);
    assert!(matches!(
        s.get_conversation(ann.id, again.id).await,
        Err(StoreError::NotFound)
    ));
    // Another user's source keys are their own.
    let theirs = conversation(&bob, "from chatgpt", 3_000);
    let out = s
        .import_sourced(bob.id, &[(src.clone(), theirs.clone(), vec![])])
        .await
        .unwrap();
    assert_eq!(out, [Sourced::Imported]);
    // Once the conversation is deleted, the source imports again.
    s.delete_conversation(ann.id, c1.id).await.unwrap();
    let out = s
        .import_sourced(ann.id, &[(src.clone(), again.clone(), vec![])])
        .await
        .unwrap();
    assert_eq!(out, [Sourced::Imported]);
    let out = s
        .import_sourced(ann.id, &[(src, conversation(&ann, "x", 4_000), vec![])])
        .await
        .unwrap();
    assert_eq!(out, [Sourced::Existing(again.id)]);
    // A conversation of another user is refused, and nothing is written.
    let wrong = conversation(&bob, "not ann's", 5_000);
    assert!(
        s.import_sourced(ann.id, &[(None, wrong.clone(), vec![])])
            .await
            .is_err()
    );
    assert!(s.get_conversation(bob.id, wrong.id).await.is_err());
}

pub async fn import_jobs_put_read_list_delete_and_interrupt(s: &dyn Store) {
    use confab::store::import_jobs::{ImportJobRecord, ImportJobStatus};
    let ann = add_user(s, "ann", Role::Admin).await;
    let bob = add_user(s, "bob", Role::User).await;
    let (here, gone) = (id(), id());
    let mk = |owner: &User, runner: Uuid, status: ImportJobStatus| ImportJobRecord {
        id: id(),
        user_id: owner.id,
        status,
        runner: Some(runner),
        file_name: Some("conversations.json".into()),
        created_at: NOW,
        updated_at: NOW,
        progress: 0.25,
        bytes_total: 1000,
        imported: 3,
        skipped: 1,
        error: None,
        report: None,
    };
    let a = mk(&ann, here, ImportJobStatus::Running);
    let b = mk(&ann, gone, ImportJobStatus::Running);
    let mut done = mk(&ann, gone, ImportJobStatus::Done);
    done.report = Some(serde_json::json!({"imported": [{"id": "x", "title": "t"}], "skipped": []}));
    let theirs = mk(&bob, gone, ImportJobStatus::Running);
    for j in [&a, &b, &done, &theirs] {
        s.put_import_job(j).await.unwrap();
    }
    assert_eq!(s.import_job(ann.id, a.id).await.unwrap(), a);
    assert_eq!(s.import_job(ann.id, done.id).await.unwrap(), done);
    // Another user's job is not found, and cannot be taken over.
    assert_not_found!(s.import_job(bob.id, a.id).await);
    assert_conflict!(
        s.put_import_job(&ImportJobRecord {
            user_id: bob.id,
            ..a.clone()
        })
        .await
    );
    assert_eq!(s.import_job(ann.id, a.id).await.unwrap(), a);
    // Progress replaces the record.
    let a2 = ImportJobRecord {
        progress: 0.5,
        imported: 7,
        updated_at: NOW + 1,
        ..a.clone()
    };
    s.put_import_job(&a2).await.unwrap();
    assert_eq!(s.import_job(ann.id, a.id).await.unwrap(), a2);
    // Newest first, only the owner's.
    let list = s.list_import_jobs(ann.id).await.unwrap();
    assert_eq!(
        list.iter().map(|j| j.id).collect::<Vec<_>>(),
        [done.id, b.id, a.id]
    );
    assert_eq!(
        s.list_import_jobs(bob.id).await.unwrap(),
        vec![theirs.clone()]
    );
    // Running jobs of runners not alive are interrupted, with what they
    // had counted; the others are left as they are.
    let n = s
        .interrupt_import_jobs(&[here], "stopped", NOW + 5)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let b2 = s.import_job(ann.id, b.id).await.unwrap();
    assert_eq!(b2.status, ImportJobStatus::Interrupted);
    assert_eq!(b2.error.as_deref(), Some("stopped"));
    assert_eq!((b2.imported, b2.skipped, b2.updated_at), (3, 1, NOW + 5));
    assert_eq!(
        s.import_job(bob.id, theirs.id).await.unwrap().status,
        ImportJobStatus::Interrupted
    );
    assert_eq!(s.import_job(ann.id, a.id).await.unwrap(), a2);
    assert_eq!(s.import_job(ann.id, done.id).await.unwrap(), done);
    // No runner alive: every running job.
    assert_eq!(
        s.interrupt_import_jobs(&[], "stopped", NOW + 6)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.import_job(ann.id, a.id).await.unwrap().status,
        ImportJobStatus::Interrupted
    );
    assert_eq!(
        s.interrupt_import_jobs(&[], "stopped", NOW + 7)
            .await
            .unwrap(),
        0
    );
    // Deleting: only the owner, once.
    assert_not_found!(s.delete_import_job(bob.id, a.id).await);
    s.delete_import_job(ann.id, a.id).await.unwrap();
    assert_not_found!(s.import_job(ann.id, a.id).await);
    assert_not_found!(s.delete_import_job(ann.id, a.id).await);
    assert_eq!(s.list_import_jobs(ann.id).await.unwrap().len(), 2);
}

pub async fn shares_create_read_list_and_revoke(s: &dyn Store) {
    use confab::store::shares::{Share, SharedMessage};
    let ann = add_user(s, "ann", Role::Admin).await;
    let bob = add_user(s, "bob", Role::User).await;
    let c = add_conversation(s, &ann, "shared").await;
    let mk = |token: &str, owner: &User, at: i64| Share {
        id: id(),
        token: token.to_string(),
        user_id: owner.id,
        conversation_id: c.id,
        title: "shared".into(),
        model: Some("m".into()),
        signed_in_only: at % 2 == 0,
        created_at: at,
        messages: vec![SharedMessage {
            role: MessageRole::User,
            content: "hello".into(),
            model: None,
            created_at: at,
            attachments: vec![confab::store::chat::Attachment {
                id: id(),
                name: "cat.png".into(),
                mime: "image/png".into(),
                size: 42,
                width: Some(4),
                height: Some(3),
            }],
        }],
    };
    let a = mk("tok-a", &ann, 1);
    let b = mk("tok-b", &ann, 2);
    let other = mk("tok-c", &bob, 3);
    for x in [&a, &b, &other] {
        s.create_share(x).await.unwrap();
    }
    assert_eq!(s.share_by_token("tok-a").await.unwrap(), a);
    assert!(matches!(
        s.share_by_token("nope").await,
        Err(StoreError::NotFound)
    ));
    // A taken token conflicts.
    assert!(matches!(
        s.create_share(&Share {
            id: id(),
            ..a.clone()
        })
        .await,
        Err(StoreError::Conflict(_))
    ));
    // Newest first, without their messages, only the owner's.
    let list = s.list_shares(ann.id).await.unwrap();
    assert_eq!(list.iter().map(|x| x.id).collect::<Vec<_>>(), [b.id, a.id]);
    assert!(list.iter().all(|x| x.messages.is_empty()));
    assert_eq!(s.list_shares(bob.id).await.unwrap().len(), 1);
    // Another user's link is not found; revoking removes it for good.
    assert!(matches!(
        s.delete_share(bob.id, a.id).await,
        Err(StoreError::NotFound)
    ));
    s.delete_share(ann.id, a.id).await.unwrap();
    assert!(matches!(
        s.share_by_token("tok-a").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.delete_share(ann.id, a.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.list_shares(ann.id).await.unwrap().len(), 1);
}

/// One `#[tokio::test]` per case against the backend `$fresh` opens:
/// `async fn() -> (SharedStore, guard)`, a new empty store and whatever
/// must live as long as it (a temporary directory, a database).
macro_rules! contract_tests {
    ($fresh:path) => {
        $crate::store_contract::contract_tests!(@cases $fresh;
            users_create_get_find_count,
            users_create_conflicts_change_nothing,
            users_concurrent_registrations_of_one_name_one_wins,
            users_create_with_invite_spends_one_use,
            users_create_refused_leaves_the_invite_unspent,
            users_concurrent_registrations_never_overspend_an_invite,
            users_update_applies_the_patch,
            users_the_last_active_admin_stays,
            users_sign_out_ends_sessions_families_and_keys_together,
            users_sign_out_without_keys_keeps_api_keys,
            users_list_oldest_first_with_cursor,
            sessions_put_get_list_delete,
            sessions_touch_moves_last_seen_forward,
            sessions_delete_all_but_one,
            sessions_prune_expired_and_idle,
            refresh_rotation_and_reuse,
            refresh_unknown_and_expired_are_invalid,
            tokens_prune_expired_refresh_and_finished_invites,
            api_keys_put_get_touch_list_delete,
            invites_put_get_list_delete,
            audit_newest_first_with_cursor,
            audit_filtered_by_actor_action_and_time,
            audit_filtered_scan_resumes,
            providers_create_get_list_put_delete,
            conversations_create_and_get,
            conversations_list_newest_first_with_cursor_and_filters,
            conversations_update_fields,
            conversations_touch_moves_to_the_top,
            conversations_title_set_and_auto,
            conversations_current_leaf,
            conversations_delete_removes_messages_and_queues_removal,
            conversations_ids_and_whole_conversations,
            messages_insert_get_list,
            turn_starts_a_conversation,
            turn_and_update_remember_sampling_settings,
            turn_continues_regenerates_and_edits,
            turn_with_a_parent_outside_the_conversation_writes_nothing,
            turn_in_another_users_conversation_writes_nothing,
            streaming_flush_then_finish,
            streaming_finish_after_delete_is_dropped,
            streaming_recover_interrupts_what_was_left,
            streaming_finish_racing_a_delete_never_fails,
            import_whole_conversations,
            ownership_another_users_records_are_not_found,
            usage_charges_add_up,
            usage_per_key_adds_up_beside_the_user_totals,
            usage_long_names_are_clipped_consistently,
            outbox_starts_empty,
            outbox_orders_and_resolves_ops,
            outbox_ack_removes_through_seq,
            searchable_pages_walk_every_conversation,
            outbox_acks_racing_writers_lose_no_op,
            acme_accounts_and_certificates,
            health_schema_and_probe,
            sessions_touch_never_moves_last_seen_back,
            conversations_create_with_a_taken_id_conflicts,
            import_with_a_taken_id_writes_nothing,
            presets_own_and_shared_are_seen_others_are_not_found,
            prompts_commands_are_unique_per_owner,
            settings_per_user_and_branding,
            model_settings_put_list_replace_and_default,
            documents_put_read_replace_and_delete,
            documents_of_another_user_are_not_found,
            collections_crud_ownership_and_deleted_files,
            uploads_create_get_list_and_usage,
            uploads_quota_is_checked_in_the_transaction,
            uploads_another_users_files_are_not_found,
            uploads_delete_frees_blobs_nothing_else_references,
            uploads_thumbnails_reference_their_blobs,
            blobs_stage_commit_read_stream_and_delete,
            blobs_a_failing_or_dropped_staging_leaves_nothing,
            blobs_a_shared_store_keeps_what_a_record_or_a_hold_references,
            identities_link_find_list_unlink,
            identities_link_with_a_new_user_is_one_transaction,
            sso_states_are_single_use_and_expire,
            sso_states_taken_at_once_are_taken_once,
            users_email_change_unverifies_and_verify_checks_the_address,
            security_two_factor_put_get_update_delete,
            security_two_factor_concurrent_updates_accept_a_step_once,
            security_one_time_tokens_are_single_use,
            security_one_time_tokens_delete_by_user_and_prune,
            security_policy_defaults_to_optional,
            import_sourced_skips_what_was_imported_before,
            shares_create_read_list_and_revoke,
            groups_create_rename_list_and_delete,
            groups_members_both_ways,
            import_jobs_put_read_list_delete_and_interrupt,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            let (store, _guard) = $fresh().await;
            $crate::store_contract::$case(&*store).await;
        }
    )*};
}

pub(crate) use contract_tests;

mod on_redb {
    use confab::store::SharedStore;
    use confab::store::redb::RedbStore;

    async fn fresh() -> (SharedStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_shared(dir.path()).unwrap();
        (store, dir)
    }

    crate::store_contract::contract_tests!(fresh);
}

mod on_postgres {
    use confab::store::SharedStore;

    async fn fresh() -> (SharedStore, String) {
        crate::common::pg::fresh().await
    }

    crate::store_contract::contract_tests!(fresh);
}
