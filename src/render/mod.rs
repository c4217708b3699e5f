//! Turns certificate data into a PDF and a QR image, from templates kept as data.

mod fonts;
mod pdf;
mod qr;
mod template;

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::domain::{CertificateCode, Points};
pub use qr::QrMatrix;

/// Time to copy the parsed fonts one document needs (for `bench render`).
pub fn font_clone_cost() -> std::time::Duration {
    let t = std::time::Instant::now();
    let a = pdf::parsed_font("serif").clone();
    let b = pdf::parsed_font("serif-bold").clone();
    drop((a, b));
    t.elapsed()
}
pub use template::{Placeholder, Template, TemplateError, TemplateSet};

/// Everything printed on one certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateData {
    pub number: u64,
    number_text: String,
    pub last_name: String,
    pub first_name: String,
    pub second_name: String,
    pub event_title: String,
    pub points: Points,
}

impl CertificateData {
    pub fn new(
        number: u64,
        last_name: &str,
        first_name: &str,
        second_name: &str,
        event_title: &str,
        points: Points,
    ) -> Self {
        let clean = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        Self {
            number,
            number_text: number.to_string(),
            last_name: clean(last_name),
            first_name: clean(first_name),
            second_name: clean(second_name),
            event_title: clean(event_title),
            points,
        }
    }

    pub fn code(&self) -> CertificateCode {
        CertificateCode::new(self.number, self.points.value())
    }

    /// Data for `render --sample` and the benchmark.
    pub fn sample() -> Self {
        Self::new(
            100500,
            "Иванова",
            "Анастасия",
            "Сергеевна",
            "Олимпиада «Будущее Сибири» по физике",
            Points::parse("7 баллов").expect("sample points parse"),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("в шаблоне нет шрифта для символа «{character}» (шрифт {font})")]
    MissingGlyph { character: char, font: &'static str },
    #[error("шаблон «{0}» не найден")]
    UnknownTemplate(String),
    #[error("фоновое изображение шаблона не читается: {0}")]
    Background(String),
    #[error("PDF не записан: {0}")]
    Write(String),
}

/// A rendered certificate: the PDF, the QR for the CRM and the PDF's SHA-256 (hex).
#[derive(Debug, Clone)]
pub struct Rendered {
    pub pdf: Vec<u8>,
    pub qr_png: Vec<u8>,
    pub sha256: String,
}

/// Renders certificates from a loaded set of templates. Cheap to share between threads.
#[derive(Debug, Clone)]
pub struct Renderer {
    templates: TemplateSet,
}

impl Renderer {
    pub fn new(extra_templates: Option<&Path>) -> Result<Self, TemplateError> {
        Ok(Self {
            templates: TemplateSet::load(extra_templates)?,
        })
    }

    pub fn templates(&self) -> &TemplateSet {
        &self.templates
    }

    pub fn has_template(&self, name: &str) -> bool {
        self.templates.get(name).is_some()
    }

    pub fn render(&self, template: &str, data: &CertificateData) -> Result<Rendered, RenderError> {
        let template = self
            .templates
            .get(template)
            .ok_or_else(|| RenderError::UnknownTemplate(template.to_string()))?;
        let qr = QrMatrix::encode(&data.code().to_string());
        let pdf = pdf::render_pdf(template, data, &qr)?;
        let sha256 = hex::encode(Sha256::digest(&pdf));
        Ok(Rendered {
            pdf,
            qr_png: qr.to_png(8),
            sha256,
        })
    }
}

/// The text lines a block would print, for tests that check layout without a PDF reader.
pub fn laid_out_lines(template: &Template, data: &CertificateData) -> Vec<(String, f32, f32, f32)> {
    template
        .blocks
        .iter()
        .flat_map(|b| {
            let lines = pdf::layout_block(b, data).unwrap_or_default();
            lines.into_iter().map(move |l| {
                let width_mm = fonts::fonts()[l.font].width(&l.text, l.size) * 25.4 / 72.0;
                (l.text, l.x_mm, l.x_mm + width_mm, l.baseline_mm)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renderer() -> Renderer {
        Renderer::new(None).unwrap()
    }

    #[test]
    fn the_same_input_gives_byte_identical_pdfs() {
        let r = renderer();
        let a = r
            .render("2026-Сертификат", &CertificateData::sample())
            .unwrap();
        let b = r
            .render("2026-Сертификат", &CertificateData::sample())
            .unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert!(a.pdf == b.pdf);
        assert!(a.pdf.starts_with(b"%PDF-"));
    }

    #[test]
    fn different_data_gives_a_different_pdf() {
        let r = renderer();
        let a = r
            .render("2026-Сертификат", &CertificateData::sample())
            .unwrap();
        let mut other = CertificateData::sample();
        other.last_name = "Петрова".into();
        let b = r.render("2026-Сертификат", &other).unwrap();
        assert_ne!(a.sha256, b.sha256);
    }

    #[test]
    fn a_character_missing_from_the_font_is_an_error() {
        let mut data = CertificateData::sample();
        data.last_name = "Иванова 😀".into();
        let err = renderer().render("2026-Сертификат", &data).unwrap_err();
        assert!(
            matches!(
                err,
                RenderError::MissingGlyph {
                    character: '😀',
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_template_is_an_error() {
        let err = renderer()
            .render("2020-Нет", &CertificateData::sample())
            .unwrap_err();
        assert!(matches!(err, RenderError::UnknownTemplate(_)));
    }

    #[test]
    fn long_titles_and_names_stay_inside_their_blocks() {
        let r = renderer();
        let t = r.templates().get("2026-Сертификат").unwrap();
        let mut data = CertificateData::sample();
        data.event_title = "Межрегиональная олимпиада школьников ".repeat(6);
        data.last_name = "Константинопольская-Преображенская".into();
        data.first_name = "Александра-Виктория".into();
        for (text, left, right, baseline) in laid_out_lines(t, &data) {
            assert!(
                left >= 0.0 && right <= t.page_width,
                "{text}: {left}..{right}"
            );
            assert!(baseline > 0.0 && baseline < t.page_height, "{text}");
        }
        for block in &t.blocks {
            for line in pdf::layout_block(block, &data).unwrap() {
                let w = fonts::fonts()[line.font].width(&line.text, line.size) * 25.4 / 72.0;
                assert!(line.x_mm >= block.x - 0.01, "{}", line.text);
                assert!(
                    line.x_mm + w <= block.x + block.width + 0.01,
                    "{}",
                    line.text
                );
                assert!(
                    line.baseline_mm <= block.y + block.height + 0.01,
                    "{}",
                    line.text
                );
            }
        }
    }

    #[test]
    fn an_empty_middle_name_leaves_no_blank_line() {
        let r = renderer();
        let t = r.templates().get("2026-Сертификат").unwrap();
        let mut data = CertificateData::sample();
        data.second_name = String::new();
        let texts: Vec<String> = laid_out_lines(t, &data).into_iter().map(|l| l.0).collect();
        assert!(texts.contains(&"Иванова Анастасия".to_string()));
        assert!(!texts.iter().any(|t| t.is_empty()));
    }
}
