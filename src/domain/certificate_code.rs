use std::fmt;
use std::str::FromStr;

/// `S.<participant id>.<points>`, the payload of a certificate's QR code (e.g. `S.100500.10`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertificateCode {
    participant_id: u64,
    points: u32,
}

/// Why a code was rejected. The messages are shown to the public, hence Russian.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("Код пуст: введите код вида S.100500.10")]
    Empty,
    #[error("Неизвестный тип документа «{0}»: код сертификата начинается с буквы S")]
    UnknownType(String),
    #[error("Код должен иметь вид S.<номер>.<баллы>, например S.100500.10")]
    Shape,
    #[error("Номер сертификата должен состоять из цифр без ведущих нулей")]
    BadNumber,
    #[error("Баллы в коде должны быть целым числом")]
    BadPoints,
}

impl CertificateCode {
    pub fn new(participant_id: u64, points: u32) -> Self {
        assert!(participant_id > 0, "participant ids start at 1");
        Self {
            participant_id,
            points,
        }
    }

    pub fn participant_id(&self) -> u64 {
        self.participant_id
    }

    pub fn points(&self) -> u32 {
        self.points
    }

    /// Parses a code typed by a person or read from a QR: surrounding spaces are ignored and a URL that
    /// carries the code (`…/verify?code=S.1.2` or `…/S.1.2`) is accepted; anything else is strict.
    pub fn parse(input: &str) -> Result<Self, CodeError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(CodeError::Empty);
        }
        if let Some(inner) = code_inside_url(trimmed) {
            return Self::parse_bare(&inner);
        }
        Self::parse_bare(trimmed)
    }

    fn parse_bare(s: &str) -> Result<Self, CodeError> {
        let mut parts = s.split('.');
        let (Some(kind), Some(number), Some(points), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(if s.contains('.') {
                CodeError::Shape
            } else {
                match s.chars().next() {
                    Some(c) if c.is_alphabetic() && s.chars().count() == 1 => {
                        CodeError::UnknownType(c.to_string())
                    }
                    _ => CodeError::Shape,
                }
            });
        };
        match kind {
            "S" | "s" => {}
            other if other.chars().count() == 1 && other.chars().all(char::is_alphabetic) => {
                return Err(CodeError::UnknownType(other.to_string()));
            }
            _ => return Err(CodeError::Shape),
        }
        if number.is_empty()
            || !number.bytes().all(|b| b.is_ascii_digit())
            || number.starts_with('0')
        {
            return Err(CodeError::BadNumber);
        }
        let participant_id: u64 = number.parse().map_err(|_| CodeError::BadNumber)?;
        if points.is_empty() || !points.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CodeError::BadPoints);
        }
        let points: u32 = points.parse().map_err(|_| CodeError::BadPoints)?;
        Ok(Self {
            participant_id,
            points,
        })
    }
}

/// Pulls a code out of a URL: the `code` query parameter, else the last path segment.
fn code_inside_url(s: &str) -> Option<String> {
    if !(s.starts_with("http://") || s.starts_with("https://")) {
        return None;
    }
    let url = url::Url::parse(s).ok()?;
    if let Some((_, v)) = url.query_pairs().find(|(k, _)| k == "code") {
        return Some(v.trim().to_string());
    }
    let last = url.path_segments()?.rev().find(|seg| !seg.is_empty())?;
    let decoded = percent_decode(last);
    Some(decoded)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl fmt::Display for CertificateCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S.{}.{}", self.participant_id, self.points)
    }
}

impl FromStr for CertificateCode {
    type Err = CodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_seed_example() {
        let code = CertificateCode::parse("S.100500.10").unwrap();
        assert_eq!(code.participant_id(), 100500);
        assert_eq!(code.points(), 10);
        assert_eq!(code.to_string(), "S.100500.10");
    }

    #[test]
    fn tolerates_spaces_lower_case_and_urls() {
        for input in [
            "  S.100500.10 \n",
            "s.100500.10",
            "https://cert.example.org/verify?code=S.100500.10",
            "https://cert.example.org/verify/S.100500.10",
            "https://cert.example.org/c/S.100500.10/",
        ] {
            let code = CertificateCode::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(code, CertificateCode::new(100500, 10), "{input}");
        }
    }

    #[test]
    fn rejects_malformed_codes_with_a_reason() {
        let cases = [
            ("", CodeError::Empty),
            ("   ", CodeError::Empty),
            ("D.100.5", CodeError::UnknownType("D".into())),
            ("S.0100.5", CodeError::BadNumber),
            ("S.0.5", CodeError::BadNumber),
            ("S..5", CodeError::BadNumber),
            ("S.12a.5", CodeError::BadNumber),
            ("S.١٢.5", CodeError::BadNumber),
            ("S.12.", CodeError::BadPoints),
            ("S.12.-1", CodeError::BadPoints),
            ("S.12.99999999999", CodeError::BadPoints),
            ("S.99999999999999999999999.1", CodeError::BadNumber),
            ("S.12", CodeError::Shape),
            ("S.1.2.3", CodeError::Shape),
            ("SS.1.2", CodeError::Shape),
            ("hello", CodeError::Shape),
        ];
        for (input, expected) in cases {
            assert_eq!(CertificateCode::parse(input), Err(expected), "{input:?}");
        }
    }

    proptest! {
        #[test]
        fn printing_then_parsing_round_trips(id in 1u64.., points in any::<u32>()) {
            let code = CertificateCode::new(id, points);
            prop_assert_eq!(CertificateCode::parse(&code.to_string()), Ok(code));
        }

        #[test]
        fn parsing_never_panics(input in any::<String>()) {
            let _ = CertificateCode::parse(&input);
        }

        #[test]
        fn parsing_never_panics_on_code_like_input(input in "[Ss .0-9a-z/:?=%]{0,40}") {
            let _ = CertificateCode::parse(&input);
        }
    }
}
