//! Import: either export document back into new conversations.
//!
//! Every conversation and message gets a new id (UUIDv7, in the original
//! order); parent links and `current_leaf` are remapped; nothing existing is
//! changed. Each conversation is checked on its own — title and system
//! prompt length, roles, parents that are messages of the same conversation,
//! no cycles, unique message ids — and skipped with a reason when it fails.
//! Messages that were still `streaming` are imported as `interrupted`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{CONVERSATION_FORMAT, EXPORT_FORMAT};
use crate::chat;
use crate::store::chat::{
    Attachment, Conversation, Message, MessageError, MessageRole, MessageStatus, Usage,
};

/// Longest model, provider or finish reason accepted on import.
const MAX_LABEL: usize = 200;

/// The chat domain's checks of a conversation's fields (the same ones a
/// conversation made through the API passes), each giving the reason a
/// value is refused.
pub struct FieldChecks {
    /// The title, trimmed, or why not.
    pub title: fn(&str) -> Result<String, String>,
    pub system_prompt: fn(&str) -> Result<(), String>,
    pub model: fn(&str) -> Result<(), String>,
    /// A skipped conversation's title is reported cut to this length.
    pub max_title: usize,
}

#[derive(Clone, Serialize, ToSchema)]
pub struct ImportedItem {
    /// The conversation's id in the imported document.
    pub source_id: Option<String>,
    /// The new conversation's id.
    pub id: String,
    pub title: String,
    /// How many messages it got.
    pub messages: usize,
    /// Which app's export it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<super::formats::Format>,
}

#[derive(Clone, Serialize, ToSchema)]
pub struct SkippedItem {
    pub source_id: Option<String>,
    pub title: Option<String>,
    /// Why it was not imported.
    pub reason: String,
    /// When it was imported before: the conversation it is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_id: Option<String>,
}

#[derive(Clone, Default, Serialize, ToSchema)]
pub struct ImportReport {
    pub imported: Vec<ImportedItem>,
    pub skipped: Vec<SkippedItem>,
    /// Files of the document stored as the caller's (a full export carries
    /// its files), and those refused with why.
    #[serde(skip_serializing_if = "is_zero")]
    pub files_imported: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files_skipped: Vec<SkippedFile>,
    /// Why the import stopped before the end of the file (what is listed
    /// as imported stays imported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Clone, Serialize, ToSchema)]
pub struct SkippedFile {
    pub name: Option<String>,
    pub reason: String,
}

/// What an import will write (in one store transaction) and report.
pub struct ImportPlan {
    pub ready: Vec<(Conversation, Vec<Message>)>,
    pub report: ImportReport,
}

/// Checks a document and builds `user_id`'s new conversations. An error is
/// a document that is not an export at all (the reason, for a 400).
/// `files` maps the document's file ids to the files now stored for the
/// caller: messages' attachments are pointed at them (an attachment whose
/// file did not come along keeps its name and type, with a nil id).
pub fn plan(
    checks: &FieldChecks,
    user_id: Uuid,
    doc: Value,
    files: &HashMap<Uuid, Attachment>,
) -> Result<ImportPlan, String> {
    let entries = document_entries(doc)?;
    let mut skipped = Vec::new();
    let mut ready: Vec<(Conversation, Vec<Message>)> = Vec::new();
    let mut sources: Vec<Option<String>> = Vec::new();
    for (conv, messages) in entries {
        let source_id = conv.get("id").and_then(Value::as_str).map(str::to_string);
        match prepare(checks, user_id, &conv, messages, files) {
            Ok(x) => {
                sources.push(source_id);
                ready.push(x);
            }
            Err(reason) => skipped.push(SkippedItem {
                source_id,
                title: conv
                    .get("title")
                    .and_then(Value::as_str)
                    .map(|t| t.chars().take(checks.max_title).collect()),
                reason,
                existing_id: None,
            }),
        }
    }
    // Fresh conversation ids, ordered so that conversations with the same
    // `updated_at` (it has second precision) list in the document's order,
    // which for a full export is newest first.
    let mut rank: Vec<usize> = (0..ready.len()).collect();
    rank.sort_by_key(|&i| (ready[i].0.updated_at_ms, Reverse(i)));
    let mut ids: Vec<Uuid> = (0..ready.len()).map(|_| Uuid::now_v7()).collect();
    ids.sort();
    for (&i, id) in rank.iter().zip(ids) {
        let (c, msgs) = &mut ready[i];
        c.id = id;
        for m in msgs {
            m.conversation_id = id;
        }
    }
    let imported = ready
        .iter()
        .zip(sources)
        .map(|((c, msgs), source_id)| ImportedItem {
            source_id,
            id: c.id.to_string(),
            title: c.title.clone(),
            messages: msgs.len(),
            format: Some(super::formats::Format::Confab),
        })
        .collect();
    Ok(ImportPlan {
        ready,
        report: ImportReport {
            imported,
            skipped,
            files_imported: 0,
            files_skipped: Vec::new(),
            error: None,
        },
    })
}

#[derive(Deserialize)]
struct InConversation {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    system_prompt: Option<String>,
    #[serde(default)]
    pinned: bool,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    current_leaf: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
}

#[derive(Deserialize)]
struct InUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    estimated: bool,
}

#[derive(Deserialize)]
struct InMessage {
    id: String,
    #[serde(default)]
    parent_id: Option<String>,
    role: MessageRole,
    content: String,
    #[serde(default)]
    status: Option<MessageStatus>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    usage: Option<InUsage>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    duration_ms: Option<u64>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    error: Option<MessageError>,
    #[serde(default)]
    attachments: Vec<Attachment>,
}

/// Splits a document into (conversation fields, messages) pairs.
fn document_entries(doc: Value) -> Result<Vec<(Value, Value)>, String> {
    let Value::Object(mut obj) = doc else {
        return Err(String::from(
            "the import must be a confab export document (a JSON object)",
        ));
    };
    let format = match obj.get("format") {
        None | Some(Value::Null) => None,
        Some(Value::String(f)) => Some(f.clone()),
        Some(_) => return Err(String::from("format must be a string")),
    };
    let full = match format.as_deref() {
        Some(EXPORT_FORMAT) => true,
        Some(CONVERSATION_FORMAT) => false,
        Some(other) => {
            return Err(format!(
                "unsupported format {:?}; expected {EXPORT_FORMAT:?} or {CONVERSATION_FORMAT:?}",
                other.chars().take(50).collect::<String>()
            ));
        }
        None if obj.contains_key("conversations") => true,
        None if obj.contains_key("conversation") => false,
        None => {
            return Err(String::from(
                "not a confab export: expected \"conversations\" or \"conversation\"",
            ));
        }
    };
    if full {
        let Some(Value::Array(list)) = obj.remove("conversations") else {
            return Err(String::from("conversations must be an array"));
        };
        Ok(list.into_iter().map(split_entry).collect())
    } else {
        let conv = match obj.remove("conversation") {
            Some(v @ Value::Object(_)) => v,
            _ => return Err(String::from("conversation must be an object")),
        };
        let messages = obj.remove("messages").unwrap_or(Value::Null);
        Ok(vec![(conv, messages)])
    }
}

/// A full export's entry is the conversation's fields plus `messages`;
/// `{conversation, messages}` (the single-conversation shape) is accepted too.
pub fn split_entry(v: Value) -> (Value, Value) {
    match v {
        Value::Object(mut o) => {
            let messages = o.remove("messages").unwrap_or(Value::Null);
            match o.remove("conversation") {
                Some(c @ Value::Object(_)) => (c, messages),
                Some(other) => {
                    o.insert("conversation".into(), other);
                    (Value::Object(o), messages)
                }
                None => (Value::Object(o), messages),
            }
        }
        other => (other, Value::Null),
    }
}

fn parse_time(s: Option<&str>) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s?, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp())
}

fn label(what: &str, v: Option<String>) -> Result<Option<String>, String> {
    match v {
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) if s.chars().count() > MAX_LABEL => {
            Err(format!("{what} must be at most {MAX_LABEL} characters"))
        }
        other => Ok(other),
    }
}

fn short(id: &str) -> String {
    let s: String = id.chars().take(64).collect();
    format!("{s:?}")
}

/// Checks one conversation and builds its records with new message ids (the
/// conversation id is left nil for the caller to set), or says why it
/// cannot be imported.
pub fn prepare(
    checks: &FieldChecks,
    user_id: Uuid,
    conv: &Value,
    messages: Value,
    files: &HashMap<Uuid, Attachment>,
) -> Result<(Conversation, Vec<Message>), String> {
    if !conv.is_object() {
        return Err("not a conversation object".into());
    }
    let c: InConversation =
        serde_path_to_error::deserialize(conv).map_err(|e| format!("invalid conversation: {e}"))?;
    let msgs: Vec<InMessage> = match messages {
        Value::Null => Vec::new(),
        v => serde_path_to_error::deserialize(v).map_err(|e| format!("invalid messages: {e}"))?,
    };

    let (title, title_auto) = match c.title.as_deref() {
        None => (chat::DEFAULT_TITLE.to_string(), true),
        Some(t) => ((checks.title)(t)?, false),
    };
    let system_prompt = match c.system_prompt {
        Some(p) => {
            (checks.system_prompt)(&p)?;
            Some(p).filter(|p| !p.trim().is_empty())
        }
        None => None,
    };
    let model = c.model.filter(|m| !m.is_empty());
    if let Some(m) = &model {
        (checks.model)(m)?;
    }

    // Message ids are only keys within the document: unique, and every
    // parent one of them.
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        if index.insert(m.id.as_str(), i).is_some() {
            return Err(format!(
                "message id {} appears more than once",
                short(&m.id)
            ));
        }
    }
    let mut parent: Vec<Option<usize>> = Vec::with_capacity(msgs.len());
    for m in &msgs {
        parent.push(match m.parent_id.as_deref() {
            None => None,
            Some(p) => Some(*index.get(p).ok_or_else(|| {
                format!(
                    "message {}: parent_id {} is not a message of this conversation",
                    short(&m.id),
                    short(p)
                )
            })?),
        });
    }
    // Parents before children, otherwise in document order; whatever is
    // left over sits on a cycle.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); msgs.len()];
    let mut heap = BinaryHeap::new();
    for (i, p) in parent.iter().enumerate() {
        match p {
            Some(p) => children[*p].push(i),
            None => heap.push(Reverse(i)),
        }
    }
    let mut order = Vec::with_capacity(msgs.len());
    while let Some(Reverse(i)) = heap.pop() {
        order.push(i);
        heap.extend(children[i].iter().map(|&c| Reverse(c)));
    }
    if order.len() != msgs.len() {
        let mut placed = vec![false; msgs.len()];
        for &i in &order {
            placed[i] = true;
        }
        let first = placed.iter().position(|p| !p).unwrap_or(0);
        return Err(format!(
            "message {} is part of a parent_id cycle",
            short(&msgs[first].id)
        ));
    }

    // New ids, time-ordered in the same order as the original messages.
    let mut ids: Vec<Uuid> = (0..msgs.len()).map(|_| Uuid::now_v7()).collect();
    ids.sort();
    let mut new_id = vec![Uuid::nil(); msgs.len()];
    for (k, &i) in order.iter().enumerate() {
        new_id[i] = ids[k];
    }

    let leaf = match c.current_leaf.as_deref() {
        Some(l) => Some(*index.get(l).ok_or_else(|| {
            format!(
                "current_leaf {} is not a message of this conversation",
                short(l)
            )
        })?),
        None => None,
    };
    drop(index);

    // The caller gives the conversation its id.
    let conv_id = Uuid::nil();
    let now = crate::clock::now();
    let mut out = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.into_iter().enumerate() {
        let status = match m.status.unwrap_or(MessageStatus::Complete) {
            MessageStatus::Streaming => MessageStatus::Interrupted,
            s => s,
        };
        let ctx = |e: String| format!("message {}: {e}", short(&m.id));
        out.push(Message {
            id: new_id[i],
            conversation_id: conv_id,
            parent_id: parent[i].map(|p| new_id[p]),
            role: m.role,
            content: m.content,
            model: label("model", m.model).map_err(ctx)?,
            provider: label("provider", m.provider).map_err(ctx)?,
            status,
            usage: m.usage.map(|u| Usage {
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
                estimated: u.estimated,
            }),
            created_at: parse_time(m.created_at.as_deref()).unwrap_or(now),
            duration_ms: m.duration_ms,
            finish_reason: label("finish_reason", m.finish_reason).map_err(ctx)?,
            error: m.error,
            // Sources name files of the exporting server; not kept.
            sources: Vec::new(),
            attachments: m
                .attachments
                .into_iter()
                .map(|a| {
                    files.get(&a.id).cloned().unwrap_or(Attachment {
                        id: Uuid::nil(),
                        ..a
                    })
                })
                .collect(),
        });
    }
    out.sort_by_key(|m| m.id);

    let current_leaf = match leaf {
        Some(i) => Some(new_id[i]),
        // The newest root's newest path.
        None => out
            .iter()
            .rev()
            .find(|m| m.parent_id.is_none())
            .map(|root| chat::deepest_leaf(&out, root.id)),
    };

    let created_at = parse_time(c.created_at.as_deref()).unwrap_or(now);
    let updated_at_ms = parse_time(c.updated_at.as_deref())
        .map(|t| (t.max(0) as u64) * 1000)
        .unwrap_or_else(crate::clock::now_ms);
    Ok((
        Conversation {
            id: conv_id,
            user_id,
            title,
            title_auto,
            model,
            provider: None,
            system_prompt,
            created_at,
            updated_at_ms,
            pinned: c.pinned,
            archived: c.archived,
            current_leaf,
            // A preset id from another server means nothing here.
            preset_id: None,
            params: Default::default(),
            collections: Vec::new(),
        },
        out,
    ))
}
