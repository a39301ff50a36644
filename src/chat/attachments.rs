//! Files attached to a chat turn: resolving the ids the client sent (each
//! must be the caller's file), what the stored message remembers of them,
//! the images sent to the model (this turn's and, within a cap, the
//! thread's earlier ones). Documents are read by the knowledge service
//! (`crate::knowledge`), which the chat service calls beside this.
//!
//! Images go to the model as `ChatMessage::images`; each provider writes
//! them in its own format (see `providers::images`). A model that cannot
//! read images is refused before anything is stored or sent when the turn
//! itself has images; images earlier in the thread become a one-line note
//! for it instead, so switching to a text model keeps the conversation
//! usable.

use std::collections::HashSet;
use uuid::Uuid;

use super::Context;
use crate::error::{AppError, AppResult};
use crate::files::{Files, FilesError};
use crate::providers::ImageInput;
use crate::store::chat::{Attachment, Message};
use crate::store::uploads::Upload;

/// Files one message may attach.
pub const MAX_ATTACHMENTS: usize = 10;
/// Images sent with one request at most: the newest; older ones become a
/// note (each image costs the model about [`IMAGE_TOKENS`] and the
/// request megabytes).
pub const MAX_CONTEXT_IMAGES: usize = 8;
/// What one image costs in the context budget (OpenAI's high-detail tiles
/// and Anthropic's ~1.15 megapixel images are both around this).
pub const IMAGE_TOKENS: u64 = 1_100;

/// What a message remembers of an attached file.
pub fn attachment_of(u: &Upload) -> Attachment {
    Attachment {
        id: u.id,
        name: u.name.clone(),
        mime: u.mime.clone(),
        size: u.size,
        width: u.width,
        height: u.height,
    }
}

/// The caller's files for the ids a turn attaches, in order. An unknown
/// id, or another user's, is 404 (as everywhere); a repeated one counts once.
pub async fn resolve(files: &Files, owner: Uuid, ids: &[String]) -> AppResult<Vec<Upload>> {
    if ids.len() > MAX_ATTACHMENTS {
        return Err(AppError::Validation(format!(
            "a message may attach at most {MAX_ATTACHMENTS} files"
        )));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(ids.len());
    for raw in ids {
        let id = Uuid::parse_str(raw.trim()).map_err(|_| AppError::not_found("file"))?;
        if !seen.insert(id) {
            continue;
        }
        out.push(files.get(owner, id).await?);
    }
    Ok(out)
}

/// Refuses a turn whose images its model cannot read.
pub fn check_vision(images: &[Attachment], model: &str, vision: bool) -> AppResult<()> {
    if images.is_empty() || vision {
        return Ok(());
    }
    Err(AppError::VisionUnsupported(format!(
        "model \"{model}\" cannot read images: choose a model that reads images (marked with an eye in the model list), or remove the {} attached",
        if images.len() == 1 { "image" } else { "images" }
    )))
}

/// Puts the thread's images into `ctx`: the newest [`MAX_CONTEXT_IMAGES`]
/// as images when the model reads them, the rest (and all of them for a
/// model that does not) as a note in the message's text. An image whose
/// file was deleted becomes a note too.
pub async fn add_images(
    files: &Files,
    owner: Uuid,
    thread: &[Message],
    ctx: &mut Context,
    vision: bool,
) -> AppResult<()> {
    let mut budget = if vision { MAX_CONTEXT_IMAGES } else { 0 };
    // Newest first, so the cap keeps the latest images.
    for i in (0..ctx.messages.len()).rev() {
        let Some(src) = thread.iter().find(|m| m.id == ctx.ids[i]) else {
            continue;
        };
        let mut notes = Vec::new();
        let mut images = Vec::new();
        for a in src.attachments.iter().filter(|a| a.is_image()) {
            if budget == 0 {
                notes.push(format!("[image not shown: {}]", a.name));
                continue;
            }
            match files.image(owner, a.id).await {
                Ok((_, img)) => {
                    images.push(ImageInput {
                        mime: img.mime,
                        data: img.bytes,
                    });
                    budget -= 1;
                }
                Err(FilesError::NotFound) => notes.push(format!("[image deleted: {}]", a.name)),
                Err(e) => return Err(e.into()),
            }
        }
        let m = &mut ctx.messages[i];
        m.images = images;
        if !notes.is_empty() {
            if !m.content.is_empty() {
                m.content.push_str("\n\n");
            }
            m.content.push_str(&notes.join("\n"));
        }
    }
    Ok(())
}
