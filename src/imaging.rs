//! Images in memory: reading their size from the header, decoding within a
//! memory budget, scaling down and encoding again. Used for thumbnails of
//! uploaded files and for the images sent to vision models (each provider
//! with its own limits). A leaf: it knows nothing of files or providers.
//!
//! Every decode goes through [`image::Limits`]: an "image bomb" (a tiny
//! file that claims a huge canvas) is refused from its header before any
//! pixel buffer is allocated.

use image::{DynamicImage, GenericImageView, ImageFormat, ImageReader, Limits};
use std::io::Cursor;

/// Most pixels an image may have to be decoded at all (50 megapixels:
/// above every phone camera's default output).
pub const MAX_PIXELS: u64 = 50_000_000;
/// Longest side accepted.
pub const MAX_SIDE: u32 = 20_000;
/// Most memory one decode may allocate.
pub const MAX_ALLOC: u64 = 256 * 1024 * 1024;
/// JPEG quality of re-encoded images.
const JPEG_QUALITY: u8 = 85;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImagingError {
    #[error("the image is {width}×{height} pixels, more than the {max} megapixels (or {side} pixels a side) confab decodes", max = MAX_PIXELS / 1_000_000, side = MAX_SIDE)]
    TooLarge { width: u32, height: u32 },
    #[error("the image cannot be read: {0}")]
    Unreadable(String),
}

/// An encoded image.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub mime: &'static str,
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(MAX_SIDE);
    l.max_image_height = Some(MAX_SIDE);
    l.max_alloc = Some(MAX_ALLOC);
    l
}

fn reader(bytes: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>, ImagingError> {
    let mut r = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImagingError::Unreadable(e.to_string()))?;
    if r.format().is_none() {
        return Err(ImagingError::Unreadable("not a known image format".into()));
    }
    r.limits(limits());
    Ok(r)
}

fn check_size(width: u32, height: u32) -> Result<(), ImagingError> {
    if width == 0 || height == 0 {
        return Err(ImagingError::Unreadable("the image has no pixels".into()));
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS || width > MAX_SIDE || height > MAX_SIDE {
        return Err(ImagingError::TooLarge { width, height });
    }
    Ok(())
}

/// Width and height from the header alone (the start of the file is
/// enough for PNG, GIF and WebP; JPEG needs everything before its frame
/// header). Refuses sizes over the budget.
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), ImagingError> {
    let r = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImagingError::Unreadable(e.to_string()))?;
    let (w, h) = r.into_dimensions().map_err(|e| match e {
        image::ImageError::Limits(_) => ImagingError::TooLarge {
            width: 0,
            height: 0,
        },
        other => ImagingError::Unreadable(other.to_string()),
    })?;
    check_size(w, h)?;
    Ok((w, h))
}

/// Decodes (the first frame of an animation) within the budget.
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, ImagingError> {
    let (w, h) = dimensions(bytes)?;
    check_size(w, h)?;
    reader(bytes)?.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => ImagingError::TooLarge {
            width: w,
            height: h,
        },
        other => ImagingError::Unreadable(other.to_string()),
    })
}

/// The size that fits `(w, h)` into a `max_edge` square and `max_pixels`,
/// keeping the aspect ratio; unchanged when it fits already.
pub fn fit(w: u32, h: u32, max_edge: u32, max_pixels: u64) -> (u32, u32) {
    let mut scale = 1.0f64;
    let long = w.max(h);
    if long > max_edge {
        scale = f64::from(max_edge) / f64::from(long);
    }
    let px = f64::from(w) * f64::from(h) * scale * scale;
    if px > max_pixels as f64 {
        scale *= (max_pixels as f64 / px).sqrt();
    }
    if scale >= 1.0 {
        return (w, h);
    }
    let side = |v: u32, round: bool| {
        let x = f64::from(v) * scale;
        let x = if round { x.round() } else { x.floor() };
        (x as u32).clamp(1, max_edge.max(1))
    };
    let (nw, nh) = (side(w, true), side(h, true));
    if u64::from(nw) * u64::from(nh) > max_pixels {
        return (side(w, false), side(h, false));
    }
    (nw, nh)
}

fn encode(img: &DynamicImage) -> Result<Encoded, ImagingError> {
    let (width, height) = img.dimensions();
    let mut out = Vec::new();
    let mime = if img.color().has_alpha() {
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .map_err(|e| ImagingError::Unreadable(e.to_string()))?;
        "image/png"
    } else {
        let rgb = img.to_rgb8();
        let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY);
        rgb.write_with_encoder(enc)
            .map_err(|e| ImagingError::Unreadable(e.to_string()))?;
        "image/jpeg"
    };
    Ok(Encoded {
        mime,
        bytes: out,
        width,
        height,
    })
}

/// Decodes, scales down to fit `max_edge` and `max_pixels` (never up) and
/// encodes again: PNG when the image has transparency, JPEG otherwise.
/// Re-encoding also drops metadata (EXIF, GPS) and animation frames.
pub fn reencode_to_fit(
    bytes: &[u8],
    max_edge: u32,
    max_pixels: u64,
) -> Result<Encoded, ImagingError> {
    let img = decode(bytes)?;
    let (w, h) = img.dimensions();
    let (nw, nh) = fit(w, h, max_edge, max_pixels);
    let img = if (nw, nh) == (w, h) {
        img
    } else {
        img.resize_exact(nw, nh, image::imageops::FilterType::CatmullRom)
    };
    encode(&img)
}

/// A small preview inside a `edge`×`edge` box.
pub fn thumbnail(bytes: &[u8], edge: u32) -> Result<Encoded, ImagingError> {
    let img = decode(bytes)?;
    let (w, h) = img.dimensions();
    let (nw, nh) = fit(w, h, edge, u64::MAX);
    let img = if (nw, nh) == (w, h) {
        img
    } else {
        img.thumbnail_exact(nw, nh)
    };
    encode(&img)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32, alpha: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let img = if alpha {
            DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
                w,
                h,
                image::Rgba([10, 20, 30, 128]),
            ))
        } else {
            DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
                w,
                h,
                image::Rgb([200, 100, 50]),
            ))
        };
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn fits_boxes_and_pixel_budgets() {
        assert_eq!(fit(4000, 3000, 1568, u64::MAX), (1568, 1176));
        assert_eq!(fit(800, 600, 1568, u64::MAX), (800, 600));
        assert_eq!(fit(3000, 4000, 2048, u64::MAX), (1536, 2048));
        let (w, h) = fit(2000, 2000, 2000, 1_150_000);
        assert!(u64::from(w) * u64::from(h) <= 1_150_000, "{w}x{h}");
        assert_eq!(fit(1, 10_000, 100, u64::MAX), (1, 100));
    }

    #[test]
    fn reencodes_and_scales() {
        let src = png(3000, 1000, false);
        let e = reencode_to_fit(&src, 1568, u64::MAX).unwrap();
        assert_eq!(e.mime, "image/jpeg");
        assert_eq!((e.width, e.height), (1568, 523));
        assert_eq!(dimensions(&e.bytes).unwrap(), (1568, 523));
        let t = thumbnail(&png(100, 50, true), 256).unwrap();
        assert_eq!(t.mime, "image/png");
        assert_eq!((t.width, t.height), (100, 50));
    }

    /// A PNG whose header claims 100000×100000 pixels (40 bytes of file):
    /// refused from the header, nothing allocated.
    #[test]
    fn an_image_bomb_is_refused_from_its_header() {
        let mut bomb = png(1, 1, false);
        // IHDR width and height at bytes 16..24; fix the CRC after them.
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            dimensions(&bomb),
            Err(ImagingError::TooLarge { .. })
        ));
        assert!(matches!(decode(&bomb), Err(ImagingError::TooLarge { .. })));
        assert!(matches!(
            reencode_to_fit(&bomb, 100, u64::MAX),
            Err(ImagingError::TooLarge { .. })
        ));
        assert!(matches!(
            dimensions(b"<html>not an image</html>"),
            Err(ImagingError::Unreadable(_))
        ));
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
