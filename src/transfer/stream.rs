//! Reading an import file without holding it in memory: the upload is
//! spooled to a temporary file, then parsed with serde_json's streaming
//! deserializer, one conversation at a time (a `Visitor` over the top-level
//! array, or over a confab export's `conversations` and `files`). Memory
//! is bounded by the largest single conversation, itself capped at
//! [`MAX_CONVERSATION_BYTES`] of JSON.
//!
//! A zip (a ChatGPT or Claude data export as downloaded) is read in place:
//! its `conversations.json` is streamed out of the archive, and the images
//! its messages point at are read from the archive's other entries.

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The most JSON one conversation may take; a larger one stops the import
/// (the ones before it stay imported).
pub const MAX_CONVERSATION_BYTES: u64 = 64 * 1024 * 1024;

/// What the import reads the conversations from.
#[derive(Debug, Clone)]
pub enum Container {
    Json(PathBuf),
    /// A zip and the name of its conversations entry.
    Zip {
        path: PathBuf,
        entry: String,
    },
}

/// Looks at the spooled upload: a zip (by its magic bytes) or else JSON.
pub fn container(path: &Path) -> Result<Container, String> {
    let mut head = [0u8; 4];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|_| "the upload could not be read".to_string())?;
    if n == 4 && head == *b"PK\x03\x04" {
        let mut z = zip::ZipArchive::new(File::open(path).map_err(|e| e.to_string())?)
            .map_err(|e| format!("the zip file cannot be read: {e}"))?;
        let names: Vec<String> = z
            .file_names()
            .filter_map(|n| n.ok().map(|n| n.into_owned()))
            .collect();
        let json: Vec<&String> = names.iter().filter(|n| n.ends_with(".json")).collect();
        let pick = json
            .iter()
            .filter(|n| n.rsplit('/').next() == Some("conversations.json"))
            .min_by_key(|n| n.len())
            .or(if json.len() == 1 { json.first() } else { None })
            .map(|n| n.to_string());
        match pick {
            Some(entry) => {
                // Fails early on an entry that cannot be opened.
                z.by_name(&entry)
                    .map_err(|e| format!("the zip file cannot be read: {e}"))?;
                Ok(Container::Zip {
                    path: path.to_path_buf(),
                    entry,
                })
            }
            None => Err("the zip file holds no conversations.json".into()),
        }
    } else {
        Ok(Container::Json(path.to_path_buf()))
    }
}

impl Container {
    /// Calls `f` with a reader of the conversations' JSON and its size.
    pub fn read<T>(&self, f: impl FnOnce(&mut dyn Read, u64) -> T) -> Result<T, String> {
        match self {
            Container::Json(p) => {
                let mut file = File::open(p).map_err(|_| "the upload could not be read")?;
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                Ok(f(&mut file, len))
            }
            Container::Zip { path, entry } => {
                let file = File::open(path).map_err(|_| "the upload could not be read")?;
                let mut z = zip::ZipArchive::new(file).map_err(|e| e.to_string())?;
                let mut e = z.by_name(entry).map_err(|e| e.to_string())?;
                let len = e.size();
                Ok(f(&mut e, len))
            }
        }
    }

    /// The first non-blank byte of the JSON (`[` or `{` for a document).
    pub fn first_byte(&self) -> Result<Option<u8>, String> {
        self.read(|r, _| {
            let mut b = [0u8; 1];
            loop {
                match r.read(&mut b) {
                    Ok(0) | Err(_) => return None,
                    Ok(_) if b[0].is_ascii_whitespace() => continue,
                    // A UTF-8 byte order mark.
                    Ok(_) if b[0] == 0xEF || b[0] == 0xBB || b[0] == 0xBF => continue,
                    Ok(_) => return Some(b[0]),
                }
            }
        })
    }
}

/// The files beside the conversations in a zip, found by name prefix.
pub struct ZipFiles {
    zip: zip::ZipArchive<File>,
    names: Vec<String>,
    max_bytes: u64,
}

impl ZipFiles {
    pub fn open(path: &Path, max_bytes: u64) -> Option<ZipFiles> {
        let zip = zip::ZipArchive::new(File::open(path).ok()?).ok()?;
        let names = zip
            .file_names()
            .filter_map(|n| n.ok().map(|n| n.into_owned()))
            .collect();
        Some(ZipFiles {
            zip,
            names,
            max_bytes,
        })
    }
}

impl super::formats::Files for ZipFiles {
    fn find(&mut self, id: &str) -> Option<(String, Vec<u8>)> {
        let name = self
            .names
            .iter()
            .filter(|n| !n.ends_with('/'))
            .find(|n| n.rsplit('/').next().is_some_and(|b| b.starts_with(id)))?
            .clone();
        let e = self.zip.by_name(&name).ok()?;
        if e.size() > self.max_bytes {
            return None;
        }
        let mut bytes = Vec::with_capacity(e.size() as usize);
        e.take(self.max_bytes + 1).read_to_end(&mut bytes).ok()?;
        let base = name.rsplit('/').next().unwrap_or(&name).to_string();
        Some((base, bytes))
    }
}

/// How far the reading got, shared with the job's progress.
#[derive(Default)]
pub struct Counter {
    pub bytes: AtomicU64,
}

/// No conversation is being read: no cap.
const OFF: u64 = u64::MAX;
/// A conversation starts: the cap counts from the next read.
const RESET: u64 = u64::MAX - 1;

/// Counts what is read, and refuses to read more than the cap past the
/// start of the current conversation.
struct Counting<'a> {
    inner: &'a mut dyn Read,
    pos: u64,
    counter: &'a Counter,
    item_start: Arc<AtomicU64>,
    too_big: Arc<AtomicBool>,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let mut start = self.item_start.load(Ordering::Relaxed);
        if start == RESET {
            start = self.pos;
            self.item_start.store(start, Ordering::Relaxed);
        }
        self.pos += n as u64;
        if start != OFF && self.pos.saturating_sub(start) > MAX_CONVERSATION_BYTES {
            self.too_big.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other("conversation too large"));
        }
        Ok(n)
    }
}

/// Which part of a document a pass reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// A confab export's `files` only (they must be stored before the
    /// messages that attach them).
    Files,
    /// The conversations.
    Conversations,
}

/// One thing found in the document.
pub enum Event {
    Conversation(Value),
    File(Value),
}

/// The document's top level, after the pass.
#[derive(Debug, Default)]
pub struct Top {
    pub array: bool,
    /// An object's keys other than `conversations` and `files`.
    pub rest: Map<String, Value>,
    pub had_conversations: bool,
}

pub type Sink<'a> = dyn FnMut(Event) -> Result<(), String> + 'a;

/// Reads the JSON of `r` in one pass, handing each conversation (or file)
/// to `sink` as it is read. An error is the reason the document cannot be
/// read (what was handed to `sink` before stays handed).
pub fn parse(
    r: &mut dyn Read,
    pass: Pass,
    counter: &Counter,
    sink: &mut Sink,
) -> Result<Top, String> {
    let item_start = Arc::new(AtomicU64::new(OFF));
    let too_big = Arc::new(AtomicBool::new(false));
    let counting = Counting {
        inner: r,
        pos: 0,
        counter,
        item_start: item_start.clone(),
        too_big: too_big.clone(),
    };
    let reader = BufReader::with_capacity(64 * 1024, counting);
    let mut de = serde_json::Deserializer::from_reader(reader);
    let seed = TopSeed {
        pass,
        sink,
        item_start: &item_start,
    };
    let out = seed.deserialize(&mut de).and_then(|t| de.end().map(|_| t));
    match out {
        Ok(t) => Ok(t),
        Err(_) if too_big.load(Ordering::Relaxed) => Err(format!(
            "a conversation is larger than {} MiB of JSON; the import stopped there",
            MAX_CONVERSATION_BYTES / (1024 * 1024)
        )),
        Err(e) => match e.classify() {
            serde_json::error::Category::Data => Err(e.to_string()),
            serde_json::error::Category::Io => Err("the upload could not be read".into()),
            _ => Err(format!("the file is not valid JSON: {e}")),
        },
    }
}

struct TopSeed<'a, 'b> {
    pass: Pass,
    sink: &'a mut Sink<'b>,
    item_start: &'a Arc<AtomicU64>,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_, '_> {
    type Value = Top;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Top, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_, '_> {
    type Value = Top;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array or object")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
        if self.pass == Pass::Files {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
        } else {
            let mut list = ListSeed {
                file: false,
                sink: self.sink,
                item_start: self.item_start,
            };
            list.each(&mut seq)?;
        }
        Ok(Top {
            array: true,
            ..Top::default()
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut top = Top::default();
        while let Some(k) = map.next_key::<String>()? {
            match (k.as_str(), self.pass) {
                ("conversations", Pass::Conversations) => {
                    top.had_conversations = true;
                    map.next_value_seed(ListSeed {
                        file: false,
                        sink: &mut *self.sink,
                        item_start: self.item_start,
                    })?;
                }
                ("files", Pass::Files) => {
                    map.next_value_seed(ListSeed {
                        file: true,
                        sink: &mut *self.sink,
                        item_start: self.item_start,
                    })?;
                }
                ("conversations", Pass::Files) | ("files", Pass::Conversations) => {
                    top.had_conversations |= k == "conversations";
                    map.next_value::<IgnoredAny>()?;
                }
                ("format", _) => {
                    let v: Value = map.next_value()?;
                    check_format(&v).map_err(A::Error::custom)?;
                    top.rest.insert(k, v);
                }
                _ => {
                    self.item_start.store(RESET, Ordering::Relaxed);
                    let v: Value = map.next_value()?;
                    self.item_start.store(OFF, Ordering::Relaxed);
                    top.rest.insert(k, v);
                }
            }
        }
        Ok(top)
    }
}

/// A declared `format` must be one of confab's.
fn check_format(v: &Value) -> Result<(), String> {
    use super::{CONVERSATION_FORMAT, EXPORT_FORMAT};
    match v {
        Value::Null => Ok(()),
        Value::String(f) if f == EXPORT_FORMAT || f == CONVERSATION_FORMAT => Ok(()),
        Value::String(f) => Err(format!(
            "unsupported format {:?}; expected {EXPORT_FORMAT:?} or {CONVERSATION_FORMAT:?}",
            f.chars().take(50).collect::<String>()
        )),
        _ => Err("format must be a string".into()),
    }
}

struct ListSeed<'a, 'b> {
    file: bool,
    sink: &'a mut Sink<'b>,
    item_start: &'a Arc<AtomicU64>,
}

impl<'de> ListSeed<'_, '_> {
    fn each<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<(), A::Error> {
        loop {
            // The cap counts from about here (the reader is a buffer ahead).
            self.item_start.store(RESET, Ordering::Relaxed);
            let Some(v) = seq.next_element::<Value>()? else {
                break;
            };
            self.item_start.store(OFF, Ordering::Relaxed);
            let ev = if self.file {
                Event::File(v)
            } else {
                Event::Conversation(v)
            };
            (self.sink)(ev).map_err(A::Error::custom)?;
        }
        self.item_start.store(OFF, Ordering::Relaxed);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(if self.file {
            "files must be an array"
        } else {
            "conversations must be an array"
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.each(&mut seq)
    }
}
