//! Reads a certificate code off a photo or scan of its QR. rqrr thresholds each pixel, so a noisy
//! full-size photo often fails where a downscaled copy decodes: try the full image, then smaller.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

/// Largest accepted upload, in bytes.
pub const MAX_UPLOAD: usize = 10 * 1024 * 1024;
/// Largest accepted picture, in pixels (a decompression bomb declares far more).
pub const MAX_PIXELS: u64 = 50_000_000;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("Файл слишком большой: загрузите изображение до 10 МБ.")]
    TooLarge,
    #[error("Изображение слишком большое: допускается не более 50 мегапикселей.")]
    TooManyPixels,
    #[error("Это не изображение. Загрузите фотографию QR-кода в формате JPEG, PNG или WebP.")]
    NotAnImage,
    #[error("Изображение повреждено или загружено не полностью. Попробуйте другой файл.")]
    Corrupt,
    #[error(
        "На изображении не найден QR-код. Сфотографируйте код крупнее и ровнее, при хорошем освещении."
    )]
    NoQr,
}

/// The text held by the first readable QR code in `bytes`.
pub fn decode_qr(bytes: &[u8]) -> Result<String, DecodeError> {
    if bytes.len() > MAX_UPLOAD {
        return Err(DecodeError::TooLarge);
    }
    let gray = load(bytes)?.into_luma8();
    let longest = gray.width().max(gray.height());
    // Downscaled copies first: they are cheap and decode noisy photos more often than the full
    // frame; then the full size (small or dense codes), then finer and coarser steps.
    let mut plan: Vec<u32> = [1200, 1600].into_iter().filter(|s| *s < longest).collect();
    plan.push(longest);
    plan.extend([2000, 1000, 800, 600].into_iter().filter(|s| *s < longest));
    let mut tried = Vec::new();
    for size in plan {
        let factor = longest.div_ceil(size).max(1);
        if tried.contains(&factor) {
            continue;
        }
        tried.push(factor);
        let candidate = if factor == 1 {
            gray.clone()
        } else {
            shrink(&gray, factor)
        };
        if let Some(text) = read(candidate) {
            return Ok(text);
        }
    }
    // Last, light modules on dark (a phone's dark theme), at the cheapest useful size.
    let factor = longest.div_ceil(1200).max(1);
    let mut inverted = if factor == 1 {
        gray
    } else {
        shrink(&gray, factor)
    };
    image::imageops::invert(&mut inverted);
    read(inverted).ok_or(DecodeError::NoQr)
}

/// Averages `k`×`k` blocks: a fast, alias-free reduction by a whole factor.
fn shrink(img: &image::GrayImage, k: u32) -> image::GrayImage {
    let (w, h) = img.dimensions();
    let (nw, nh) = ((w / k).max(1), (h / k).max(1));
    let src = img.as_raw();
    let stride = w as usize;
    let k = k as usize;
    let mut sums = vec![0u32; nw as usize];
    let mut out = Vec::with_capacity(nw as usize * nh as usize);
    for by in 0..nh as usize {
        sums.iter_mut().for_each(|s| *s = 0);
        for y in by * k..(by * k + k).min(h as usize) {
            let row = &src[y * stride..y * stride + nw as usize * k];
            for (bx, chunk) in row.chunks_exact(k).enumerate() {
                sums[bx] += chunk.iter().map(|p| u32::from(*p)).sum::<u32>();
            }
        }
        let area = (k * k) as u32;
        out.extend(sums.iter().map(|s| (s / area) as u8));
    }
    image::GrayImage::from_raw(nw, nh, out).expect("buffer matches its dimensions")
}

fn read(img: image::GrayImage) -> Option<String> {
    let mut prepared = rqrr::PreparedImage::prepare(img);
    prepared
        .detect_grids()
        .into_iter()
        .find_map(|g| g.decode().ok().map(|(_, text)| text))
}

fn load(bytes: &[u8]) -> Result<DynamicImage, DecodeError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| DecodeError::NotAnImage)?;
    match reader.format() {
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg | image::ImageFormat::WebP) => {}
        _ => return Err(DecodeError::NotAnImage),
    }
    let mut decoder = reader.into_decoder().map_err(classify)?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(DecodeError::TooManyPixels);
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(MAX_PIXELS * 4);
    decoder.set_limits(limits).map_err(classify)?;
    let orientation = decoder.orientation().ok();
    let mut image = DynamicImage::from_decoder(decoder).map_err(classify)?;
    if let Some(o) = orientation {
        image.apply_orientation(o);
    }
    Ok(image)
}

fn classify(e: image::ImageError) -> DecodeError {
    match e {
        image::ImageError::Limits(_) => DecodeError::TooManyPixels,
        image::ImageError::Unsupported(_) => DecodeError::NotAnImage,
        _ => DecodeError::Corrupt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::QrMatrix;

    fn png(img: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn a_clean_qr_png_decodes() {
        let bytes = QrMatrix::encode("S.100500.10").to_png(6);
        assert_eq!(decode_qr(&bytes).as_deref(), Ok("S.100500.10"));
    }

    #[test]
    fn text_and_truncated_files_get_their_own_messages() {
        assert_eq!(decode_qr(b"just some text"), Err(DecodeError::NotAnImage));
        let bytes = QrMatrix::encode("S.1.2").to_png(6);
        assert_eq!(
            decode_qr(&bytes[..bytes.len() / 2]),
            Err(DecodeError::Corrupt)
        );
        let blank = DynamicImage::new_luma8(300, 200);
        assert_eq!(decode_qr(&png(&blank)), Err(DecodeError::NoQr));
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for b in data {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn a_declared_giant_png_is_refused_before_decoding() {
        // A valid PNG header claiming 30000×30000 pixels: the decoder must not allocate 900 MP.
        let mut out = png(&DynamicImage::new_luma8(1, 1));
        out[16..20].copy_from_slice(&30000u32.to_be_bytes());
        out[20..24].copy_from_slice(&30000u32.to_be_bytes());
        let crc = crc32(&out[12..29]);
        out[29..33].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(decode_qr(&out), Err(DecodeError::TooManyPixels));
    }

    #[test]
    fn an_oversized_upload_is_refused() {
        assert_eq!(
            decode_qr(&vec![0u8; MAX_UPLOAD + 1]),
            Err(DecodeError::TooLarge)
        );
    }
}
