use std::fmt;

/// An e-mail address that passed a conservative syntax check (one `@`, a dotted domain, no spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientEmail(String);

impl RecipientEmail {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        let valid = s.len() <= 254
            && s.parse::<lettre::Address>().is_ok()
            && s.rsplit_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            });
        if valid {
            Ok(Self(s.to_string()))
        } else {
            Err(format!("адрес «{s}» не похож на e-mail"))
        }
    }
}

impl AsRef<str> for RecipientEmail {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecipientEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Chooses the contact's last added e-mail: multi-field ids grow with each addition, so the entry
/// with the highest id wins whatever order the portal lists them in. Entries with an empty value
/// are skipped; `Ok(None)` means the contact has no e-mail at all, `Err` that the newest is invalid.
pub fn pick_last_added<'a>(
    entries: impl IntoIterator<Item = (u64, &'a str)>,
) -> Result<Option<RecipientEmail>, String> {
    let newest = entries
        .into_iter()
        .filter(|(_, value)| !value.trim().is_empty())
        .max_by_key(|(id, _)| *id);
    match newest {
        None => Ok(None),
        Some((_, value)) => RecipientEmail::parse(value).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_id_is_the_last_added_whatever_the_order() {
        let picked = pick_last_added([(159, "new@example.org"), (158, "old@example.org")]).unwrap();
        assert_eq!(picked.unwrap().as_ref(), "new@example.org");
        let picked = pick_last_added([(7, " a@example.org "), (12, "b@example.org")]).unwrap();
        assert_eq!(picked.unwrap().as_ref(), "b@example.org");
    }

    #[test]
    fn empty_values_do_not_count_as_an_address() {
        assert_eq!(pick_last_added([(3, "  "), (1, "")]), Ok(None));
        let picked = pick_last_added([(3, ""), (1, "x@example.org")]).unwrap();
        assert_eq!(picked.unwrap().as_ref(), "x@example.org");
    }

    #[test]
    fn invalid_addresses_are_rejected() {
        for bad in [
            "plainaddress",
            "a@b",
            "a b@example.org",
            "@example.org",
            "a@.org",
            "a@x..org",
        ] {
            assert!(RecipientEmail::parse(bad).is_err(), "{bad}");
        }
    }
}
