//! Conversations exported by other chat apps, turned into confab's own
//! single-conversation shape (`{conversation fields}`, `[messages]` with
//! `id`/`parent_id`), which `import::prepare` then checks like any confab
//! export. Each format is recognised from its content, never from a file
//! name:
//!
//! - ChatGPT (`conversations.json` of the data export): a `mapping` tree of
//!   nodes with `parent`/`children`, `current_node`, a null-message root,
//!   hidden system messages, tool messages, `content_type` text / code /
//!   multimodal_text (images are `image_asset_pointer`s to files of the
//!   export zip).
//! - Claude (`conversations.json` of the data export): `chat_messages` with
//!   `sender`, `text` or `content` blocks, `parent_message_uuid` when the
//!   conversation has branches.
//! - Open WebUI (chat export): `chat.history.messages` keyed by id with
//!   `parentId` and `currentId`.
//! - LibreChat (conversation export): `messages` with `messageId` /
//!   `parentMessageId`, flat or nested in `children`.
//!
//! Nodes that are not part of the visible conversation (tool calls' output,
//! hidden context, reasoning summaries) are left out and their children are
//! attached to the nearest kept ancestor, so every branch survives.

use serde_json::{Map, Value, json};
use std::collections::HashMap;
use uuid::Uuid;

/// Which app a conversation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Confab,
    Chatgpt,
    Claude,
    OpenWebui,
    Librechat,
}

impl Format {
    pub fn key(self) -> &'static str {
        match self {
            Format::Confab => "confab",
            Format::Chatgpt => "chatgpt",
            Format::Claude => "claude",
            Format::OpenWebui => "openwebui",
            Format::Librechat => "librechat",
        }
    }
}

/// The app `v` (one conversation) came from; None when it looks like none.
/// `confab_doc`: the document declared itself a confab export, so an
/// object that is no other app's conversation is confab's.
pub fn detect(v: &Value, confab_doc: bool) -> Option<Format> {
    let o = v.as_object()?;
    if o.get("mapping").is_some_and(Value::is_object) {
        return Some(Format::Chatgpt);
    }
    if o.get("chat_messages").is_some_and(Value::is_array) {
        return Some(Format::Claude);
    }
    if let Some(chat) = o.get("chat").and_then(Value::as_object)
        && (chat.contains_key("history") || chat.contains_key("messages"))
    {
        return Some(Format::OpenWebui);
    }
    if let Some(Value::Array(ms)) = o.get("messages") {
        let libre = o.contains_key("conversationId")
            || ms.first().is_some_and(|m| m.get("messageId").is_some());
        if libre {
            return Some(Format::Librechat);
        }
    }
    if confab_doc
        || o.contains_key("messages")
        || o.contains_key("conversation")
        || o.contains_key("current_leaf")
    {
        return Some(Format::Confab);
    }
    None
}

/// The conversation's own id in the export of `format`.
pub fn source_id(format: Format, v: &Value) -> Option<String> {
    let keys: &[&str] = match format {
        Format::Chatgpt => &["conversation_id", "id"],
        Format::Claude => &["uuid"],
        Format::OpenWebui => &["id"],
        Format::Librechat => &["conversationId"],
        Format::Confab => &["id"],
    };
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// An image a conversation refers to, found in the export: stored as the
/// importing user's file, and the message's attachment `key` pointed at it.
pub struct Image {
    pub key: Uuid,
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Finds the files an export refers to (the zip's other entries).
pub trait Files {
    /// The file whose name starts with `id` (e.g. `file-AbC123`): its name
    /// and bytes.
    fn find(&mut self, id: &str) -> Option<(String, Vec<u8>)>;
}

/// No files beside the conversations (a bare JSON upload).
pub struct NoFiles;
impl Files for NoFiles {
    fn find(&mut self, _: &str) -> Option<(String, Vec<u8>)> {
        None
    }
}

/// One conversation in confab's shape.
pub struct Converted {
    /// Stable across exports of the same conversation, e.g.
    /// `chatgpt:<conversation id>`: importing it again adds nothing.
    pub source: Option<String>,
    pub conv: Value,
    pub messages: Value,
    pub images: Vec<Image>,
}

/// Turns one foreign conversation into confab's shape, or says why not.
pub fn convert(
    format: Format,
    v: Value,
    files: &mut dyn Files,
    max_title: usize,
) -> Result<Converted, String> {
    let mut c = match format {
        Format::Chatgpt => chatgpt(v, files),
        Format::Claude => claude(v),
        Format::OpenWebui => openwebui(v),
        Format::Librechat => librechat(v),
        Format::Confab => return Err("not a foreign conversation".into()),
    }?;
    // Another app's titles may be longer than confab's limit: cut, not refused.
    if let Some(Value::String(t)) = c.conv.get_mut("title") {
        let t2: String = t.trim().chars().take(max_title).collect();
        if t2.is_empty() {
            c.conv.as_object_mut().map(|o| o.remove("title"));
        } else {
            *t = t2;
        }
    }
    Ok(c)
}

// ---- shared helpers -----------------------------------------------------

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// Seconds (float) or milliseconds since the epoch, or an RFC 3339 string,
/// as RFC 3339.
fn time_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => {
            let mut secs = n.as_f64()?;
            if !secs.is_finite() || secs <= 0.0 {
                return None;
            }
            if secs > 1e11 {
                secs /= 1000.0;
            }
            let t = time::OffsetDateTime::from_unix_timestamp(secs as i64).ok()?;
            Some(crate::clock::rfc3339(t.unix_timestamp()))
        }
        Value::String(st) => {
            let t = time::OffsetDateTime::parse(st, &time::format_description::well_known::Rfc3339)
                .ok()?;
            Some(crate::clock::rfc3339(t.unix_timestamp()))
        }
        _ => None,
    }
}

fn secs_of(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(st)) => {
            time::OffsetDateTime::parse(st, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp() as f64)
                .unwrap_or(0.0)
        }
        _ => 0.0,
    }
}

/// A message in the making: kept nodes of a foreign tree.
struct Node {
    id: String,
    /// The foreign parent (kept or not).
    parent: Option<String>,
    /// None: a node that is not kept (its children move up).
    msg: Option<Value>,
    /// Sort key: time, then position in the document.
    at: f64,
}

/// Builds confab messages from foreign nodes: parents are the nearest kept
/// ancestors; messages are listed oldest first. Returns the messages and
/// the kept message for `current` (itself or its nearest kept ancestor).
fn assemble(nodes: Vec<Node>, current: Option<&str>) -> (Vec<Value>, Option<String>) {
    let index: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.clone(), i))
        .collect();
    // The nearest kept ancestor-or-self, bounded against cycles.
    let kept_from = |start: Option<&str>| -> Option<String> {
        let mut cur = start.map(str::to_string);
        let mut steps = 0;
        while let Some(id) = cur {
            steps += 1;
            if steps > nodes.len() + 1 {
                return None;
            }
            let n = &nodes[*index.get(&id)?];
            if n.msg.is_some() {
                return Some(n.id.clone());
            }
            cur = n.parent.clone();
        }
        None
    };
    let mut order: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].msg.is_some())
        .collect();
    order.sort_by(|&a, &b| nodes[a].at.total_cmp(&nodes[b].at).then(a.cmp(&b)));
    let mut out = Vec::with_capacity(order.len());
    for i in order {
        let n = &nodes[i];
        let parent = kept_from(n.parent.as_deref());
        let mut m = n.msg.clone().unwrap_or(Value::Null);
        if let Some(o) = m.as_object_mut() {
            o.insert("id".into(), json!(n.id));
            o.insert("parent_id".into(), json!(parent));
        }
        out.push(m);
    }
    let leaf = kept_from(current);
    (out, leaf)
}

fn message(role: &str, content: String, model: Option<&str>, at: Option<String>) -> Value {
    let mut m = Map::new();
    m.insert("role".into(), json!(role));
    m.insert("content".into(), json!(content));
    if let Some(model) = model.filter(|m| !m.is_empty()) {
        m.insert("model".into(), json!(model));
    }
    if let Some(at) = at {
        m.insert("created_at".into(), json!(at));
    }
    Value::Object(m)
}

fn conversation(
    title: Option<&str>,
    model: Option<&str>,
    system_prompt: Option<String>,
    created: Option<String>,
    updated: Option<String>,
    leaf: Option<String>,
) -> Value {
    let mut c = Map::new();
    if let Some(t) = title.filter(|t| !t.trim().is_empty()) {
        c.insert("title".into(), json!(t));
    }
    if let Some(m) = model.filter(|m| !m.is_empty()) {
        c.insert("model".into(), json!(m));
    }
    if let Some(p) = system_prompt {
        c.insert("system_prompt".into(), json!(p));
    }
    if let Some(t) = created {
        c.insert("created_at".into(), json!(t));
    }
    if let Some(t) = updated {
        c.insert("updated_at".into(), json!(t));
    }
    if let Some(l) = leaf {
        c.insert("current_leaf".into(), json!(l));
    }
    Value::Object(c)
}

// ---- ChatGPT ------------------------------------------------------------

/// The text of a ChatGPT message's content, with its images (found among
/// the export's files, else a visible placeholder). None: not a message a
/// person saw (tool calls' internals, reasoning, hidden context).
fn chatgpt_content(
    content: &Value,
    files: &mut dyn Files,
    images: &mut Vec<Image>,
    attachments: &mut Vec<Value>,
) -> Option<String> {
    let ct = s(content, "content_type").unwrap_or("text");
    match ct {
        "text" => {
            let parts = content.get("parts").and_then(Value::as_array)?;
            let text: Vec<&str> = parts.iter().filter_map(Value::as_str).collect();
            Some(text.join("\n"))
        }
        "code" => {
            let text = s(content, "text").unwrap_or("");
            let lang = s(content, "language")
                .filter(|l| *l != "unknown")
                .unwrap_or("");
            Some(format!("```{lang}\n{}\n```", text.trim_end_matches('\n')))
        }
        "multimodal_text" => {
            let parts = content.get("parts").and_then(Value::as_array)?;
            let mut text = Vec::new();
            for p in parts {
                match p {
                    Value::String(st) => text.push(st.clone()),
                    Value::Object(o) => {
                        let pt = o.get("content_type").and_then(Value::as_str).unwrap_or("");
                        if pt == "image_asset_pointer" {
                            let pointer = o.get("asset_pointer").and_then(Value::as_str);
                            let id = pointer
                                .map(|p| p.rsplit("://").next().unwrap_or(p))
                                .unwrap_or("");
                            match (!id.is_empty()).then(|| files.find(id)).flatten() {
                                Some((name, bytes)) => {
                                    let key = Uuid::new_v4();
                                    attachments.push(json!({
                                        "id": key, "name": name, "mime": "application/octet-stream", "size": bytes.len()
                                    }));
                                    images.push(Image { key, name, bytes });
                                }
                                None => text.push(format!(
                                    "[Image not included in the export: {}]",
                                    if id.is_empty() { "unnamed" } else { id }
                                )),
                            }
                        } else if let Some(t) = o.get("text").and_then(Value::as_str) {
                            text.push(t.to_string());
                        }
                    }
                    _ => {}
                }
            }
            Some(text.join("\n"))
        }
        _ => None,
    }
}

fn chatgpt(v: Value, files: &mut dyn Files) -> Result<Converted, String> {
    let id = s(&v, "conversation_id")
        .or_else(|| s(&v, "id"))
        .map(str::to_string);
    let Some(mapping) = v.get("mapping").and_then(Value::as_object) else {
        return Err("mapping must be an object".into());
    };
    let mut images = Vec::new();
    let mut system_prompt: Option<String> = None;
    let mut last_model: Option<String> = None;
    let mut nodes = Vec::with_capacity(mapping.len());
    for (key, node) in mapping {
        let nid = s(node, "id").unwrap_or(key).to_string();
        let parent = s(node, "parent").map(str::to_string);
        let m = node.get("message").filter(|m| m.is_object());
        let at = m.map(|m| secs_of(m.get("create_time"))).unwrap_or(0.0);
        let mut kept = None;
        if let Some(m) = m {
            let role = m
                .get("author")
                .and_then(|a| s(a, "role"))
                .unwrap_or("")
                .to_string();
            let meta = m.get("metadata");
            let hidden = meta
                .and_then(|x| x.get("is_visually_hidden_from_conversation"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let model = meta.and_then(|x| s(x, "model_slug"));
            let content = m.get("content").cloned().unwrap_or(Value::Null);
            let mut attachments = Vec::new();
            match role.as_str() {
                "system" => {
                    if !hidden
                        && system_prompt.is_none()
                        && let Some(t) =
                            chatgpt_content(&content, files, &mut images, &mut attachments)
                        && !t.trim().is_empty()
                    {
                        system_prompt = Some(t);
                    }
                }
                "user" | "assistant" if !hidden => {
                    if let Some(text) =
                        chatgpt_content(&content, files, &mut images, &mut attachments)
                        && (!text.trim().is_empty() || !attachments.is_empty())
                    {
                        let mut msg = message(&role, text, model, time_of(m.get("create_time")));
                        if !attachments.is_empty() {
                            msg["attachments"] = Value::Array(attachments);
                        }
                        if role == "assistant" && model.is_some() {
                            last_model = model.map(str::to_string);
                        }
                        kept = Some(msg);
                    }
                }
                _ => {}
            }
        }
        nodes.push(Node {
            id: nid,
            parent,
            msg: kept,
            at,
        });
    }
    let current = s(&v, "current_node").map(str::to_string);
    let (messages, leaf) = assemble(nodes, current.as_deref());
    let model = s(&v, "default_model_slug")
        .map(str::to_string)
        .or(last_model);
    Ok(Converted {
        source: id.map(|i| format!("chatgpt:{i}")),
        conv: conversation(
            s(&v, "title"),
            model.as_deref(),
            system_prompt,
            time_of(v.get("create_time")),
            time_of(v.get("update_time")),
            leaf,
        ),
        messages: Value::Array(messages),
        images,
    })
}

// ---- Claude -------------------------------------------------------------

/// Claude's placeholder parent of a conversation's first message.
const CLAUDE_ROOT: &str = "00000000-0000-4000-8000-000000000000";

fn claude(v: Value) -> Result<Converted, String> {
    let id = s(&v, "uuid").map(str::to_string);
    let list = v
        .get("chat_messages")
        .and_then(Value::as_array)
        .ok_or("chat_messages must be a list")?;
    let branched = list.iter().any(|m| m.get("parent_message_uuid").is_some());
    let mut nodes = Vec::with_capacity(list.len());
    let mut prev: Option<String> = None;
    for (i, m) in list.iter().enumerate() {
        let Some(mid) = s(m, "uuid").map(str::to_string) else {
            return Err(format!("message {i} has no uuid"));
        };
        let role = match s(m, "sender") {
            Some("human") => "user",
            Some("assistant") => "assistant",
            other => {
                return Err(format!(
                    "message {mid:?}: unknown sender {:?}",
                    other.unwrap_or("")
                ));
            }
        };
        let blocks: Vec<&str> = m
            .get("content")
            .and_then(Value::as_array)
            .map(|b| {
                b.iter()
                    .filter(|b| s(b, "type") == Some("text"))
                    .filter_map(|b| s(b, "text"))
                    .collect()
            })
            .unwrap_or_default();
        let mut text = if blocks.is_empty() {
            s(m, "text").unwrap_or("").to_string()
        } else {
            blocks.join("\n\n")
        };
        for a in m
            .get("attachments")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = s(a, "file_name").unwrap_or("attachment");
            match s(a, "extracted_content").filter(|c| !c.is_empty()) {
                Some(c) => text.push_str(&format!("\n\n{name}:\n```\n{c}\n```")),
                None => text.push_str(&format!(
                    "\n\n[Attachment not included in the export: {name}]"
                )),
            }
        }
        for f in m
            .get("files")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = s(f, "file_name").unwrap_or("file");
            text.push_str(&format!("\n\n[File not included in the export: {name}]"));
        }
        let parent = if branched {
            s(m, "parent_message_uuid")
                .filter(|p| *p != CLAUDE_ROOT)
                .map(str::to_string)
        } else {
            prev.clone()
        };
        prev = Some(mid.clone());
        nodes.push(Node {
            id: mid,
            parent,
            msg: Some(message(role, text, None, time_of(m.get("created_at")))),
            at: secs_of(m.get("created_at")),
        });
    }
    // The newest message's thread is the one shown.
    let current = nodes
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.at.total_cmp(&b.1.at).then(a.0.cmp(&b.0)))
        .map(|(_, n)| n.id.clone());
    let (messages, leaf) = assemble(nodes, current.as_deref());
    Ok(Converted {
        source: id.map(|i| format!("claude:{i}")),
        conv: conversation(
            s(&v, "name"),
            None,
            None,
            time_of(v.get("created_at")),
            time_of(v.get("updated_at")),
            leaf,
        ),
        messages: Value::Array(messages),
        images: Vec::new(),
    })
}

// ---- Open WebUI ---------------------------------------------------------

fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(t) => Some(t.clone()),
                Value::Object(_) => match p.get("text") {
                    Some(Value::String(t)) => Some(t.clone()),
                    Some(o @ Value::Object(_)) => s(o, "value").map(str::to_string),
                    _ => None,
                },
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn role_of(r: Option<&str>) -> Option<&'static str> {
    match r? {
        "user" => Some("user"),
        "assistant" => Some("assistant"),
        _ => None,
    }
}

fn openwebui(v: Value) -> Result<Converted, String> {
    let chat = v.get("chat").ok_or("chat must be an object")?;
    let id = s(&v, "id").or_else(|| s(chat, "id")).map(str::to_string);
    let hist = chat.get("history");
    let list: Vec<Value> = match hist
        .and_then(|h| h.get("messages"))
        .and_then(Value::as_object)
    {
        Some(map) => map
            .iter()
            .map(|(k, m)| {
                let mut m = m.clone();
                if m.get("id").is_none() {
                    m["id"] = json!(k);
                }
                m
            })
            .collect(),
        None => chat
            .get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    };
    let linear = list.iter().all(|m| m.get("parentId").is_none());
    let mut nodes = Vec::with_capacity(list.len());
    let mut prev = None;
    let mut system_prompt = None;
    for (i, m) in list.iter().enumerate() {
        let mid = s(m, "id")
            .map(str::to_string)
            .unwrap_or_else(|| format!("#{i}"));
        let role = s(m, "role");
        if role == Some("system") && system_prompt.is_none() {
            system_prompt = Some(text_of(m.get("content"))).filter(|t| !t.trim().is_empty());
        }
        let msg = role_of(role).map(|r| {
            message(
                r,
                text_of(m.get("content")),
                s(m, "model"),
                time_of(m.get("timestamp")),
            )
        });
        let parent = if linear {
            prev.clone()
        } else {
            s(m, "parentId").map(str::to_string)
        };
        prev = Some(mid.clone());
        nodes.push(Node {
            id: mid,
            parent,
            msg,
            at: secs_of(m.get("timestamp")),
        });
    }
    let current = hist
        .and_then(|h| s(h, "currentId"))
        .map(str::to_string)
        .or(prev);
    let (messages, leaf) = assemble(nodes, current.as_deref());
    let model = chat
        .get("models")
        .and_then(Value::as_array)
        .and_then(|m| m.first())
        .and_then(Value::as_str);
    Ok(Converted {
        source: id.map(|i| format!("openwebui:{i}")),
        conv: conversation(
            s(&v, "title").or_else(|| s(chat, "title")),
            model,
            system_prompt.or_else(|| s(chat, "system").map(str::to_string)),
            time_of(v.get("created_at")),
            time_of(v.get("updated_at")),
            leaf,
        ),
        messages: Value::Array(messages),
        images: Vec::new(),
    })
}

// ---- LibreChat ----------------------------------------------------------

const LIBRE_ROOT: &str = "00000000-0000-0000-0000-000000000000";

fn libre_flatten(list: &[Value], parent: Option<&str>, out: &mut Vec<(Value, Option<String>)>) {
    for m in list {
        let p = s(m, "parentMessageId")
            .map(str::to_string)
            .or(parent.map(str::to_string));
        out.push((m.clone(), p));
        if let Some(Value::Array(children)) = m.get("children") {
            libre_flatten(children, s(m, "messageId"), out);
        }
    }
}

fn librechat(v: Value) -> Result<Converted, String> {
    let id = s(&v, "conversationId").map(str::to_string);
    let list = v
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages must be a list")?;
    let mut flat = Vec::new();
    libre_flatten(list, None, &mut flat);
    let mut nodes = Vec::with_capacity(flat.len());
    let mut newest: Option<(f64, String)> = None;
    for (i, (m, parent)) in flat.iter().enumerate() {
        let Some(mid) = s(m, "messageId").map(str::to_string) else {
            return Err(format!("message {i} has no messageId"));
        };
        let user = m
            .get("isCreatedByUser")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut text = s(m, "text").unwrap_or("").to_string();
        if text.is_empty() {
            text = text_of(m.get("content"));
        }
        let at = secs_of(m.get("createdAt"));
        if newest.as_ref().is_none_or(|(t, _)| at >= *t) {
            newest = Some((at, mid.clone()));
        }
        let model = if user { None } else { s(m, "model") };
        nodes.push(Node {
            id: mid,
            parent: parent.clone().filter(|p| p != LIBRE_ROOT),
            msg: Some(message(
                if user { "user" } else { "assistant" },
                text,
                model,
                time_of(m.get("createdAt")),
            )),
            at,
        });
    }
    let (messages, leaf) = assemble(nodes, newest.as_ref().map(|(_, i)| i.as_str()));
    Ok(Converted {
        source: id.map(|i| format!("librechat:{i}")),
        conv: conversation(
            s(&v, "title"),
            s(&v, "model"),
            s(&v, "promptPrefix").map(str::to_string),
            time_of(v.get("createdAt")),
            time_of(v.get("updatedAt")),
            leaf,
        ),
        messages: Value::Array(messages),
        images: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatgpt_tree_keeps_branches_and_skips_hidden_nodes() {
        let v = json!({
            "id": "c1", "title": "T", "current_node": "d",
            "mapping": {
                "root": {"id": "root", "message": null, "parent": null, "children": ["sys"]},
                "sys": {"id": "sys", "parent": "root", "children": ["a"], "message": {
                    "author": {"role": "system"}, "content": {"content_type": "text", "parts": [""]},
                    "metadata": {"is_visually_hidden_from_conversation": true}}},
                "a": {"id": "a", "parent": "sys", "children": ["b", "c"], "message": {
                    "author": {"role": "user"}, "create_time": 10.0,
                    "content": {"content_type": "text", "parts": ["hi"]}}},
                "b": {"id": "b", "parent": "a", "children": [], "message": {
                    "author": {"role": "assistant"}, "create_time": 11.0,
                    "content": {"content_type": "text", "parts": ["one"]}, "metadata": {"model_slug": "gpt-4o"}}},
                "c": {"id": "c", "parent": "a", "children": ["d"], "message": {
                    "author": {"role": "tool"}, "create_time": 12.0,
                    "content": {"content_type": "execution_output", "text": "x"}}},
                "d": {"id": "d", "parent": "c", "children": [], "message": {
                    "author": {"role": "assistant"}, "create_time": 13.0,
                    "content": {"content_type": "multimodal_text", "parts": ["see", {"content_type": "image_asset_pointer", "asset_pointer": "file-service://file-X"}]}}}
            }
        });
        let c = convert(Format::Chatgpt, v, &mut NoFiles, 200).unwrap();
        let ms = c.messages.as_array().unwrap();
        assert_eq!(ms.len(), 3);
        assert_eq!(ms[0]["parent_id"], Value::Null);
        assert_eq!(ms[1]["parent_id"], "a");
        assert_eq!(ms[2]["parent_id"], "a");
        assert!(ms[2]["content"].as_str().unwrap().contains("file-X"));
        assert_eq!(c.conv["current_leaf"], "d");
        assert_eq!(c.source.as_deref(), Some("chatgpt:c1"));
    }
}
