//! Images on their way to a provider: each provider's limits, and the
//! scaling and re-encoding every image goes through before it is written
//! in that provider's format (OpenAI `image_url` data URLs, Anthropic
//! base64 `image` blocks, Ollama's `images` array).
//!
//! Every image is decoded (within `imaging`'s memory budget), scaled down
//! to fit the provider's box (never up) and encoded again, as JPEG, or PNG
//! when it has transparency. Re-encoding also strips metadata (EXIF, GPS)
//! and keeps only the first frame of an animation.
//!
//! | provider | longest side | pixels | source |
//! | --- | --- | --- | --- |
//! | OpenAI-compatible | 2048 | any | OpenAI scales "high detail" images into a 2048 px square (vision guide) |
//! | Anthropic | 1568 | 1.15 megapixels | Anthropic's vision guide: larger images are scaled down by the API anyway, costing time to first token |
//! | Ollama | 1344 | 1.8 megapixels | local vision models (LLaVA 1.6, Llama 3.2 Vision, Qwen 2.5 VL) tile images of at most about 1344 px; more only costs local compute |

use base64::Engine;

use super::{ChatRequest, ProviderError, ProviderKind};

/// The box images are scaled into for a provider kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    pub max_edge: u32,
    pub max_pixels: u64,
}

pub fn limits_for(kind: ProviderKind) -> ImageLimits {
    match kind {
        ProviderKind::Openai => ImageLimits {
            max_edge: 2048,
            max_pixels: u64::MAX,
        },
        ProviderKind::Anthropic => ImageLimits {
            max_edge: 1568,
            max_pixels: 1_150_000,
        },
        ProviderKind::Ollama => ImageLimits {
            max_edge: 1344,
            max_pixels: 1_800_000,
        },
    }
}

/// An image ready for the wire: its type and base64 text.
#[derive(Clone, PartialEq, Eq)]
pub struct WireImage {
    pub mime: &'static str,
    pub base64: String,
}

impl std::fmt::Debug for WireImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireImage")
            .field("mime", &self.mime)
            .field("base64_chars", &self.base64.len())
            .finish()
    }
}

impl WireImage {
    /// `data:<mime>;base64,<…>` (OpenAI's `image_url`).
    pub fn data_url(&self) -> String {
        format!("data:{};base64,{}", self.mime, self.base64)
    }
}

/// The images of every message of `req` (one list per message, in
/// order), scaled and encoded for `kind`, on the blocking pool. An image
/// that cannot be decoded fails the request before anything is sent.
pub async fn prepare(
    req: &ChatRequest,
    kind: ProviderKind,
) -> Result<Vec<Vec<WireImage>>, ProviderError> {
    if req.messages.iter().all(|m| m.images.is_empty()) {
        return Ok(vec![Vec::new(); req.messages.len()]);
    }
    let limits = limits_for(kind);
    let inputs: Vec<Vec<bytes::Bytes>> = req
        .messages
        .iter()
        .map(|m| m.images.iter().map(|i| i.data.clone()).collect())
        .collect();
    tokio::task::spawn_blocking(move || {
        inputs
            .into_iter()
            .map(|list| {
                list.into_iter()
                    .map(|data| {
                        let e = crate::imaging::reencode_to_fit(
                            &data,
                            limits.max_edge,
                            limits.max_pixels,
                        )
                        .map_err(|e| ProviderError::Unsupported(e.to_string()))?;
                        Ok(WireImage {
                            mime: e.mime,
                            base64: base64::engine::general_purpose::STANDARD.encode(&e.bytes),
                        })
                    })
                    .collect::<Result<Vec<_>, ProviderError>>()
            })
            .collect()
    })
    .await
    .map_err(|e| ProviderError::Protocol(format!("could not prepare the images: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{ChatMessage, ImageInput};

    fn png(w: u32, h: u32) -> bytes::Bytes {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([1, 2, 3]));
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out.into()
    }

    #[tokio::test]
    async fn images_are_scaled_into_each_providers_box() {
        let mut m = ChatMessage::user("look");
        m.images.push(ImageInput {
            mime: "image/png".into(),
            data: png(4000, 3000),
        });
        let req = ChatRequest::new("m", vec![ChatMessage::user("first"), m]);
        for (kind, want) in [
            (ProviderKind::Openai, (2048, 1536)),
            (ProviderKind::Anthropic, (1238, 928)),
            (ProviderKind::Ollama, (1344, 1008)),
        ] {
            let out = prepare(&req, kind).await.unwrap();
            assert!(out[0].is_empty());
            assert_eq!(out[1].len(), 1);
            assert_eq!(out[1][0].mime, "image/jpeg");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&out[1][0].base64)
                .unwrap();
            let dims = crate::imaging::dimensions(&bytes).unwrap();
            assert_eq!(dims, want, "{kind}");
            let l = limits_for(kind);
            assert!(u64::from(dims.0) * u64::from(dims.1) <= l.max_pixels);
        }
    }
}
