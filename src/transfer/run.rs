//! Running an import: the spooled upload is read on the blocking pool
//! (`stream.rs`), each conversation converted (`formats.rs`) and checked
//! (`import::prepare`) as it arrives, and written to the store in batches
//! of whole conversations (`ChatStore::import_sourced`, which skips a
//! conversation imported before from the same source). A bounded channel
//! between the reader and the writer keeps at most a few conversations in
//! memory at once.

use bytes::Bytes;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;
use uuid::{NoContext, Timestamp, Uuid};

use super::formats::{self, Format, Image, NoFiles};
use super::import::{self, FieldChecks, ImportReport, ImportedItem, SkippedFile, SkippedItem};
use super::jobs::Job;
use super::stream::{self, Container, Event, Pass};
use crate::store::User;
use crate::store::chat::{Attachment, Conversation, Message};
use crate::store::shares::Sourced;

/// A batch is written when it holds this many conversations…
const BATCH_CONVERSATIONS: usize = 50;
/// …or about this much message text.
const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Conversations read ahead of the writer.
const CHANNEL: usize = 4;

/// Why nothing (more) could be imported, beside what was.
pub struct Failed {
    pub reason: String,
    pub report: ImportReport,
}

/// A conversation read from the file, converted or not.
struct Item {
    /// The key idempotency uses: `<app>:<id>`.
    source: Option<String>,
    /// The id as the file has it (for the report).
    source_id: Option<String>,
    format: Option<Format>,
    title: Option<String>,
    body: Result<(Value, Value, Vec<Image>), String>,
}

fn skip_title(v: &Value, max: usize) -> Option<String> {
    v.get("title")
        .or_else(|| v.get("name"))
        .and_then(Value::as_str)
        .map(|t| t.chars().take(max).collect())
}

/// Turns one conversation of the document into an item.
fn item(v: Value, confab_doc: bool, files: &mut dyn formats::Files, max_title: usize) -> Item {
    match formats::detect(&v, confab_doc) {
        Some(Format::Confab) => {
            let (conv, messages) = import::split_entry(v);
            let id = conv.get("id").and_then(Value::as_str).map(str::to_string);
            Item {
                title: skip_title(&conv, max_title),
                source: id.as_ref().map(|i| format!("confab:{i}")),
                source_id: id,
                format: Some(Format::Confab),
                body: Ok((conv, messages, Vec::new())),
            }
        }
        Some(f) => {
            let title = skip_title(&v, max_title);
            let source_id = formats::source_id(f, &v);
            match formats::convert(f, v, files, max_title) {
                Ok(c) => Item {
                    source: c.source,
                    source_id,
                    format: Some(f),
                    title,
                    body: Ok((c.conv, c.messages, c.images)),
                },
                Err(reason) => Item {
                    source: None,
                    source_id,
                    format: Some(f),
                    title,
                    body: Err(reason),
                },
            }
        }
        None => Item {
            source: None,
            source_id: None,
            format: None,
            title: skip_title(&v, max_title),
            body: Err(
                "not a conversation of a known format (ChatGPT, Claude, Open WebUI, LibreChat or confab)"
                    .into(),
            ),
        },
    }
}

enum Msg {
    Item(Item),
    File(Value),
}

/// Imports the file at `path` into `user`'s account, reporting progress on
/// `job`. The answer lists every conversation imported or skipped (with
/// why); `Failed` when the file as a whole could not be read (what was
/// imported before that point stays, and is listed).
/// What an import reads and writes.
#[derive(Clone)]
pub struct Deps {
    pub store: crate::store::SharedStore,
    pub files: Arc<crate::files::Files>,
    pub cfg: Arc<crate::config::Config>,
}

pub async fn run(
    state: &Deps,
    checks: &'static FieldChecks,
    user: &User,
    path: PathBuf,
    job: Arc<Job>,
) -> Result<ImportReport, Failed> {
    let mut report = ImportReport::default();
    let p = path.clone();
    let container = match tokio::task::spawn_blocking(move || stream::container(&p)).await {
        Ok(Ok(c)) => c,
        Ok(Err(reason)) => return Err(Failed { reason, report }),
        Err(_) => {
            return Err(Failed {
                reason: "the import failed".into(),
                report,
            });
        }
    };
    let c2 = container.clone();
    let first = tokio::task::spawn_blocking(move || c2.first_byte())
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    let object = match first {
        Some(b'{') => true,
        Some(b'[') => false,
        None => {
            return Err(Failed {
                reason: "the file is empty".into(),
                report,
            });
        }
        Some(_) => {
            return Err(Failed {
                reason: "the file matches no known export format (ChatGPT, Claude, Open WebUI, LibreChat or confab): it is not JSON or a zip of JSON".into(),
                report,
            });
        }
    };
    let cfg = state.cfg.clone();
    job.passes
        .store(if object { 2 } else { 1 }, Ordering::Relaxed);

    // Pass 1: a confab export's files, stored before the messages that
    // attach them.
    let mut files: HashMap<Uuid, Attachment> = HashMap::new();
    if object {
        let (tx, mut rx) = mpsc::channel::<Msg>(CHANNEL);
        let c = container.clone();
        let j = job.clone();
        let reader = tokio::task::spawn_blocking(move || {
            c.read(|r, len| {
                j.bytes_total.store(len, Ordering::Relaxed);
                stream::parse(r, Pass::Files, &j.counter, &mut |ev| match ev {
                    Event::File(v) => tx
                        .blocking_send(Msg::File(v))
                        .map_err(|_| "cancelled".into()),
                    Event::Conversation(_) => Ok(()),
                })
            })
            .and_then(|r| r)
        });
        while let Some(m) = rx.recv().await {
            if let Msg::File(f) = m {
                import_file(state, &cfg, user, f, &mut files, &mut report).await;
            }
        }
        match reader.await {
            Ok(Ok(_)) => {}
            Ok(Err(reason)) => return Err(Failed { reason, report }),
            Err(_) => {
                return Err(Failed {
                    reason: "the import failed".into(),
                    report,
                });
            }
        }
        job.pass_done.store(1, Ordering::Relaxed);
        job.counter.bytes.store(0, Ordering::Relaxed);
    }

    // Pass 2: the conversations.
    let (tx, mut rx) = mpsc::channel::<Msg>(CHANNEL);
    let c = container.clone();
    let j = job.clone();
    let max_file = cfg.files.max_file_bytes;
    let max_title = checks.max_title;
    let reader = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut zf: Box<dyn formats::Files> = match &c {
            Container::Zip { path, .. } => match stream::ZipFiles::open(path, max_file) {
                Some(z) => Box::new(z),
                None => Box::new(NoFiles),
            },
            Container::Json(_) => Box::new(NoFiles),
        };
        let top = c
            .read(|r, len| {
                j.bytes_total.store(len, Ordering::Relaxed);
                stream::parse(r, Pass::Conversations, &j.counter, &mut |ev| match ev {
                    Event::Conversation(v) => tx
                        .blocking_send(Msg::Item(item(v, object, &mut *zf, max_title)))
                        .map_err(|_| "cancelled".into()),
                    Event::File(_) => Ok(()),
                })
            })
            .and_then(|r| r)?;
        if top.array || top.had_conversations {
            return Ok(());
        }
        // One conversation as the whole document.
        let declared = top
            .rest
            .get("format")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut rest = top.rest;
        if declared.as_deref() == Some(super::CONVERSATION_FORMAT)
            || rest.contains_key("conversation")
        {
            let conv = match rest.remove("conversation") {
                Some(v @ Value::Object(_)) => v,
                _ => return Err("conversation must be an object".into()),
            };
            let messages = rest.remove("messages").unwrap_or(Value::Null);
            let mut single = serde_json::Map::new();
            single.insert("conversation".into(), conv);
            single.insert("messages".into(), messages);
            let it = item(Value::Object(single), true, &mut *zf, max_title);
            return tx
                .blocking_send(Msg::Item(it))
                .map_err(|_| "cancelled".into());
        }
        if declared.as_deref() == Some(super::EXPORT_FORMAT) {
            return Err("conversations must be an array".into());
        }
        let v = Value::Object(rest);
        match formats::detect(&v, false) {
            Some(f) if f != Format::Confab => tx
                .blocking_send(Msg::Item(item(v, false, &mut *zf, max_title)))
                .map_err(|_| "cancelled".into()),
            _ => Err("the file matches no known export format (ChatGPT, Claude, Open WebUI, LibreChat or confab)".into()),
        }
    });

    let mut batch = Batch::default();
    let mut seen = 0usize;
    let mut recognized = 0usize;
    let base_ms = crate::clock::now_ms();
    while let Some(m) = rx.recv().await {
        let Msg::Item(it) = m else { continue };
        seen += 1;
        if it.format.is_some() {
            recognized += 1;
        }
        let (conv, messages, images) = match it.body {
            Ok(x) => x,
            Err(reason) => {
                report.skipped.push(SkippedItem {
                    source_id: it.source_id,
                    title: it.title,
                    reason,
                    existing_id: None,
                });
                job.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        for img in images {
            store_image(state, &cfg, user, img, &mut files).await;
        }
        match import::prepare(checks, user.id, &conv, messages, &files) {
            Ok((mut c, mut msgs)) => {
                // Ids count down from now, so that conversations with the
                // same last activity list in the file's order (newest first).
                let ms = base_ms.saturating_sub(seen as u64);
                c.id = Uuid::new_v7(Timestamp::from_unix(
                    NoContext,
                    ms / 1000,
                    ((ms % 1000) * 1_000_000) as u32,
                ));
                for m in &mut msgs {
                    m.conversation_id = c.id;
                }
                batch.add(it.source, it.source_id, it.format, c, msgs);
            }
            Err(reason) => {
                report.skipped.push(SkippedItem {
                    source_id: it.source_id,
                    title: it.title,
                    reason,
                    existing_id: None,
                });
                job.skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if batch.full()
            && let Err(reason) = batch.flush(state, user.id, &mut report, &job).await
        {
            drop(rx);
            let _ = reader.await;
            return Err(Failed { reason, report });
        }
    }
    if let Err(reason) = batch.flush(state, user.id, &mut report, &job).await {
        return Err(Failed { reason, report });
    }
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => return Err(Failed { reason, report }),
        Err(_) => {
            return Err(Failed {
                reason: "the import failed".into(),
                report,
            });
        }
    }
    if seen > 0 && recognized == 0 {
        return Err(Failed {
            reason: "the file matches no known export format (ChatGPT, Claude, Open WebUI, LibreChat or confab)".into(),
            report,
        });
    }
    Ok(report)
}

#[derive(Default)]
struct Batch {
    items: Vec<(Option<String>, Conversation, Vec<Message>)>,
    /// Per item: its id in the file, and its format.
    about: Vec<(Option<String>, Option<Format>)>,
    bytes: usize,
}

impl Batch {
    fn add(
        &mut self,
        source: Option<String>,
        source_id: Option<String>,
        f: Option<Format>,
        c: Conversation,
        m: Vec<Message>,
    ) {
        self.bytes += m.iter().map(|m| m.content.len() + 256).sum::<usize>();
        self.items.push((source, c, m));
        self.about.push((source_id, f));
    }

    fn full(&self) -> bool {
        self.items.len() >= BATCH_CONVERSATIONS || self.bytes >= BATCH_BYTES
    }

    async fn flush(
        &mut self,
        state: &Deps,
        user_id: Uuid,
        report: &mut ImportReport,
        job: &Job,
    ) -> Result<(), String> {
        if self.items.is_empty() {
            return Ok(());
        }
        let items = std::mem::take(&mut self.items);
        let about = std::mem::take(&mut self.about);
        self.bytes = 0;
        let done = match state.store.import_sourced(user_id, &items).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "import failed part way");
                return Err("the import could not be stored".into());
            }
        };
        for (((_, c, msgs), (source_id, f)), d) in items.into_iter().zip(about).zip(done) {
            match d {
                Sourced::Imported => {
                    job.imported.fetch_add(1, Ordering::Relaxed);
                    report.imported.push(ImportedItem {
                        source_id,
                        id: c.id.to_string(),
                        title: c.title,
                        messages: msgs.len(),
                        format: f,
                    });
                }
                Sourced::Existing(id) => {
                    job.skipped.fetch_add(1, Ordering::Relaxed);
                    report.skipped.push(SkippedItem {
                        source_id,
                        title: Some(c.title),
                        reason: "already imported".into(),
                        existing_id: Some(id.to_string()),
                    });
                }
            }
        }
        // What is stored is recorded: after a stop, the job says so.
        job.save().await;
        Ok(())
    }
}

/// Stores an image of the export as the user's file; its attachment key
/// then points at it. A refused image (quota, size) stays a named
/// attachment without a file.
async fn store_image(
    state: &Deps,
    cfg: &crate::config::Config,
    user: &User,
    img: Image,
    files: &mut HashMap<Uuid, Attachment>,
) {
    let bytes = Bytes::from(img.bytes);
    let nf = crate::files::NewFile {
        name: Some(img.name),
        declared_size: Some(bytes.len() as u64),
        body: futures::StreamExt::boxed(futures::stream::once(async move {
            Ok::<_, std::io::Error>(bytes)
        })),
    };
    if let Ok(u) = state.files.upload(&cfg.files, user, nf).await {
        files.insert(img.key, crate::chat::attachments::attachment_of(&u));
    }
}

/// Stores one file of a confab export as the caller's, through the same
/// checks as an upload (size, quota, type).
async fn import_file(
    state: &Deps,
    cfg: &crate::config::Config,
    user: &User,
    f: Value,
    map: &mut HashMap<Uuid, Attachment>,
    report: &mut ImportReport,
) {
    use base64::Engine;
    let name = f.get("name").and_then(Value::as_str).map(str::to_string);
    let old = f
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok());
    let bytes = f
        .get("content_base64")
        .and_then(Value::as_str)
        .ok_or("no content_base64".to_string())
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| format!("content_base64 is not base64: {e}"))
        });
    drop(f);
    let stored = match bytes {
        Err(reason) => Err(reason),
        Ok(bytes) => {
            let body =
                futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(bytes)) });
            let nf = crate::files::NewFile {
                name: name.clone(),
                declared_size: None,
                body: futures::StreamExt::boxed(body),
            };
            state
                .files
                .upload(&cfg.files, user, nf)
                .await
                .map_err(|e| e.to_string())
        }
    };
    match stored {
        Ok(u) => {
            report.files_imported += 1;
            if let Some(old) = old {
                map.insert(old, crate::chat::attachments::attachment_of(&u));
            }
        }
        Err(reason) => report.files_skipped.push(SkippedFile { name, reason }),
    }
}
