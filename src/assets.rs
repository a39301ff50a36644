//! The browser app, embedded at build time from `assets/`.
//!
//! Every file is hashed and compressed (brotli and gzip) once per process,
//! the first time the server needs it, so requests only pick a variant.

use bytes::Bytes;
use include_dir::{Dir, include_dir};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::sync::OnceLock;

static DIR: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets");

pub struct Asset {
    pub body: Bytes,
    pub gzip: Option<Bytes>,
    pub br: Option<Bytes>,
    /// Strong ETag from the content hash, quoted.
    pub etag: String,
    pub content_type: String,
    /// Versioned names never change content, so browsers may cache forever.
    pub immutable: bool,
}

pub struct Assets {
    files: HashMap<String, Asset>,
}

fn compressible(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || content_type.contains("javascript")
        || content_type.contains("json")
        || content_type.contains("xml")
        || content_type.contains("svg")
        || content_type.contains("wasm")
        || content_type.contains("manifest")
}

/// `app.3f2a9c1d.js`, or anything under a directory like `preact@10.26.4/`.
pub fn is_versioned(path: &str) -> bool {
    if path.split('/').any(|seg| {
        seg.split_once('@')
            .is_some_and(|(_, v)| v.chars().next().is_some_and(|c| c.is_ascii_digit()))
    }) {
        return true;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    name.split('.')
        .any(|part| part.len() >= 8 && part.chars().all(|c| c.is_ascii_hexdigit()))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("writing to memory");
    e.finish().expect("writing to memory")
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 9,
        lgwin: 22,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).expect("writing to memory");
    out
}

fn collect(dir: &'static Dir<'static>, out: &mut Vec<(&'static str, &'static [u8])>) {
    for f in dir.files() {
        out.push((f.path().to_str().unwrap_or_default(), f.contents()));
    }
    for d in dir.dirs() {
        collect(d, out);
    }
}

impl Assets {
    pub fn get() -> &'static Assets {
        static ASSETS: OnceLock<Assets> = OnceLock::new();
        ASSETS.get_or_init(Assets::build)
    }

    fn build() -> Assets {
        let mut list = Vec::new();
        collect(&DIR, &mut list);
        let files = list
            .into_iter()
            .map(|(path, data)| {
                let content_type = mime_guess::from_path(path)
                    .first_raw()
                    .map(|m| {
                        if m.starts_with("text/") || m.contains("javascript") {
                            format!("{m}; charset=utf-8")
                        } else {
                            m.to_string()
                        }
                    })
                    .unwrap_or_else(|| {
                        if path.ends_with(".webmanifest") {
                            "application/manifest+json".into()
                        } else {
                            "application/octet-stream".into()
                        }
                    });
                let (gz, br) = if compressible(&content_type) && data.len() > 256 {
                    let gz = gzip(data);
                    let br = brotli(data);
                    (
                        (gz.len() < data.len()).then(|| Bytes::from(gz)),
                        (br.len() < data.len()).then(|| Bytes::from(br)),
                    )
                } else {
                    (None, None)
                };
                let digest = Sha256::digest(data);
                let asset = Asset {
                    body: Bytes::from_static(data),
                    gzip: gz,
                    br,
                    etag: format!("\"{}\"", hex::encode(&digest[..16])),
                    immutable: is_versioned(path),
                    content_type,
                };
                (path.to_string(), asset)
            })
            .collect();
        Assets { files }
    }

    pub fn file(&self, path: &str) -> Option<&Asset> {
        self.files.get(path)
    }

    pub fn index(&self) -> &Asset {
        self.files
            .get("index.html")
            .expect("assets/index.html is embedded")
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_names() {
        assert!(is_versioned("app.3f2a9c1d.js"));
        assert!(is_versioned("vendor/preact@10.26.4/preact.mjs"));
        assert!(!is_versioned("app.js"));
        assert!(!is_versioned("index.html"));
        assert!(!is_versioned("vendor/readme@latest/x.js"));
    }

    #[test]
    fn index_is_embedded_and_compressed() {
        let a = Assets::get();
        let i = a.index();
        assert!(i.content_type.starts_with("text/html"));
        assert!(i.etag.starts_with('"'));
    }
}
