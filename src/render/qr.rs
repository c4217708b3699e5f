//! The certificate's QR code: a module matrix drawn as vector rectangles in the PDF and as a PNG
//! for the CRM's QR field.

use qrcode::{Color, EcLevel, QrCode};

/// Modules of quiet zone on each side, as the QR standard asks.
pub const QUIET_ZONE: usize = 4;

/// The dark/light module matrix of `payload` at error correction level M.
pub struct QrMatrix {
    pub width: usize,
    dark: Vec<bool>,
}

impl QrMatrix {
    pub fn encode(payload: &str) -> Self {
        let code = QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::M)
            .expect("a certificate code always fits in a QR code");
        let width = code.width();
        let dark = code
            .to_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect();
        Self { width, dark }
    }

    pub fn is_dark(&self, x: usize, y: usize) -> bool {
        self.dark[y * self.width + x]
    }

    /// Horizontal runs of dark modules per row as `(row, start, length)`, so the PDF draws a few
    /// hundred rectangles instead of one per module.
    pub fn dark_runs(&self) -> Vec<(usize, usize, usize)> {
        let mut runs = Vec::new();
        for y in 0..self.width {
            let mut x = 0;
            while x < self.width {
                if self.is_dark(x, y) {
                    let start = x;
                    while x < self.width && self.is_dark(x, y) {
                        x += 1;
                    }
                    runs.push((y, start, x - start));
                } else {
                    x += 1;
                }
            }
        }
        runs
    }

    /// A grayscale PNG with a quiet zone, `scale` pixels per module.
    pub fn to_png(&self, scale: u32) -> Vec<u8> {
        let side = (self.width + 2 * QUIET_ZONE) as u32 * scale;
        let img = image::GrayImage::from_fn(side, side, |px, py| {
            let mx = (px / scale) as usize;
            let my = (py / scale) as usize;
            let dark = mx >= QUIET_ZONE
                && my >= QUIET_ZONE
                && mx - QUIET_ZONE < self.width
                && my - QUIET_ZONE < self.width
                && self.is_dark(mx - QUIET_ZONE, my - QUIET_ZONE);
            image::Luma([if dark { 0 } else { 255 }])
        });
        let mut out = Vec::new();
        // Fastest deflate with adaptive filters: ~1.2 KB at 8 px per module in ~25 µs (the Sub
        // filter alone gave 4.8 KB). Small matters: up to 50 travel URL-encoded in one `batch`.
        let encoder = image::codecs::png::PngEncoder::new_with_quality(
            &mut out,
            image::codecs::png::CompressionType::Fast,
            image::codecs::png::FilterType::Adaptive,
        );
        img.write_with_encoder(encoder)
            .expect("encoding a PNG in memory cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_png_decodes_back_to_the_payload() {
        let png = QrMatrix::encode("S.100500.10").to_png(8);
        assert!(png.len() < 2048, "{} bytes", png.len());
        let img = image::load_from_memory(&png).unwrap().to_luma8();
        let mut prepared = rqrr::PreparedImage::prepare(img);
        let grids = prepared.detect_grids();
        assert_eq!(grids.len(), 1);
        let (_, content) = grids[0].decode().unwrap();
        assert_eq!(content, "S.100500.10");
    }

    #[test]
    fn runs_cover_exactly_the_dark_modules() {
        let m = QrMatrix::encode("S.1.7");
        let from_runs: usize = m.dark_runs().iter().map(|r| r.2).sum();
        let dark = (0..m.width)
            .flat_map(|y| (0..m.width).map(move |x| (x, y)))
            .filter(|(x, y)| m.is_dark(*x, *y))
            .count();
        assert_eq!(from_runs, dark);
    }
}
