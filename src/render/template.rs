//! Certificate templates as data: a folder `<name>/` holding `layout.toml` (and optionally a
//! background image). Shipped templates are compiled in; `CERTPORTAL_TEMPLATES_DIR` adds more or
//! overrides them by name, so a new certificate design needs no code change.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::fonts;

/// Values a template can print. Every name has the CRM-style spelling used in the office's
/// document-generator template and a readable alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    Number,
    LastName,
    FirstName,
    SecondName,
    EventTitle,
    Points,
}

impl Placeholder {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "Id" | "Number" => Self::Number,
            "ContactLastName" | "LastName" => Self::LastName,
            "ContactName" | "FirstName" => Self::FirstName,
            "ContactSecondName" | "SecondName" | "MiddleName" => Self::SecondName,
            "UfCrm20EventUfCrm191775713913090" | "EventTitle" => Self::EventTitle,
            "UfCrm20EventUfCrm19Ball" | "Points" => Self::Points,
            _ => return None,
        })
    }
}

/// A piece of block text: literal or a value to fill in.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Literal(String),
    Value(Placeholder),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Align {
    Left,
    Center,
    Right,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rgb(pub f32, pub f32, pub f32);

#[derive(Debug, Clone)]
pub struct TextBlock {
    /// One entry per template line; a line may wrap into several on the page.
    pub lines: Vec<Vec<Segment>>,
    pub font: &'static str,
    pub size: f32,
    pub min_size: f32,
    pub line_height: f32,
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    pub align: Align,
    pub color: Rgb,
}

#[derive(Debug, Clone)]
pub struct Frame {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    pub thickness: f32,
    pub color: Rgb,
}

#[derive(Debug, Clone, Copy)]
pub struct QrPlacement {
    pub x: f32,
    pub y: f32,
    pub size: f32,
}

/// A parsed, checked template. Lengths are millimetres from the page's top-left corner.
#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    pub page_width: f32,
    pub page_height: f32,
    pub blocks: Vec<TextBlock>,
    pub frames: Vec<Frame>,
    pub qr: QrPlacement,
    pub background_png: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct TemplateError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayout {
    page: RawPage,
    #[serde(default, rename = "block")]
    blocks: Vec<RawBlock>,
    #[serde(default, rename = "frame")]
    frames: Vec<RawFrame>,
    qr: RawQr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPage {
    #[serde(default = "default_size")]
    size: String,
    #[serde(default = "default_orientation")]
    orientation: String,
    background: Option<String>,
}

fn default_size() -> String {
    "A4".into()
}
fn default_orientation() -> String {
    "portrait".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlock {
    text: String,
    x: f32,
    y: f32,
    width: f32,
    height: f32,
    #[serde(default = "default_font")]
    font: String,
    size: f32,
    min_size: Option<f32>,
    #[serde(default = "default_line_height")]
    line_height: f32,
    #[serde(default = "default_align")]
    align: Align,
    #[serde(default = "default_color")]
    color: String,
}

fn default_font() -> String {
    "serif".into()
}
fn default_line_height() -> f32 {
    1.2
}
fn default_align() -> Align {
    Align::Center
}
fn default_color() -> String {
    "#000000".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFrame {
    x: f32,
    y: f32,
    width: f32,
    height: f32,
    #[serde(default = "default_thickness")]
    thickness: f32,
    #[serde(default = "default_color")]
    color: String,
}

fn default_thickness() -> f32 {
    1.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQr {
    x: f32,
    y: f32,
    size: f32,
}

impl Template {
    /// Parses `layout.toml` text. `file` names it in errors; `background` is the image the layout
    /// refers to, looked up by the caller.
    pub fn parse(
        name: &str,
        file: &str,
        source: &str,
        load_background: impl FnOnce(&str) -> Option<Vec<u8>>,
    ) -> Result<Self, TemplateError> {
        let err = |line: usize, message: String| TemplateError {
            file: file.to_string(),
            line,
            message,
        };
        let raw: RawLayout = toml::from_str(source).map_err(|e| {
            let line = e
                .span()
                .map_or(1, |span| line_of_offset(source, span.start));
            err(line, e.message().to_string())
        })?;

        let (w, h) = match raw.page.size.to_ascii_uppercase().as_str() {
            "A4" => (210.0, 297.0),
            "A5" => (148.0, 210.0),
            "A3" => (297.0, 420.0),
            "LETTER" => (215.9, 279.4),
            other => {
                return Err(err(
                    line_of(source, "size", 0),
                    format!("unknown page size {other:?} (A3, A4, A5 or Letter)"),
                ));
            }
        };
        let (page_width, page_height) = match raw.page.orientation.as_str() {
            "portrait" => (w, h),
            "landscape" => (h, w),
            other => {
                return Err(err(
                    line_of(source, "orientation", 0),
                    format!("orientation must be \"portrait\" or \"landscape\", not {other:?}"),
                ));
            }
        };
        let inside = |x: f32, y: f32, bw: f32, bh: f32| {
            x >= 0.0
                && y >= 0.0
                && bw > 0.0
                && bh > 0.0
                && x + bw <= page_width + 0.01
                && y + bh <= page_height + 0.01
        };

        let mut blocks = Vec::with_capacity(raw.blocks.len());
        for (i, b) in raw.blocks.into_iter().enumerate() {
            let line = line_of(source, "[[block]]", i);
            let font = fonts::font_names().find(|n| *n == b.font).ok_or_else(|| {
                err(
                    line,
                    format!(
                        "unknown font {:?}; available: {}",
                        b.font,
                        fonts::font_names().collect::<Vec<_>>().join(", ")
                    ),
                )
            })?;
            if !inside(b.x, b.y, b.width, b.height) {
                return Err(err(line, "block lies outside the page".into()));
            }
            if !(b.size > 0.0 && b.size <= 200.0) || b.line_height < 0.5 {
                return Err(err(line, "font size or line height out of range".into()));
            }
            let lines = b
                .text
                .lines()
                .map(parse_segments)
                .collect::<Result<Vec<_>, String>>()
                .map_err(|message| {
                    let at = message.split('{').nth(1).map_or(line, |rest| {
                        let needle = format!("{{{}", rest.split('}').next().unwrap_or(""));
                        source
                            .find(&needle)
                            .map_or(line, |o| line_of_offset(source, o))
                    });
                    err(at, message)
                })?;
            if let Some(c) = b.text.chars().find(|c| {
                !c.is_control() && fonts::fonts()[font].missing_char(&c.to_string()).is_some()
            }) {
                return Err(err(line, format!("font {font} has no glyph for {c:?}")));
            }
            blocks.push(TextBlock {
                lines,
                font,
                size: b.size,
                min_size: b.min_size.unwrap_or(b.size * 0.5).min(b.size),
                line_height: b.line_height,
                x: b.x,
                y: b.y,
                width: b.width,
                height: b.height,
                align: b.align,
                color: parse_color(&b.color).map_err(|m| err(line, m))?,
            });
        }

        let mut frames = Vec::new();
        for (i, f) in raw.frames.into_iter().enumerate() {
            let line = line_of(source, "[[frame]]", i);
            if !inside(f.x, f.y, f.width, f.height) {
                return Err(err(line, "frame lies outside the page".into()));
            }
            frames.push(Frame {
                x: f.x,
                y: f.y,
                width: f.width,
                height: f.height,
                thickness: f.thickness,
                color: parse_color(&f.color).map_err(|m| err(line, m))?,
            });
        }

        let qr_line = line_of(source, "[qr]", 0);
        if !inside(raw.qr.x, raw.qr.y, raw.qr.size, raw.qr.size) || raw.qr.size < 15.0 {
            return Err(err(
                qr_line,
                "QR must lie inside the page and be at least 15 mm wide".into(),
            ));
        }
        let background_png = match raw.page.background {
            None => None,
            Some(path) => Some(load_background(&path).ok_or_else(|| {
                err(
                    line_of(source, "background", 0),
                    format!("background image {path:?} not found beside the layout"),
                )
            })?),
        };

        Ok(Self {
            name: name.to_string(),
            page_width,
            page_height,
            blocks,
            frames,
            qr: QrPlacement {
                x: raw.qr.x,
                y: raw.qr.y,
                size: raw.qr.size,
            },
            background_png,
        })
    }
}

fn parse_segments(line: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut rest = line;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            segments.push(Segment::Literal(rest[..open].to_string()));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed placeholder in {line:?}"))?;
        let name = &after[..close];
        let value = Placeholder::from_name(name)
            .ok_or_else(|| format!("unknown placeholder {{{name}}}"))?;
        segments.push(Segment::Value(value));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        segments.push(Segment::Literal(rest.to_string()));
    }
    Ok(segments)
}

fn parse_color(s: &str) -> Result<Rgb, String> {
    let hex = s.strip_prefix('#').unwrap_or(s);
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("colour {s:?} is not of the form #rrggbb"));
    }
    let channel = |i: usize| f32::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0)) / 255.0;
    Ok(Rgb(channel(0), channel(2), channel(4)))
}

fn line_of_offset(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].matches('\n').count() + 1
}

/// Line of the `nth` occurrence of `needle`, for errors about the nth block or frame.
fn line_of(source: &str, needle: &str, nth: usize) -> usize {
    source
        .match_indices(needle)
        .nth(nth)
        .map_or(1, |(o, _)| line_of_offset(source, o))
}

/// Every template known to this process, by name.
#[derive(Debug, Clone, Default)]
pub struct TemplateSet {
    templates: BTreeMap<String, Template>,
}

include!(concat!(env!("OUT_DIR"), "/shipped_templates.rs"));

impl TemplateSet {
    /// The shipped templates, then those in `extra_dir` (which win by name).
    pub fn load(extra_dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut templates = BTreeMap::new();
        for (name, files) in SHIPPED {
            let layout = files
                .iter()
                .find(|(f, _)| *f == "layout.toml")
                .map(|(_, bytes)| std::str::from_utf8(bytes).unwrap_or_default())
                .unwrap_or_default();
            let file = format!("templates/certificates/{name}/layout.toml");
            let t = Template::parse(name, &file, layout, |bg| {
                files
                    .iter()
                    .find(|(f, _)| *f == bg)
                    .map(|(_, b)| b.to_vec())
            })?;
            templates.insert(name.to_string(), t);
        }
        if let Some(dir) = extra_dir {
            let entries = std::fs::read_dir(dir).map_err(|e| TemplateError {
                file: dir.display().to_string(),
                line: 0,
                message: format!("cannot read the templates folder: {e}"),
            })?;
            let mut dirs: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
            dirs.sort();
            for path in dirs.into_iter().filter(|p| p.join("layout.toml").is_file()) {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let layout_path = path.join("layout.toml");
                let source = std::fs::read_to_string(&layout_path).map_err(|e| TemplateError {
                    file: layout_path.display().to_string(),
                    line: 0,
                    message: e.to_string(),
                })?;
                let t =
                    Template::parse(&name, &layout_path.display().to_string(), &source, |bg| {
                        std::fs::read(path.join(bg)).ok()
                    })?;
                templates.insert(name, t);
            }
        }
        Ok(Self { templates })
    }

    pub fn get(&self, name: &str) -> Option<&Template> {
        self.templates.get(name.trim())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.templates.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r##"
[page]
size = "A4"

[[block]]
text = "№{Id} {Number}"
x = 10
y = 10
width = 100
height = 20
size = 12

[qr]
x = 150
y = 250
size = 30
"##;

    fn parse(src: &str) -> Result<Template, TemplateError> {
        Template::parse("t", "t/layout.toml", src, |_| None)
    }

    #[test]
    fn a_minimal_layout_parses_with_aliases() {
        let t = parse(MINIMAL).unwrap();
        assert_eq!(
            t.blocks[0].lines[0],
            vec![
                Segment::Literal("№".into()),
                Segment::Value(Placeholder::Number),
                Segment::Literal(" ".into()),
                Segment::Value(Placeholder::Number)
            ]
        );
    }

    #[test]
    fn an_unknown_placeholder_is_rejected_with_file_and_line() {
        let src = MINIMAL.replace("{Number}", "{Nonsense}");
        let e = parse(&src).unwrap_err();
        assert_eq!(e.line, 6, "{e}");
        assert!(e.to_string().starts_with("t/layout.toml:6:"), "{e}");
        assert!(e.to_string().contains("{Nonsense}"), "{e}");
    }

    #[test]
    fn broken_layouts_are_rejected_with_file_and_line() {
        let cases = [
            (MINIMAL.replace("x = 150", "x = 200"), 13, "inside the page"),
            (
                MINIMAL.replace("size = 12", "size = 12\ncolour = 1"),
                12,
                "unknown field",
            ),
            (
                MINIMAL.replace("width = 100", "width = \"wide\""),
                9,
                "invalid type",
            ),
            (
                MINIMAL.replace("size = 12", "size = 12\nfont = \"comic\""),
                5,
                "unknown font",
            ),
            (MINIMAL.replace("x = 10", "x = 190"), 5, "outside the page"),
        ];
        for (src, line, text) in cases {
            let e = parse(&src).unwrap_err();
            assert_eq!(e.line, line, "{e}");
            assert!(e.to_string().contains(text), "{e}");
        }
    }

    #[test]
    fn the_shipped_templates_load() {
        let set = TemplateSet::load(None).unwrap();
        assert!(set.get("2026-Сертификат").is_some());
    }

    #[test]
    fn a_folder_adds_and_overrides_templates_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("Другой")).unwrap();
        std::fs::write(dir.path().join("Другой/layout.toml"), MINIMAL).unwrap();
        let set = TemplateSet::load(Some(dir.path())).unwrap();
        assert!(set.get("Другой").is_some());
        assert!(set.get("2026-Сертификат").is_some());

        std::fs::write(dir.path().join("Другой/layout.toml"), "[page]\nsize = 3").unwrap();
        let e = TemplateSet::load(Some(dir.path())).unwrap_err();
        assert!(e.file.ends_with("Другой/layout.toml"), "{e}");
    }
}
