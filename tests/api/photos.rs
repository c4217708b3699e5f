//! The QR decoder on generated photos: a certificate photographed whole, rotated, at an angle,
//! noisy, blurred, dimly and unevenly lit, JPEG-compressed; a small QR in a large frame; a QR shown
//! light on dark.

use std::io::Cursor;

use certportal::render::{CertificateData, QrMatrix, Renderer};
use certportal::verify::decode::decode_qr;
use image::{DynamicImage, GrayImage, Luma};

/// Deterministic noise, so a failure can be reproduced.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u8 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 56) as u8
    }
}

fn page_at(dpi: u32) -> GrayImage {
    let pdf = Renderer::new(None)
        .unwrap()
        .render("2026-Сертификат", &CertificateData::sample())
        .unwrap()
        .pdf;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.pdf"), pdf).unwrap();
    let ok = std::process::Command::new("pdftoppm")
        .args(["-r", &dpi.to_string(), "-png", "-singlefile"])
        .arg(dir.path().join("c.pdf"))
        .arg(dir.path().join("p"))
        .status()
        .unwrap()
        .success();
    assert!(ok);
    image::open(dir.path().join("p.png")).unwrap().to_luma8()
}

fn rotate(img: &GrayImage, degrees: f32) -> GrayImage {
    let (w, h) = img.dimensions();
    let (s, c) = degrees.to_radians().sin_cos();
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    GrayImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let sx = c * dx + s * dy + cx;
        let sy = -s * dx + c * dy + cy;
        if sx >= 0.0 && sy >= 0.0 && (sx as u32) < w && (sy as u32) < h {
            *img.get_pixel(sx as u32, sy as u32)
        } else {
            Luma([235])
        }
    })
}

fn noisy(img: &GrayImage, amount: i16, seed: u64) -> GrayImage {
    let mut rng = Lcg(seed);
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let n = (i16::from(rng.next()) - 128) * amount / 128;
        p.0[0] = (i16::from(p.0[0]) + n).clamp(0, 255) as u8;
    }
    out
}

fn jpeg(img: &GrayImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let encoder =
        image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut out), quality);
    DynamicImage::ImageLuma8(img.clone())
        .write_with_encoder(encoder)
        .unwrap();
    out
}

fn png(img: &GrayImage) -> Vec<u8> {
    let mut out = Vec::new();
    DynamicImage::ImageLuma8(img.clone())
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[test]
fn a_whole_certificate_page_scanned_at_300_dpi_decodes() {
    let page = page_at(300);
    assert_eq!(decode_qr(&png(&page)).as_deref(), Ok("S.100500.7"));
}

#[test]
fn a_rotated_noisy_jpeg_photo_of_the_page_decodes() {
    let photo = noisy(&rotate(&page_at(200), 8.0), 50, 7);
    assert_eq!(decode_qr(&jpeg(&photo, 45)).as_deref(), Ok("S.100500.7"));
}

#[test]
fn a_blurred_photo_decodes() {
    let page = page_at(200);
    for sigma in [1.0, 1.5, 2.0] {
        let photo = image::imageops::blur(&page, sigma);
        assert_eq!(
            decode_qr(&jpeg(&noisy(&photo, 30, 3), 60)).as_deref(),
            Ok("S.100500.7"),
            "blur {sigma}"
        );
    }
}

#[test]
fn a_small_qr_in_a_12_megapixel_noisy_frame_decodes() {
    let qr = image::load_from_memory(&QrMatrix::encode("S.100500.10").to_png(9))
        .unwrap()
        .to_luma8();
    let mut frame = GrayImage::from_pixel(4000, 3000, Luma([200]));
    image::imageops::overlay(&mut frame, &qr, 2600, 1700);
    let photo = noisy(&rotate(&frame, -5.0), 60, 11);
    assert_eq!(decode_qr(&jpeg(&photo, 70)).as_deref(), Ok("S.100500.10"));
}

#[test]
fn an_exif_rotated_jpeg_is_turned_upright_before_decoding() {
    // A QR turned on its side decodes either way; what matters is that orientation metadata does
    // not make the loader fail.
    let qr = image::load_from_memory(&QrMatrix::encode("S.42.3").to_png(8))
        .unwrap()
        .to_luma8();
    let sideways = image::imageops::rotate90(&qr);
    assert_eq!(decode_qr(&jpeg(&sideways, 85)).as_deref(), Ok("S.42.3"));
}

/// A photo taken at an angle: the far edge of the page shrinks (a keystone warp).
fn keystone(img: &GrayImage, squeeze: f32) -> GrayImage {
    let (w, h) = img.dimensions();
    GrayImage::from_fn(w, h, |x, y| {
        // Row y is narrowed by up to `squeeze` of the width towards the top.
        let t = 1.0 - y as f32 / h as f32;
        let scale = 1.0 - squeeze * t;
        let cx = w as f32 / 2.0;
        let sx = cx + (x as f32 - cx) / scale;
        let sy = y as f32 * (1.0 - 0.25 * squeeze * t);
        if sx >= 0.0 && (sx as u32) < w && (sy as u32) < h {
            *img.get_pixel(sx as u32, sy as u32)
        } else {
            Luma([90])
        }
    })
}

/// Dim, low-contrast light falling off across the frame, as under a desk lamp.
fn uneven_light(img: &GrayImage) -> GrayImage {
    let (w, h) = img.dimensions();
    GrayImage::from_fn(w, h, |x, y| {
        let v = f32::from(img.get_pixel(x, y).0[0]);
        let light = 0.35 + 0.55 * (x as f32 / w as f32) * (0.5 + 0.5 * y as f32 / h as f32);
        Luma([(40.0 + v * 0.6 * light) as u8])
    })
}

#[test]
fn a_page_photographed_at_an_angle_decodes() {
    let photo = noisy(&keystone(&page_at(200), 0.3), 30, 5);
    assert_eq!(decode_qr(&jpeg(&photo, 70)).as_deref(), Ok("S.100500.7"));
}

#[test]
fn a_dim_unevenly_lit_photo_decodes() {
    let photo = noisy(&uneven_light(&page_at(200)), 20, 9);
    assert_eq!(decode_qr(&jpeg(&photo, 70)).as_deref(), Ok("S.100500.7"));
}

#[test]
fn a_qr_shown_light_on_dark_decodes() {
    let qr = image::load_from_memory(&QrMatrix::encode("S.7.5").to_png(8))
        .unwrap()
        .to_luma8();
    let mut inverted = qr.clone();
    image::imageops::invert(&mut inverted);
    assert_eq!(decode_qr(&png(&inverted)).as_deref(), Ok("S.7.5"));
}
