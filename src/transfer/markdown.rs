//! A conversation's shown thread as Markdown, for reading.

use crate::store::chat::{Conversation, Message, MessageRole, MessageStatus};

/// The shown thread as Markdown: `# Title`, the system prompt as a quote,
/// then one `## User` / `## Assistant (model)` section per message.
pub fn markdown(c: &Conversation, thread: &[Message]) -> String {
    let mut out = String::new();
    out.push_str("# ");
    out.push_str(&one_line(&c.title));
    out.push_str("\n\n");
    if let Some(p) = c.system_prompt.as_deref().filter(|p| !p.trim().is_empty()) {
        out.push_str("> **System prompt**\n>\n");
        for line in p.lines() {
            if line.is_empty() {
                out.push_str(">\n");
            } else {
                out.push_str("> ");
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push('\n');
    }
    for m in thread {
        match m.role {
            MessageRole::User => out.push_str("## User"),
            MessageRole::System => out.push_str("## System"),
            MessageRole::Assistant => {
                out.push_str("## Assistant");
                if let Some(model) = m.model.as_deref().filter(|s| !s.is_empty()) {
                    out.push_str(" (");
                    out.push_str(&one_line(model));
                    out.push(')');
                }
            }
        }
        out.push_str("\n\n");
        out.push_str(m.content.trim_end());
        out.push_str("\n\n");
        match m.status {
            MessageStatus::Complete => {}
            MessageStatus::Streaming | MessageStatus::Interrupted => {
                out.push_str("*(interrupted)*\n\n");
            }
            MessageStatus::Error => {
                let why = m
                    .error
                    .as_ref()
                    .map(|e| format!(": {}", one_line(&e.message)))
                    .unwrap_or_default();
                out.push_str(&format!("*(error{why})*\n\n"));
            }
        }
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out.push('\n');
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
