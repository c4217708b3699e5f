//! The fonts certificates are set in. They are compiled into the binary so a certificate renders the
//! same on every machine; each is parsed once per process.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// One embedded face: the bytes for the PDF and ttf-parser metrics for measuring text.
pub struct Font {
    pub name: &'static str,
    pub bytes: &'static [u8],
    face: ttf_parser::Face<'static>,
    units_per_em: f32,
    pub ascender: f32,
}

/// PT Serif (ParaType Free Font License, static/fonts/LICENSE-ParaType.txt).
const EMBEDDED: [(&str, &[u8]); 2] = [
    ("serif", include_bytes!("../../static/fonts/PTF55F.ttf")),
    (
        "serif-bold",
        include_bytes!("../../static/fonts/PTF75F.ttf"),
    ),
];

/// Names a layout file may use in `font = "…"`.
pub fn font_names() -> impl Iterator<Item = &'static str> {
    EMBEDDED.iter().map(|(name, _)| *name)
}

pub fn fonts() -> &'static BTreeMap<&'static str, Font> {
    static FONTS: OnceLock<BTreeMap<&'static str, Font>> = OnceLock::new();
    FONTS.get_or_init(|| {
        EMBEDDED
            .iter()
            .map(|(name, bytes)| {
                let face = ttf_parser::Face::parse(bytes, 0).expect("embedded font parses");
                let units_per_em = f32::from(face.units_per_em());
                let font = Font {
                    name,
                    bytes,
                    ascender: f32::from(face.ascender()) / units_per_em,
                    face,
                    units_per_em,
                };
                (*name, font)
            })
            .collect()
    })
}

impl Font {
    /// Width of `text` in points at `size`. printpdf maps one char to one glyph without kerning,
    /// so summing advances gives exactly the width it will draw.
    pub fn width(&self, text: &str, size: f32) -> f32 {
        let units: u32 = text
            .chars()
            .map(|c| {
                self.face
                    .glyph_index(c)
                    .and_then(|g| self.face.glyph_hor_advance(g))
                    .map_or(0, u32::from)
            })
            .sum();
        units as f32 * size / self.units_per_em
    }

    /// The first character the font cannot draw, if any (it would silently become a blank box).
    pub fn missing_char(&self, text: &str) -> Option<char> {
        text.chars()
            .find(|c| !c.is_control() && self.face.glyph_index(*c).is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_font_covers_the_template_alphabet() {
        let alphabet =
            "АБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯабвгдеёжзийклмнопрстуфхцчшщъыьэюя№«»—0123456789.,()";
        for font in fonts().values() {
            assert_eq!(font.missing_char(alphabet), None, "{}", font.name);
        }
    }

    #[test]
    fn width_grows_with_text_and_size() {
        let font = &fonts()["serif"];
        let short = font.width("Иванов", 12.0);
        assert!(short > 0.0);
        assert!(font.width("Иванов Иван", 12.0) > short);
        assert!((font.width("Иванов", 24.0) - 2.0 * short).abs() < 0.01);
    }

    #[test]
    fn characters_outside_the_font_are_reported() {
        assert_eq!(fonts()["serif"].missing_char("Привет 😀"), Some('😀'));
    }
}
