//! Share links: the rules. A link is a snapshot of the thread a
//! conversation shows when the link is made, reached only through its
//! 256-bit token; it never names the conversation or its owner to a viewer,
//! and it cannot lead anywhere else. "Continue this chat" copies the
//! snapshot into the viewer's own account as a new conversation.

use base64::Engine;
use rand::RngCore;
use std::collections::HashMap;
use uuid::Uuid;

use crate::chat;
use crate::error::{AppError, AppResult};
use crate::store::chat::{Attachment, Conversation, Message, MessageStatus};
use crate::store::shares::{Share, SharedMessage};
use crate::store::{SharedStore, StoreError};

/// Links one user may hold.
pub const MAX_SHARES_PER_USER: usize = 1000;

fn missing() -> AppError {
    AppError::NotFound("no such shared conversation".into())
}

fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A token as made by [`new_token`]; anything else is not looked up.
fn plausible(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Makes a link to the thread `conv_id` shows now.
pub async fn create(
    store: &SharedStore,
    user_id: Uuid,
    conv_id: Uuid,
    signed_in_only: bool,
) -> AppResult<Share> {
    let (c, msgs) = store
        .conversation_with_messages(user_id, conv_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => AppError::ConversationNotFound,
            other => other.into(),
        })?;
    let thread = chat::thread_to(&msgs, c.current_leaf);
    let messages: Vec<SharedMessage> = thread
        .into_iter()
        .filter(|m| m.status != MessageStatus::Streaming || !m.content.is_empty())
        .map(|m| SharedMessage {
            role: m.role,
            content: m.content,
            model: m.model,
            created_at: m.created_at,
            attachments: m.attachments,
        })
        .collect();
    if messages.is_empty() {
        return Err(AppError::validation(
            "the conversation has no messages to share yet",
        ));
    }
    if store.list_shares(user_id).await?.len() >= MAX_SHARES_PER_USER {
        return Err(AppError::Conflict(format!(
            "you have {MAX_SHARES_PER_USER} shared links; revoke some first"
        )));
    }
    let s = Share {
        id: Uuid::now_v7(),
        token: new_token(),
        user_id,
        conversation_id: c.id,
        title: c.title,
        model: c.model,
        signed_in_only,
        created_at: crate::clock::now(),
        messages,
    };
    store.create_share(&s).await?;
    Ok(s)
}

/// The user's links, newest first (without their messages).
pub async fn list(store: &SharedStore, user_id: Uuid) -> AppResult<Vec<Share>> {
    Ok(store.list_shares(user_id).await?)
}

/// Revokes one of the user's links: its URL stops working at once.
pub async fn revoke(store: &SharedStore, user_id: Uuid, id: Uuid) -> AppResult<()> {
    store.delete_share(user_id, id).await.map_err(|e| match e {
        StoreError::NotFound => missing(),
        other => other.into(),
    })
}

/// Revokes every link made from a conversation (it is being deleted).
pub async fn revoke_for(store: &SharedStore, user_id: Uuid, conv_id: Uuid) -> AppResult<usize> {
    let mut n = 0;
    for s in store.list_shares(user_id).await? {
        if s.conversation_id == conv_id {
            match store.delete_share(user_id, s.id).await {
                Ok(()) => n += 1,
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(n)
}

/// The snapshot behind `token`, for `viewer` (None: not signed in). A
/// link limited to signed-in users answers AUTH_REQUIRED to others.
pub async fn open(store: &SharedStore, token: &str, viewer: Option<Uuid>) -> AppResult<Share> {
    if !plausible(token) {
        return Err(missing());
    }
    let s = store.share_by_token(token).await.map_err(|e| match e {
        StoreError::NotFound => missing(),
        other => other.into(),
    })?;
    if s.signed_in_only && viewer.is_none() {
        return Err(AppError::AuthRequired);
    }
    Ok(s)
}

/// The `n`th file of the snapshot behind `token` (in the order of its
/// messages), for `viewer`. A link reaches only the files its snapshot
/// lists, through their owner; a file its owner deleted since is gone.
pub async fn file(
    store: &SharedStore,
    files: &crate::files::Files,
    token: &str,
    viewer: Option<Uuid>,
    n: usize,
) -> AppResult<(
    crate::store::uploads::Upload,
    crate::store::blobs::ByteStream,
    u64,
)> {
    let s = open(store, token, viewer).await?;
    let no_file = || AppError::NotFound("no such file".into());
    let a = s.files().nth(n).ok_or_else(no_file)?;
    if a.id.is_nil() {
        return Err(no_file());
    }
    files.content(s.user_id, a.id).await.map_err(|e| match e {
        crate::files::FilesError::NotFound => no_file(),
        other => other.into(),
    })
}

/// Copies the snapshot into `viewer`'s account as a new conversation whose
/// shown thread is the shared one. Its files are copied as the viewer's
/// own (once each), through the same checks as an upload: when they do not
/// fit the viewer's storage quota nothing is copied and the answer says so.
/// A file its owner deleted since stays a named attachment without content.
pub async fn continue_in(
    store: &SharedStore,
    files: &crate::files::Files,
    cfg: &crate::config::FilesConfig,
    token: &str,
    viewer: &crate::store::User,
) -> AppResult<Conversation> {
    let s = open(store, token, Some(viewer.id)).await?;
    let copied = copy_files(files, cfg, &s, viewer).await?;
    let now = crate::clock::now();
    let conv_id = Uuid::now_v7();
    let mut parent = None;
    let mut msgs = Vec::with_capacity(s.messages.len());
    for m in &s.messages {
        let id = Uuid::now_v7();
        msgs.push(Message {
            id,
            conversation_id: conv_id,
            parent_id: parent,
            role: m.role,
            content: m.content.clone(),
            model: m.model.clone(),
            provider: None,
            status: MessageStatus::Complete,
            usage: None,
            created_at: m.created_at,
            duration_ms: None,
            finish_reason: None,
            error: None,
            sources: Vec::new(),
            attachments: m
                .attachments
                .iter()
                .map(|a| match copied.get(&a.id) {
                    Some(c) => c.clone(),
                    None => Attachment {
                        id: Uuid::nil(),
                        ..a.clone()
                    },
                })
                .collect(),
        });
        parent = Some(id);
    }
    let c = Conversation {
        id: conv_id,
        user_id: viewer.id,
        title: s.title.clone(),
        title_auto: false,
        model: s.model.clone(),
        provider: None,
        system_prompt: None,
        created_at: now,
        updated_at_ms: crate::clock::now_ms(),
        pinned: false,
        archived: false,
        current_leaf: parent,
        preset_id: None,
        params: Default::default(),
        collections: Vec::new(),
    };
    if let Err(e) = store.import_conversations(&[(c.clone(), msgs)]).await {
        undo(files, viewer.id, &copied).await;
        return Err(e.into());
    }
    Ok(c)
}

/// The snapshot's files copied into `viewer`'s account: the owner's file
/// id → the viewer's attachment. All or nothing.
async fn copy_files(
    files: &crate::files::Files,
    cfg: &crate::config::FilesConfig,
    s: &Share,
    viewer: &crate::store::User,
) -> AppResult<HashMap<Uuid, Attachment>> {
    let mut copied: HashMap<Uuid, Attachment> = HashMap::new();
    for a in s.files() {
        if a.id.is_nil() || copied.contains_key(&a.id) {
            continue;
        }
        let bytes = match files.bytes(s.user_id, a.id).await {
            Ok((_, b)) => b,
            Err(crate::files::FilesError::NotFound) => continue,
            Err(e) => {
                undo(files, viewer.id, &copied).await;
                return Err(e.into());
            }
        };
        let nf = crate::files::NewFile {
            name: Some(a.name.clone()),
            declared_size: Some(bytes.len() as u64),
            body: futures::StreamExt::boxed(futures::stream::once(async move {
                Ok::<_, std::io::Error>(bytes)
            })),
        };
        match files.upload(cfg, viewer, nf).await {
            Ok(u) => {
                copied.insert(a.id, crate::chat::attachments::attachment_of(&u));
            }
            Err(e) => {
                undo(files, viewer.id, &copied).await;
                return Err(e.into());
            }
        }
    }
    Ok(copied)
}

/// Deletes the copies made for a continue that did not happen.
async fn undo(files: &crate::files::Files, viewer: Uuid, copied: &HashMap<Uuid, Attachment>) {
    for a in copied.values() {
        if let Err(e) = files.delete(viewer, a.id).await {
            tracing::warn!(error = %e, "cannot delete a file copied for a shared chat");
        }
    }
}
