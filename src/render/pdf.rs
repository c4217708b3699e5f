//! Lays a template out on a page and writes the PDF with printpdf.

use printpdf::{
    Color, FontId, Mm, Op, PaintMode, ParsedFont, PdfDocument, PdfFont, PdfFontHandle, PdfPage,
    PdfSaveOptions, Point, Pt, RawImage, Rect, Rgb as PdfRgb, TextItem, WindingOrder, XObject,
    XObjectId, XObjectTransform,
};
use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::fonts::{Font, fonts};
use super::qr::{QUIET_ZONE, QrMatrix};
use super::template::{Align, Placeholder, Rgb, Segment, Template, TextBlock};
use super::{CertificateData, RenderError};

const PT_PER_MM: f32 = 72.0 / 25.4;
/// The smallest size a block may shrink to when even its `min_size` overflows: text stays on the page.
const FLOOR_SIZE: f32 = 4.0;

pub(crate) fn parsed_font(name: &str) -> &'static ParsedFont {
    static PARSED: OnceLock<BTreeMap<&'static str, ParsedFont>> = OnceLock::new();
    let all = PARSED.get_or_init(|| {
        fonts()
            .values()
            .map(|f| {
                let parsed = ParsedFont::from_bytes(f.bytes, 0, &mut Vec::new())
                    .expect("embedded font parses");
                (f.name, parsed)
            })
            .collect()
    });
    &all[name]
}

/// One laid-out line: where its baseline starts and what it says.
pub struct PlacedLine {
    pub font: &'static str,
    pub size: f32,
    pub x_mm: f32,
    pub baseline_mm: f32,
    pub text: String,
    pub color: Rgb,
}

pub fn render_pdf(
    template: &Template,
    data: &CertificateData,
    qr: &QrMatrix,
) -> Result<Vec<u8>, RenderError> {
    let mut lines = Vec::new();
    for block in &template.blocks {
        lines.extend(layout_block(block, data)?);
    }

    let mut doc = PdfDocument::new(&format!("Сертификат №{}", data.number));
    doc.metadata.info.creator = "certportal".into();
    doc.metadata.info.producer = "certportal".into();
    doc.metadata.info.subject = format!("S.{}.{}", data.number, data.points.value());

    let mut ops = Vec::new();
    if let Some(png) = &template.background_png {
        let image =
            RawImage::decode_from_bytes(png, &mut Vec::new()).map_err(RenderError::Background)?;
        let dpi = image.width as f32 * 25.4 / template.page_width;
        let id = XObjectId("Bg".into());
        doc.resources
            .xobjects
            .map
            .insert(id.clone(), XObject::Image(image));
        ops.push(Op::UseXobject {
            id,
            transform: XObjectTransform {
                dpi: Some(dpi),
                ..Default::default()
            },
        });
    }

    for frame in &template.frames {
        ops.push(Op::SetOutlineColor {
            col: color(frame.color),
        });
        ops.push(Op::SetOutlineThickness {
            pt: Pt(frame.thickness),
        });
        ops.push(Op::DrawRectangle {
            rectangle: rect(
                frame.x,
                template.page_height - frame.y - frame.height,
                frame.width,
                frame.height,
                PaintMode::Stroke,
            ),
        });
    }

    let mut used_fonts: Vec<&'static str> = lines.iter().map(|l| l.font).collect();
    used_fonts.sort_unstable();
    used_fonts.dedup();
    for name in &used_fonts {
        // Fixed ids (add_font would pick random ones) keep the output byte-identical.
        doc.resources
            .fonts
            .map
            .insert(font_id(name), PdfFont::new(parsed_font(name).clone()));
    }
    for line in &lines {
        ops.extend([
            Op::StartTextSection,
            Op::SetFont {
                font: PdfFontHandle::External(font_id(line.font)),
                size: Pt(line.size),
            },
            Op::SetFillColor {
                col: color(line.color),
            },
            Op::SetTextCursor {
                pos: Point::new(Mm(line.x_mm), Mm(template.page_height - line.baseline_mm)),
            },
            Op::ShowText {
                items: vec![TextItem::Text(line.text.clone())],
            },
            Op::EndTextSection,
        ]);
    }

    draw_qr(&mut ops, template, qr);

    let page = PdfPage::new(Mm(template.page_width), Mm(template.page_height), ops);
    doc.pages = vec![page];
    let opts = PdfSaveOptions {
        subset_fonts: true,
        optimize: false,
        ..Default::default()
    };
    // printpdf compresses at zlib's best level, which costs most of the render time; the default
    // level gives nearly the same size in a fraction of it.
    let mut pdf = doc.to_lopdf_document(&opts, &mut Vec::new());
    compress_streams(&mut pdf);
    let mut bytes = Vec::with_capacity(48 * 1024);
    pdf.save_to(&mut bytes)
        .map_err(|e| RenderError::Write(e.to_string()))?;
    make_id_deterministic(&mut bytes);
    Ok(bytes)
}

fn compress_streams(doc: &mut lopdf::Document) {
    use std::io::Write;
    for object in doc.objects.values_mut() {
        let lopdf::Object::Stream(stream) = object else {
            continue;
        };
        if !stream.allows_compression || stream.dict.has(b"Filter") {
            continue;
        }
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        if encoder.write_all(&stream.content).is_err() {
            continue;
        }
        if let Ok(compressed) = encoder.finish()
            && compressed.len() < stream.content.len()
        {
            stream.dict.set("Filter", "FlateDecode");
            stream.set_content(compressed);
        }
    }
}

fn font_id(name: &str) -> FontId {
    FontId(format!("F{}", name.replace('-', "")))
}

fn color(c: Rgb) -> Color {
    Color::Rgb(PdfRgb {
        r: c.0,
        g: c.1,
        b: c.2,
        icc_profile: None,
    })
}

fn rect(x_mm: f32, y_mm: f32, w_mm: f32, h_mm: f32, mode: PaintMode) -> Rect {
    Rect {
        x: Pt(x_mm * PT_PER_MM),
        y: Pt(y_mm * PT_PER_MM),
        width: Pt(w_mm * PT_PER_MM),
        height: Pt(h_mm * PT_PER_MM),
        mode: Some(mode),
        winding_order: Some(WindingOrder::NonZero),
    }
}

fn draw_qr(ops: &mut Vec<Op>, template: &Template, qr: &QrMatrix) {
    let q = template.qr;
    let modules = qr.width + 2 * QUIET_ZONE;
    let module = q.size / modules as f32;
    let top = template.page_height - q.y; // PDF y of the QR's top edge
    ops.push(Op::SetFillColor {
        col: color(Rgb(1.0, 1.0, 1.0)),
    });
    ops.push(Op::DrawRectangle {
        rectangle: rect(q.x, top - q.size, q.size, q.size, PaintMode::Fill),
    });
    ops.push(Op::SetFillColor {
        col: color(Rgb(0.0, 0.0, 0.0)),
    });
    for (row, start, len) in qr.dark_runs() {
        let x = q.x + (start + QUIET_ZONE) as f32 * module;
        let y = top - (row + QUIET_ZONE + 1) as f32 * module;
        ops.push(Op::DrawRectangle {
            rectangle: rect(x, y, len as f32 * module, module, PaintMode::Fill),
        });
    }
}

/// Fills a block's placeholders, then wraps and shrinks its text until it fits the block.
pub fn layout_block(
    block: &TextBlock,
    data: &CertificateData,
) -> Result<Vec<PlacedLine>, RenderError> {
    let font = &fonts()[block.font];
    let paragraphs: Vec<String> = block
        .lines
        .iter()
        .filter_map(|segments| {
            let has_value = segments.iter().any(|s| matches!(s, Segment::Value(_)));
            let text: String = segments
                .iter()
                .map(|s| match s {
                    Segment::Literal(l) => l.as_str(),
                    Segment::Value(p) => data.value(*p),
                })
                .collect();
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            // A line made only of an empty value (no middle name) disappears rather than leaving a gap.
            (!(has_value && text.is_empty())).then_some(text)
        })
        .collect();
    for p in &paragraphs {
        if let Some(c) = font.missing_char(p) {
            return Err(RenderError::MissingGlyph {
                character: c,
                font: block.font,
            });
        }
    }

    let width_pt = block.width * PT_PER_MM;
    let height_pt = block.height * PT_PER_MM;
    let mut size = block.size;
    let wrapped = loop {
        let lines: Vec<String> = paragraphs
            .iter()
            .flat_map(|p| wrap(font, p, size, width_pt))
            .collect();
        let needed = lines.len() as f32 * size * block.line_height;
        if needed <= height_pt || size <= FLOOR_SIZE {
            break lines;
        }
        // Below min_size the step gets coarser: long titles still end up inside the block.
        size = if size > block.min_size {
            (size - 0.5).max(block.min_size)
        } else {
            (size * 0.9).max(FLOOR_SIZE)
        };
    };

    let line_pt = size * block.line_height;
    let text_height_pt = wrapped.len() as f32 * line_pt;
    let top_pad_pt = ((height_pt - text_height_pt) / 2.0).max(0.0);
    Ok(wrapped
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let w = font.width(&text, size);
            let free = (width_pt - w).max(0.0);
            let offset_pt = match block.align {
                Align::Left => 0.0,
                Align::Center => free / 2.0,
                Align::Right => free,
            };
            // Baseline sits one ascender below the line's top, centring the leading around it.
            let line_top = top_pad_pt + i as f32 * line_pt + (line_pt - size) / 2.0;
            let baseline_pt = line_top + font.ascender * size;
            PlacedLine {
                font: block.font,
                size,
                x_mm: block.x + offset_pt / PT_PER_MM,
                baseline_mm: block.y + baseline_pt / PT_PER_MM,
                text,
                color: block.color,
            }
        })
        .collect())
}

/// Greedy word wrap; a word wider than the line is broken between characters.
fn wrap(font: &Font, text: &str, size: f32, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split(' ') {
        let candidate = if current.is_empty() {
            word.to_string()
        } else {
            format!("{current} {word}")
        };
        if font.width(&candidate, size) <= width {
            current = candidate;
            continue;
        }
        if !current.is_empty() {
            lines.push(std::mem::take(&mut current));
        }
        if font.width(word, size) <= width {
            current = word.to_string();
        } else {
            for c in word.chars() {
                let mut next = current.clone();
                next.push(c);
                if !current.is_empty() && font.width(&next, size) > width {
                    lines.push(std::mem::take(&mut current));
                    current.push(c);
                } else {
                    current = next;
                }
            }
        }
    }
    if !current.is_empty() || lines.is_empty() {
        lines.push(current);
    }
    lines
}

/// printpdf writes a random trailer `/ID`; replace it with a hash of the document so the same
/// input always gives the same bytes (its length is kept, so the xref offsets stay valid).
fn make_id_deterministic(bytes: &mut [u8]) {
    use sha2::{Digest, Sha256};
    let Some(pos) = find_last(bytes, b"/ID") else {
        return;
    };
    let digest = hex::encode(Sha256::digest(&bytes[..pos]));
    let mut i = pos;
    let mut replaced = 0;
    while i < bytes.len() && replaced < 2 {
        if bytes[i] == b'(' {
            let start = i + 1;
            let Some(len) = bytes[start..].iter().position(|b| *b == b')') else {
                return;
            };
            for (k, b) in bytes[start..start + len].iter_mut().enumerate() {
                *b = digest.as_bytes()[k % digest.len()];
            }
            replaced += 1;
            i = start + len;
        }
        i += 1;
    }
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

impl CertificateData {
    fn value(&self, p: Placeholder) -> &str {
        match p {
            Placeholder::Number => &self.number_text,
            Placeholder::LastName => &self.last_name,
            Placeholder::FirstName => &self.first_name,
            Placeholder::SecondName => &self.second_name,
            Placeholder::EventTitle => &self.event_title,
            Placeholder::Points => self.points.text(),
        }
    }
}
