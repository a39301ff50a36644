//! Conversations: list, create, read (with the shown thread), update,
//! delete, paged messages and the whole message tree.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Json, Query, created, parse_id};
use crate::auth::CurrentUser;
use crate::chat;
use crate::chat::turn::{LiveAnswer, validate_params};
use crate::chat::{new_conversation, validate_model};
use crate::clock::rfc3339;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::chat::{
    Conversation, ConversationCursor, ConversationFilter, Message, MessageError, MessageRole,
    MessageStatus, ModelParamsPatch, Usage,
};
use crate::store::{ConversationPatch, StoreError, TitleChange};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/conversations", get(list).post(create).delete(remove_all))
        .route(
            "/conversations/{id}",
            get(read).patch(update).delete(remove),
        )
        .route("/conversations/{id}/messages", get(messages))
        .route("/conversations/{id}/tree", get(tree))
}

pub const MAX_TITLE: usize = 200;
pub const MAX_SYSTEM_PROMPT: usize = 20_000;

#[derive(Serialize, ToSchema)]
pub struct ConversationView {
    pub id: String,
    pub title: String,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    pub pinned: bool,
    pub archived: bool,
    pub current_leaf: Option<String>,
    /// Sampling temperature sent with every answer; null: the provider's default.
    pub temperature: Option<f32>,
    /// Longest answer in tokens; null: the provider's default (for
    /// Anthropic, the model's output limit).
    pub max_tokens: Option<u32>,
    /// Nucleus sampling; null: the provider's default.
    pub top_p: Option<f32>,
    /// Knowledge collections attached: their documents answer here.
    pub collections: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Conversation> for ConversationView {
    fn from(c: &Conversation) -> Self {
        ConversationView {
            id: c.id.to_string(),
            title: c.title.clone(),
            model: c.model.clone(),
            system_prompt: c.system_prompt.clone(),
            pinned: c.pinned,
            archived: c.archived,
            current_leaf: c.current_leaf.map(|l| l.to_string()),
            temperature: c.params.temperature,
            max_tokens: c.params.max_tokens,
            top_p: c.params.top_p,
            collections: c.collections.iter().map(Uuid::to_string).collect(),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339((c.updated_at_ms / 1000) as i64),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct UsageView {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub estimated: bool,
}

#[derive(Serialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    pub conversation_id: String,
    pub parent_id: Option<String>,
    pub role: MessageRole,
    pub content: String,
    pub status: MessageStatus,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub usage: Option<UsageView>,
    pub created_at: String,
    pub duration_ms: Option<u64>,
    pub finish_reason: Option<String>,
    pub error: Option<MessageError>,
    /// Ids of the messages with the same parent (this one included), oldest
    /// first: the branch arrows `‹ 2/3 ›`. Only in thread views.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sibling_ids: Option<Vec<String>>,
    /// While the answer is streaming: the generation to follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_id: Option<String>,
    /// With `generation_id`: the id of the last event `content` includes.
    /// Following with `Last-Event-ID` set to it continues the text exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_event_id: Option<u64>,
    /// The passages of the user's documents this answer was given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<crate::store::chat::Source>,
    /// Files attached to the message (`GET /api/files/{id}/content` and
    /// `/thumbnail` read them while the file exists).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<crate::store::chat::Attachment>,
}

pub fn usage_view(u: &Usage) -> UsageView {
    UsageView {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        estimated: u.estimated,
    }
}

/// One message, with the live text when it is an answer streaming on this
/// instance.
pub fn message_view(state: &AppState, m: &Message, all: Option<&[Message]>) -> MessageView {
    let live = (m.status == MessageStatus::Streaming)
        .then(|| state.generations.for_message(m.id))
        .flatten()
        .map(|g| {
            let (text, event) = g.snapshot();
            LiveAnswer {
                generation_id: g.id,
                text,
                event,
            }
        });
    view_with(m, all, live.as_ref())
}

/// Messages of a thread, each streaming answer with its live text wherever
/// it runs (this instance or another on the same database).
pub async fn message_views(
    state: &AppState,
    msgs: &[Message],
    all: &[Message],
) -> Vec<MessageView> {
    let live = super::chat::service(state).live_text(msgs).await;
    msgs.iter()
        .map(|m| view_with(m, Some(all), live.get(&m.id)))
        .collect()
}

fn view_with(m: &Message, all: Option<&[Message]>, live: Option<&LiveAnswer>) -> MessageView {
    // A streaming answer's stored text lags the live one by up to one flush;
    // show the live text and say which event it reaches.
    let (content, generation_event_id) = match live {
        Some(l) => (l.text.clone(), Some(l.event)),
        None => (m.content.clone(), None),
    };
    MessageView {
        id: m.id.to_string(),
        conversation_id: m.conversation_id.to_string(),
        parent_id: m.parent_id.map(|p| p.to_string()),
        role: m.role,
        content,
        status: m.status,
        model: m.model.clone(),
        provider: m.provider.clone(),
        usage: m.usage.as_ref().map(usage_view),
        created_at: rfc3339(m.created_at),
        duration_ms: m.duration_ms,
        finish_reason: m.finish_reason.clone(),
        error: m.error.clone(),
        sibling_ids: all.map(|a| chat::siblings(a, m).iter().map(Uuid::to_string).collect()),
        generation_id: live.map(|l| l.generation_id.to_string()),
        generation_event_id,
        sources: m.sources.clone(),
        attachments: m.attachments.clone(),
    }
}

/// For PATCH fields where `null` (clear) differs from absent (keep).
/// A conversation's sampling settings in a request body: absent leaves the
/// stored value, null goes back to the provider's default.
#[derive(Deserialize, ToSchema, Default, Clone, Copy)]
pub struct ModelParamsBody {
    /// 0 to 2.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f32>, minimum = 0, maximum = 2)]
    pub temperature: Option<Option<f32>>,
    /// 1 to 1000000 (and at most the model's output limit).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1000000)]
    pub max_tokens: Option<Option<u32>>,
    /// 0 to 1.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f32>, minimum = 0, maximum = 1)]
    pub top_p: Option<Option<f32>>,
}

impl ModelParamsBody {
    /// The change it asks for (not yet validated).
    pub fn into_patch(self) -> ModelParamsPatch {
        ModelParamsPatch {
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            top_p: self.top_p,
        }
    }
}

fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    /// true: only archived conversations; default: only unarchived.
    pub archived: Option<bool>,
    pub pinned: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationList {
    pub items: Vec<ConversationView>,
    pub next_cursor: Option<String>,
}

fn page_limit(limit: Option<usize>, default: usize) -> AppResult<usize> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=200).contains(&n) => Ok(n),
        Some(_) => Err(AppError::validation("limit must be between 1 and 200")),
    }
}

/// Newest first (by last activity), `next_cursor` for the next page.
#[utoipa::path(get, path = "/api/conversations", tag = "conversations", params(ListQuery),
    responses((status = 200, body = ConversationList)))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<ConversationList>> {
    let limit = page_limit(q.limit, 50)?;
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(
            ConversationCursor::decode(c)
                .ok_or_else(|| AppError::validation("cursor is not valid"))?,
        ),
        None => None,
    };
    let filter = ConversationFilter {
        archived: q.archived,
        pinned: q.pinned,
    };
    let mut convs = state
        .store
        .list_conversations(user.id(), cursor, filter, limit + 1)
        .await?;
    let more = convs.len() > limit;
    convs.truncate(limit);
    let next_cursor = more
        .then(|| {
            convs.last().map(|c| {
                ConversationCursor {
                    updated_at_ms: c.updated_at_ms,
                    id: c.id,
                }
                .encode()
            })
        })
        .flatten();
    Ok(Json(ConversationList {
        items: convs.iter().map(ConversationView::from).collect(),
        next_cursor,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateConversation {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(flatten)]
    pub params: ModelParamsBody,
}

pub fn validate_title(t: &str) -> AppResult<String> {
    let t = t.trim();
    if t.is_empty() || t.chars().count() > MAX_TITLE {
        return Err(AppError::Validation(format!(
            "title must be 1 to {MAX_TITLE} characters"
        )));
    }
    Ok(t.to_string())
}

pub fn validate_system_prompt(p: &str) -> AppResult<()> {
    if p.chars().count() > MAX_SYSTEM_PROMPT {
        return Err(AppError::Validation(format!(
            "system_prompt must be at most {MAX_SYSTEM_PROMPT} characters"
        )));
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/conversations", tag = "conversations", request_body = CreateConversation,
    responses((status = 201, body = ConversationView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Json(req): Json<CreateConversation>,
) -> AppResult<Response> {
    let title = req.title.as_deref().map(validate_title).transpose()?;
    if let Some(p) = &req.system_prompt {
        validate_system_prompt(p)?;
    }
    if let Some(m) = &req.model {
        validate_model(m)?;
    }
    let params = req.params.into_patch();
    validate_params(&params)?;
    let mut c = new_conversation(user.id(), title, req.model, req.system_prompt);
    c.params = params.apply(c.params);
    let c2 = c.clone();
    state.store.create_conversation(&c2).await?;
    Ok(created(ConversationView::from(&c)))
}

#[derive(Serialize, ToSchema)]
pub struct ConversationDetail {
    #[serde(flatten)]
    pub conversation: ConversationView,
    /// The thread currently shown: root to `current_leaf`, oldest first
    /// (with `?limit=N`, only its newest N messages).
    pub messages: Vec<MessageView>,
    /// True when `limit` left older messages out; page back with
    /// `/api/conversations/{id}/messages?before=<first id>`.
    pub has_more: bool,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ReadQuery {
    /// Only the newest N messages of the shown thread (1–1000).
    pub limit: Option<usize>,
}

fn not_found(e: StoreError) -> AppError {
    match e {
        StoreError::NotFound => AppError::ConversationNotFound,
        other => other.into(),
    }
}

#[utoipa::path(get, path = "/api/conversations/{id}", tag = "conversations", params(ReadQuery),
    responses((status = 200, body = ConversationDetail), (status = 404, body = crate::error::ErrorBody)))]
pub async fn read(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Query(q): Query<ReadQuery>,
) -> AppResult<Json<ConversationDetail>> {
    let cid = Uuid::parse_str(&id).map_err(|_| AppError::ConversationNotFound)?;
    let limit = match q.limit {
        None => usize::MAX,
        Some(n) if (1..=1000).contains(&n) => n,
        Some(_) => return Err(AppError::validation("limit must be between 1 and 1000")),
    };
    let c = state
        .store
        .get_conversation(user.id(), cid)
        .await
        .map_err(not_found)?;
    let all = state
        .store
        .list_messages(user.id(), cid)
        .await
        .map_err(not_found)?;
    let thread = chat::thread_to(&all, c.current_leaf);
    let start = thread.len().saturating_sub(limit);
    Ok(Json(ConversationDetail {
        conversation: (&c).into(),
        messages: message_views(&state, &thread[start..], &all).await,
        has_more: start > 0,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateConversation {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub model: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub system_prompt: Option<Option<String>>,
    #[serde(default)]
    pub pinned: Option<bool>,
    #[serde(default)]
    pub archived: Option<bool>,
    /// A message of this conversation; the shown thread becomes the newest
    /// path through it down to a leaf (switching branches).
    #[serde(default)]
    pub current_leaf: Option<String>,
    /// Knowledge collections to attach (the whole list: `[]` detaches
    /// all); each must be the caller's.
    #[serde(default)]
    pub collections: Option<Vec<String>>,
    #[serde(flatten)]
    pub params: ModelParamsBody,
}

#[utoipa::path(patch, path = "/api/conversations/{id}", tag = "conversations", request_body = UpdateConversation,
    responses((status = 200, body = ConversationView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Json(req): Json<UpdateConversation>,
) -> AppResult<Json<ConversationView>> {
    let cid = Uuid::parse_str(&id).map_err(|_| AppError::ConversationNotFound)?;
    let title = req.title.as_deref().map(validate_title).transpose()?;
    if let Some(Some(p)) = &req.system_prompt {
        validate_system_prompt(p)?;
    }
    if let Some(Some(m)) = &req.model {
        validate_model(m)?;
    }
    let params = req.params.into_patch();
    validate_params(&params)?;
    let leaf = req
        .current_leaf
        .as_deref()
        .map(|l| {
            Uuid::parse_str(l).map_err(|_| {
                AppError::validation("current_leaf is not a message of this conversation")
            })
        })
        .transpose()?;
    let collections = match &req.collections {
        Some(ids) => {
            let ids = ids
                .iter()
                .map(|i| super::parse_id(i, "collection"))
                .collect::<AppResult<Vec<Uuid>>>()?;
            state.knowledge.check_collections(user.id(), &ids).await?;
            Some(ids)
        }
        None => None,
    };
    let patch = ConversationPatch {
        collections,
        // Only content changes move a conversation up the list; pinning or
        // switching branches do not.
        touch: title.is_some()
            || req.model.is_some()
            || req.system_prompt.is_some()
            || !params.is_empty(),
        title: title.map(TitleChange::Set),
        model: req.model,
        system_prompt: req.system_prompt,
        pinned: req.pinned,
        archived: req.archived,
        params,
        current_leaf: leaf,
    };
    match state.store.update_conversation(user.id(), cid, patch).await {
        Ok(c) => Ok(Json((&c).into())),
        Err(StoreError::Conflict(m)) => Err(AppError::Validation(m)),
        Err(e) => Err(not_found(e)),
    }
}

#[utoipa::path(delete, path = "/api/conversations/{id}", tag = "conversations",
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let cid = Uuid::parse_str(&id).map_err(|_| AppError::ConversationNotFound)?;
    // Check ownership before touching running answers.
    state
        .store
        .get_conversation(user.id(), cid)
        .await
        .map_err(not_found)?;
    super::chat::service(&state).stop_conversation(cid).await;
    let uid = user.id();
    state
        .store
        .delete_conversation(uid, cid)
        .await
        .map_err(not_found)?;
    // Its links go with it.
    crate::shares::revoke_for(&state.store, uid, cid).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct RemoveAllQuery {
    /// Must be `all`: a guard against a stray request.
    pub confirm: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RemovedAll {
    /// How many conversations were deleted.
    pub deleted: usize,
}

/// Deletes every conversation of the caller (archived ones too), with
/// their messages and share links; running answers are stopped. Requires
/// `?confirm=all`. Files stay (Settings → Files deletes them).
#[utoipa::path(delete, path = "/api/conversations", tag = "conversations", params(RemoveAllQuery),
    operation_id = "delete_all_conversations",
    responses((status = 200, body = RemovedAll), (status = 400, body = crate::error::ErrorBody)))]
pub async fn remove_all(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<RemoveAllQuery>,
) -> AppResult<Json<RemovedAll>> {
    if q.confirm.as_deref() != Some("all") {
        return Err(AppError::validation(
            "deleting every conversation needs ?confirm=all",
        ));
    }
    let uid = user.id();
    let mut deleted = 0;
    for cid in state.store.conversation_ids(uid).await? {
        super::chat::service(&state).stop_conversation(cid).await;
        match state.store.delete_conversation(uid, cid).await {
            Ok(_) => deleted += 1,
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for s in crate::shares::list(&state.store, uid).await? {
        crate::shares::revoke(&state.store, uid, s.id).await.ok();
    }
    Ok(Json(RemovedAll { deleted }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct MessagesQuery {
    pub limit: Option<usize>,
    /// A message id: return messages of the thread before it.
    pub before: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<MessageView>,
    pub has_more: bool,
}

/// The shown thread, newest `limit` messages before `before`, oldest first.
#[utoipa::path(get, path = "/api/conversations/{id}/messages", tag = "conversations", params(MessagesQuery),
    responses((status = 200, body = MessagePage), (status = 404, body = crate::error::ErrorBody)))]
pub async fn messages(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Query(q): Query<MessagesQuery>,
) -> AppResult<Json<MessagePage>> {
    let cid = Uuid::parse_str(&id).map_err(|_| AppError::ConversationNotFound)?;
    let limit = page_limit(q.limit, 50)?;
    let c = state
        .store
        .get_conversation(user.id(), cid)
        .await
        .map_err(not_found)?;
    let all = state
        .store
        .list_messages(user.id(), cid)
        .await
        .map_err(not_found)?;
    let thread = chat::thread_to(&all, c.current_leaf);
    let end = match q.before.as_deref().filter(|b| !b.is_empty()) {
        Some(b) => {
            let bid = parse_id(b, "message")?;
            thread.iter().position(|m| m.id == bid).ok_or_else(|| {
                AppError::validation("before is not a message of the shown thread")
            })?
        }
        None => thread.len(),
    };
    let start = end.saturating_sub(limit);
    Ok(Json(MessagePage {
        messages: message_views(&state, &thread[start..end], &all).await,
        has_more: start > 0,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Tree {
    pub current_leaf: Option<String>,
    /// Every message, oldest first, each with its parent_id.
    pub items: Vec<MessageView>,
}

#[utoipa::path(get, path = "/api/conversations/{id}/tree", tag = "conversations",
    responses((status = 200, body = Tree), (status = 404, body = crate::error::ErrorBody)))]
pub async fn tree(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> AppResult<Json<Tree>> {
    let cid = Uuid::parse_str(&id).map_err(|_| AppError::ConversationNotFound)?;
    let c = state
        .store
        .get_conversation(user.id(), cid)
        .await
        .map_err(not_found)?;
    let all = state
        .store
        .list_messages(user.id(), cid)
        .await
        .map_err(not_found)?;
    Ok(Json(Tree {
        current_leaf: c.current_leaf.map(|l| l.to_string()),
        items: message_views(&state, &all, &all).await,
    }))
}
