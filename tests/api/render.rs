//! The certificate PDF, checked with real PDF tools.

use certportal::domain::Points;
use certportal::render::{CertificateData, Renderer};

use crate::helpers::{pdf_qr, pdf_text};

fn render(data: &CertificateData) -> Vec<u8> {
    Renderer::new(None)
        .unwrap()
        .render("2026-Сертификат", data)
        .unwrap()
        .pdf
}

#[test]
fn the_pdf_text_holds_the_office_template_lines_in_cyrillic() {
    // Arrange
    let data = CertificateData::sample();
    // Act
    let text = pdf_text(&render(&data));
    // Assert
    for line in [
        "ТОМСКИЙ",
        "ПОЛИТЕХНИЧЕСКИЙ",
        "УНИВЕРСИТЕТ",
        "СЕРТИФИКАТ",
        "№100500",
        "Настоящий сертификат удостоверяет, что",
        "Иванова Анастасия",
        "Сергеевна",
        "Участвовал(а) в мероприятии",
        "«Олимпиада «Будущее Сибири» по физике», и имеет",
        "индивидуальное достижение",
        "7 баллов",
        "Начальник отдела",
        "организации набора",
        "А.А. Денисевич",
        "ТОМСК 2026",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    let order: Vec<usize> = [
        "ТОМСКИЙ",
        "СЕРТИФИКАТ",
        "№100500",
        "Иванова",
        "Участвовал",
        "7 баллов",
        "ТОМСК 2026",
    ]
    .iter()
    .map(|l| text.find(l).unwrap())
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "lines out of order:\n{text}"
    );
}

#[test]
fn the_qr_on_the_page_decodes_to_the_exact_code_at_150_dpi() {
    let mut data = CertificateData::sample();
    data.points = Points::parse("10 баллов").unwrap();
    let pdf = render(&data);
    assert_eq!(pdf_qr(&pdf, 150).as_deref(), Some("S.100500.10"));
}

#[test]
fn the_pdf_is_one_small_page_titled_with_the_number() {
    let pdf = render(&CertificateData::sample());
    assert!(pdf.len() <= 40 * 1024, "{} bytes", pdf.len());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let info = std::process::Command::new("pdfinfo")
        .arg(&path)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout).to_string();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(field("Pages:"), "1", "{info}");
    assert_eq!(field("Title:"), "Сертификат №100500", "{info}");
}

#[test]
fn a_200_character_event_title_is_printed_whole_inside_the_page() {
    let title: String =
        "Всероссийская междисциплинарная олимпиада школьников по инженерным наукам ".repeat(3);
    let title = title.chars().take(200).collect::<String>();
    let mut data = CertificateData::sample();
    data.event_title = title.trim().to_string();
    let pdf = render(&data);
    let text = pdf_text(&pdf)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for word in data.event_title.split_whitespace() {
        assert!(text.contains(word), "{word} lost:\n{text}");
    }
    // Text that ran off the page would be missing from a crop of the page's own box.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let bbox = std::process::Command::new("pdftotext")
        .args(["-bbox"])
        .arg(&path)
        .arg("-")
        .output()
        .unwrap();
    let html = String::from_utf8_lossy(&bbox.stdout);
    for part in html.split("<word ").skip(1) {
        let attr = |name: &str| -> f64 {
            part.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .and_then(|v| v.parse().ok())
                .unwrap()
        };
        assert!(
            attr("xMin") >= 0.0 && attr("xMax") <= 595.5,
            "word off the page: {part}"
        );
        assert!(
            attr("yMin") >= 0.0 && attr("yMax") <= 842.5,
            "word off the page: {part}"
        );
    }
}

#[test]
fn the_render_command_makes_the_sample_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.pdf");
    let qr = dir.path().join("qr.png");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_certportal"))
        .args(["render", "--sample", "--out"])
        .arg(&out)
        .arg("--qr-png")
        .arg(&qr)
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let pdf = std::fs::read(&out).unwrap();
    assert!(pdf_text(&pdf).contains("Иванова Анастасия"));
    assert_eq!(
        crate::helpers::decode_qr_png(&std::fs::read(&qr).unwrap()).as_deref(),
        Some("S.100500.7")
    );
}

#[test]
fn the_render_command_takes_given_data_and_rejects_missing_glyphs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.pdf");
    let run = |last: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_certportal"))
            .args([
                "render",
                "--template",
                "2026-Сертификат",
                "--id",
                "42",
                "--last-name",
                last,
                "--first-name",
                "Пётр",
                "--second-name",
                "Ильич",
                "--event",
                "День открытых дверей",
                "--points",
                "1 балл",
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap()
    };
    assert!(run("Чайковский").status.success());
    let text = pdf_text(&std::fs::read(&out).unwrap());
    assert!(
        text.contains("Чайковский Пётр") && text.contains("1 балл") && text.contains("№42"),
        "{text}"
    );
    let failed = run("Чайковский ☃");
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("☃"));
}
