use std::fmt;

/// Points as printed on a certificate: the text shown ("7 баллов") and the number inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Points {
    value: u32,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointsError {
    #[error("поле баллов пустое")]
    Empty,
    #[error("в тексте баллов «{0}» нет числа")]
    NoNumber(String),
}

impl Points {
    /// Reads the printed text; the first run of ASCII digits is the value ("7 баллов" → 7).
    /// A bare number is printed with its Russian word ("10" → "10 баллов").
    pub fn parse(text: &str) -> Result<Self, PointsError> {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            return Err(PointsError::Empty);
        }
        let digits: String = text
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(|c| c.is_ascii_digit())
            .collect();
        let value: u32 = digits
            .parse()
            .map_err(|_| PointsError::NoNumber(text.clone()))?;
        let text = if text.bytes().all(|b| b.is_ascii_digit()) {
            format!("{value} {}", points_word(value))
        } else {
            text
        };
        Ok(Self { value, text })
    }

    pub fn from_value(value: u32) -> Self {
        Self {
            value,
            text: format!("{value} {}", points_word(value)),
        }
    }

    pub fn value(&self) -> u32 {
        self.value
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Points {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The Russian word for "points" agreeing with `n`: 1 балл, 2 балла, 5 баллов, 11 баллов, 21 балл.
pub fn points_word(n: u32) -> &'static str {
    let last_two = n % 100;
    if (11..=14).contains(&last_two) {
        return "баллов";
    }
    match n % 10 {
        1 => "балл",
        2..=4 => "балла",
        _ => "баллов",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_number_is_read_from_the_printed_text() {
        for (text, value, shown) in [
            ("7 баллов", 7, "7 баллов"),
            ("  1   балл ", 1, "1 балл"),
            ("10", 10, "10 баллов"),
            ("Баллы: 15", 15, "Баллы: 15"),
        ] {
            let p = Points::parse(text).unwrap();
            assert_eq!((p.value(), p.text()), (value, shown), "{text}");
        }
    }

    #[test]
    fn text_without_a_number_is_rejected() {
        assert_eq!(
            Points::parse("много баллов"),
            Err(PointsError::NoNumber("много баллов".into()))
        );
        assert_eq!(Points::parse("  "), Err(PointsError::Empty));
    }

    #[test]
    fn russian_plural_forms_agree_with_the_number() {
        for (n, word) in [
            (0, "баллов"),
            (1, "балл"),
            (2, "балла"),
            (4, "балла"),
            (5, "баллов"),
            (11, "баллов"),
            (12, "баллов"),
            (14, "баллов"),
            (21, "балл"),
            (22, "балла"),
            (25, "баллов"),
            (101, "балл"),
            (111, "баллов"),
        ] {
            assert_eq!(points_word(n), word, "{n}");
        }
    }
}
