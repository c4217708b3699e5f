//! Configuration from the environment, optionally layered over a TOML file (`CERTPORTAL_CONFIG` or
//! `--config`) whose keys are the same variable names. A bad value stops start-up with a message
//! naming the variable; secrets are `SecretString`s and never printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: {message}")]
    Invalid { var: &'static str, message: String },
    #[error("{0} is required for this command")]
    Missing(&'static str),
    #[error("cannot read the configuration file {path}: {message}")]
    File { path: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// CRM field codes, as their original UPPER_CASE names (requests use `useOriginalUfNames=Y`).
#[derive(Debug, Clone)]
pub struct FieldCodes {
    pub participant_event: String,
    pub participant_qr: String,
    pub participant_achievement: String,
    pub event_template: String,
    pub event_title: String,
    pub event_points: String,
    pub event_letter: String,
}

/// Stages given as a STATUS_ID (contains ':') or as a name resolved with `crm.status.list`.
#[derive(Debug, Clone)]
pub struct StageNames {
    pub generate: String,
    pub sent: String,
    pub problem: String,
}

#[derive(Debug, Clone)]
pub struct BitrixSettings {
    pub webhook_url: Option<SecretString>,
    pub app_token: Option<SecretString>,
    pub robot_key: Option<SecretString>,
    pub participant_type_id: Option<u32>,
    pub event_type_id: Option<u32>,
    pub rate: f64,
    pub burst: u32,
    pub timeout: Duration,
    pub fields: FieldCodes,
    pub stages: StageNames,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: String,
    pub database_url: SecretString,
    pub public_base_url: Option<url::Url>,
    pub log_format: LogFormat,
    pub templates_dir: Option<PathBuf>,
    pub bitrix: BitrixSettings,
    pub poll_interval: Duration,
    pub smtp_url: Option<SecretString>,
    pub mail_from: Option<String>,
    pub mail_subject: String,
    pub mail_rate: f64,
    pub admin_login: Option<String>,
    pub admin_password: Option<SecretString>,
    pub metrics_token: Option<SecretString>,
    pub max_attempts: u32,
    pub workers: usize,
    pub job_lease: Duration,
    pub retry_base: Duration,
    pub batch_size: usize,
    pub verify_cache_ttl: Duration,
    pub verify_share: f64,
    pub verify_full_name: bool,
    pub verify_per_minute: f64,
    pub verify_burst: u32,
    pub trust_forwarded: bool,
}

pub const DEFAULT_SUBJECT: &str = "Сертификат участника мероприятия «{event}»";

/// Where values come from: the process environment over an optional file.
pub struct Source {
    values: BTreeMap<String, String>,
}

impl Source {
    /// The process environment over the file named by `file` or `CERTPORTAL_CONFIG`.
    pub fn from_env(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env.get("CERTPORTAL_CONFIG").map(PathBuf::from));
        let mut values = match file {
            Some(path) => read_toml(&path)?,
            None => BTreeMap::new(),
        };
        values.extend(env);
        Ok(Self { values })
    }

    pub fn from_map(values: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            values: values.into_iter().collect(),
        }
    }

    fn get(&self, var: &str) -> Option<&str> {
        self.values
            .get(var)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn string(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or(default).to_string()
    }

    fn secret(&self, var: &str) -> Option<SecretString> {
        self.get(var).map(|v| SecretString::from(v.to_string()))
    }

    fn parsed<T: std::str::FromStr>(
        &self,
        var: &'static str,
        default: T,
        expect: &str,
    ) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
                var,
                message: format!("expected {expect}, got {v:?}"),
            }),
        }
    }
}

fn read_toml(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let file_err = |message: String| ConfigError::File {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| file_err(e.to_string()))?;
    table
        .into_iter()
        .map(|(k, v)| {
            let value = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => return Err(file_err(format!("{k}: unsupported value {other}"))),
            };
            Ok((k.to_ascii_uppercase(), value))
        })
        .collect()
}

impl Settings {
    pub fn load(src: &Source) -> Result<Self, ConfigError> {
        let bind = src.string("CERTPORTAL_BIND", "127.0.0.1:8080");
        // A host name (localhost:8080) is as good as an address; the port must be there.
        let valid = bind.parse::<SocketAddr>().is_ok()
            || bind
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(ConfigError::Invalid {
                var: "CERTPORTAL_BIND",
                message: format!("expected host:port such as 127.0.0.1:8080, got {bind:?}"),
            });
        }
        let database_url = src.string("DATABASE_URL", "sqlite://certportal.db");
        if !(database_url.starts_with("sqlite:") || database_url.starts_with("postgres")) {
            return Err(ConfigError::Invalid {
                var: "DATABASE_URL",
                message: "expected sqlite://path, sqlite:path or postgres://…".into(),
            });
        }
        let public_base_url = match src.get("PUBLIC_BASE_URL") {
            None => None,
            Some(v) => Some(
                url::Url::parse(v)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| ConfigError::Invalid {
                        var: "PUBLIC_BASE_URL",
                        message: format!("expected an http(s) URL, got {v:?}"),
                    })?,
            ),
        };
        let log_format = match src.get("LOG_FORMAT").unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::Invalid {
                    var: "LOG_FORMAT",
                    message: format!("expected text or json, got {other:?}"),
                });
            }
        };
        let webhook_url = src.secret("BITRIX_WEBHOOK_URL");
        if let Some(url) = &webhook_url {
            let ok = url::Url::parse(url.expose_secret())
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                // Never echo the value: it holds the webhook secret.
                return Err(ConfigError::Invalid {
                    var: "BITRIX_WEBHOOK_URL",
                    message: "expected https://<portal>/rest/<user>/<secret>/".into(),
                });
            }
        }
        let type_id = |var: &'static str| -> Result<Option<u32>, ConfigError> {
            match src.get(var) {
                None => Ok(None),
                Some(v) => v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 128)
                    .map(Some)
                    .ok_or_else(|| ConfigError::Invalid {
                        var,
                        message: format!(
                            "expected the smart process entityTypeId (a number ≥ 128), got {v:?}"
                        ),
                    }),
            }
        };
        let rate: f64 = src.parsed("BITRIX_RATE", 2.0, "requests per second")?;
        if !(rate > 0.0 && rate <= 1000.0) {
            return Err(ConfigError::Invalid {
                var: "BITRIX_RATE",
                message: "must be above 0".into(),
            });
        }
        let burst: u32 = src.parsed("BITRIX_BURST", 50, "a whole number")?;
        if burst == 0 {
            return Err(ConfigError::Invalid {
                var: "BITRIX_BURST",
                message: "must be at least 1".into(),
            });
        }
        let smtp_url = src.secret("SMTP_URL");
        if let Some(u) = &smtp_url {
            let ok = url::Url::parse(u.expose_secret())
                .is_ok_and(|u| matches!(u.scheme(), "smtp" | "smtps") && u.host().is_some());
            if !ok {
                return Err(ConfigError::Invalid {
                    var: "SMTP_URL",
                    message: "expected smtp://host:port or smtps://user:pass@host:465".into(),
                });
            }
        }
        let mail_from = src.get("MAIL_FROM").map(str::to_string);
        if let Some(from) = &mail_from {
            from.parse::<lettre::message::Mailbox>()
                .map_err(|e| ConfigError::Invalid {
                    var: "MAIL_FROM",
                    message: format!("expected addr@host or Name <addr@host>: {e}"),
                })?;
        }
        let verify_share: f64 = src.parsed("VERIFY_BITRIX_SHARE", 0.5, "a fraction")?;
        if !(0.0..=1.0).contains(&verify_share) {
            return Err(ConfigError::Invalid {
                var: "VERIFY_BITRIX_SHARE",
                message: "must be between 0 and 1".into(),
            });
        }
        Ok(Self {
            bind,
            database_url: SecretString::from(database_url),
            public_base_url,
            log_format,
            templates_dir: src.get("CERTPORTAL_TEMPLATES_DIR").map(PathBuf::from),
            bitrix: BitrixSettings {
                webhook_url,
                app_token: src.secret("BITRIX_APP_TOKEN"),
                robot_key: src.secret("BITRIX_ROBOT_KEY"),
                participant_type_id: type_id("BITRIX_PARTICIPANT_TYPE_ID")?,
                event_type_id: type_id("BITRIX_EVENT_TYPE_ID")?,
                rate,
                burst,
                timeout: Duration::from_secs(src.parsed("BITRIX_TIMEOUT_SECS", 30, "seconds")?),
                fields: FieldCodes {
                    participant_event: src
                        .string("BITRIX_FIELD_PARTICIPANT_EVENT", "UF_CRM_20_EVENT"),
                    participant_qr: src.string("BITRIX_FIELD_PARTICIPANT_QR", "UF_CRM_20_QR"),
                    participant_achievement: src.string(
                        "BITRIX_FIELD_PARTICIPANT_ACHIEVEMENT",
                        "UF_CRM_20_ACHIEVEMENT",
                    ),
                    event_template: src.string("BITRIX_FIELD_EVENT_TEMPLATE", "UF_CRM_19_TEMPLATE"),
                    event_title: src.string("BITRIX_FIELD_EVENT_TITLE", "UF_CRM_19_1775713913090"),
                    event_points: src.string("BITRIX_FIELD_EVENT_POINTS", "UF_CRM_19_BALL"),
                    event_letter: src.string("BITRIX_FIELD_EVENT_LETTER", "UF_CRM_19_LETTER"),
                },
                stages: StageNames {
                    generate: src.string("BITRIX_STAGE_GENERATE", "Сформировать документ"),
                    sent: src.string("BITRIX_STAGE_SENT", "Выслан файл"),
                    problem: src.string("BITRIX_STAGE_PROBLEM", "Проблемные"),
                },
            },
            poll_interval: Duration::from_secs(src.parsed("POLL_INTERVAL_SECS", 60, "seconds")?),
            smtp_url,
            mail_from,
            mail_subject: src.string("MAIL_SUBJECT", DEFAULT_SUBJECT),
            mail_rate: src.parsed("MAIL_RATE", 0.0, "messages per second (0: unlimited)")?,
            admin_login: src.get("ADMIN_LOGIN").map(str::to_string),
            admin_password: src.secret("ADMIN_PASSWORD"),
            metrics_token: src.secret("METRICS_TOKEN"),
            max_attempts: src.parsed("MAX_ATTEMPTS", 8, "a whole number")?,
            workers: src.parsed("WORKERS", 2, "a whole number")?,
            job_lease: Duration::from_secs(src.parsed("JOB_LEASE_SECS", 120, "seconds")?.max(1)),
            batch_size: src
                .parsed("BATCH_SIZE", 50, "a whole number from 1 to 50")?
                .clamp(1, 50),
            retry_base: Duration::from_millis(src.parsed("RETRY_BASE_MS", 5000, "milliseconds")?),
            verify_cache_ttl: Duration::from_secs(src.parsed(
                "VERIFY_CACHE_TTL_SECS",
                300,
                "seconds",
            )?),
            verify_share,
            verify_full_name: src.parsed("VERIFY_SHOW_FULL_NAME", false, "true or false")?,
            verify_per_minute: src.parsed("VERIFY_RATE_PER_MINUTE", 60.0, "requests per minute")?,
            verify_burst: src.parsed("VERIFY_BURST", 30, "a whole number")?,
            trust_forwarded: src.parsed("TRUST_FORWARDED", false, "true or false")?,
        })
    }

    /// Checks what `serve` cannot run without.
    pub fn require_for_serve(&self) -> Result<(), ConfigError> {
        let checks: [(&'static str, bool); 5] = [
            ("BITRIX_WEBHOOK_URL", self.bitrix.webhook_url.is_some()),
            (
                "BITRIX_PARTICIPANT_TYPE_ID",
                self.bitrix.participant_type_id.is_some(),
            ),
            ("BITRIX_EVENT_TYPE_ID", self.bitrix.event_type_id.is_some()),
            ("SMTP_URL", self.smtp_url.is_some()),
            ("MAIL_FROM", self.mail_from.is_some()),
        ];
        match checks.into_iter().find(|(_, present)| !present) {
            Some((var, _)) => Err(ConfigError::Missing(var)),
            None => Ok(()),
        }
    }

    pub fn public_base_url(&self) -> String {
        match &self.public_base_url {
            Some(u) => u.as_str().trim_end_matches('/').to_string(),
            None => format!("http://{}", self.bind),
        }
    }

    /// The effective configuration, secrets redacted, as `VAR = value` lines.
    pub fn redacted(&self) -> String {
        let secret = |s: &Option<SecretString>| if s.is_some() { "<redacted>" } else { "<unset>" };
        let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "<unset>".into());
        let b = &self.bitrix;
        let mut out = String::new();
        let db = self.database_url.expose_secret();
        let db_shown = if db.starts_with("postgres") {
            redact_url_password(db)
        } else {
            db.to_string()
        };
        let rows: Vec<(&str, String)> = vec![
            ("CERTPORTAL_BIND", self.bind.clone()),
            ("DATABASE_URL", db_shown),
            ("PUBLIC_BASE_URL", self.public_base_url()),
            (
                "LOG_FORMAT",
                format!("{:?}", self.log_format).to_lowercase(),
            ),
            (
                "CERTPORTAL_TEMPLATES_DIR",
                self.templates_dir
                    .as_ref()
                    .map_or("<unset>".into(), |p| p.display().to_string()),
            ),
            ("BITRIX_WEBHOOK_URL", secret(&b.webhook_url).into()),
            ("BITRIX_APP_TOKEN", secret(&b.app_token).into()),
            ("BITRIX_ROBOT_KEY", secret(&b.robot_key).into()),
            (
                "BITRIX_PARTICIPANT_TYPE_ID",
                b.participant_type_id
                    .map_or("<unset>".into(), |v| v.to_string()),
            ),
            (
                "BITRIX_EVENT_TYPE_ID",
                b.event_type_id.map_or("<unset>".into(), |v| v.to_string()),
            ),
            ("BITRIX_RATE", b.rate.to_string()),
            ("BITRIX_BURST", b.burst.to_string()),
            (
                "BITRIX_FIELD_PARTICIPANT_EVENT",
                b.fields.participant_event.clone(),
            ),
            (
                "BITRIX_FIELD_PARTICIPANT_QR",
                b.fields.participant_qr.clone(),
            ),
            (
                "BITRIX_FIELD_PARTICIPANT_ACHIEVEMENT",
                b.fields.participant_achievement.clone(),
            ),
            (
                "BITRIX_FIELD_EVENT_TEMPLATE",
                b.fields.event_template.clone(),
            ),
            ("BITRIX_FIELD_EVENT_TITLE", b.fields.event_title.clone()),
            ("BITRIX_FIELD_EVENT_POINTS", b.fields.event_points.clone()),
            ("BITRIX_FIELD_EVENT_LETTER", b.fields.event_letter.clone()),
            ("BITRIX_STAGE_GENERATE", b.stages.generate.clone()),
            ("BITRIX_STAGE_SENT", b.stages.sent.clone()),
            ("BITRIX_STAGE_PROBLEM", b.stages.problem.clone()),
            (
                "POLL_INTERVAL_SECS",
                self.poll_interval.as_secs().to_string(),
            ),
            ("SMTP_URL", secret(&self.smtp_url).into()),
            ("MAIL_FROM", opt(&self.mail_from)),
            ("MAIL_SUBJECT", self.mail_subject.clone()),
            ("MAIL_RATE", self.mail_rate.to_string()),
            ("ADMIN_LOGIN", opt(&self.admin_login)),
            ("ADMIN_PASSWORD", secret(&self.admin_password).into()),
            ("METRICS_TOKEN", secret(&self.metrics_token).into()),
            ("MAX_ATTEMPTS", self.max_attempts.to_string()),
            ("WORKERS", self.workers.to_string()),
            ("BATCH_SIZE", self.batch_size.to_string()),
            (
                "VERIFY_CACHE_TTL_SECS",
                self.verify_cache_ttl.as_secs().to_string(),
            ),
            ("VERIFY_BITRIX_SHARE", self.verify_share.to_string()),
            ("VERIFY_SHOW_FULL_NAME", self.verify_full_name.to_string()),
            ("VERIFY_RATE_PER_MINUTE", self.verify_per_minute.to_string()),
            ("VERIFY_BURST", self.verify_burst.to_string()),
            ("TRUST_FORWARDED", self.trust_forwarded.to_string()),
        ];
        for (k, v) in rows {
            let _ = writeln!(out, "{k} = {v}");
        }
        out
    }
}

fn redact_url_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparseable>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load(&Source::from_map(
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        ))
    }

    #[test]
    fn defaults_follow_the_office_instruction() {
        let s = load(&[]).unwrap();
        assert_eq!(s.bind, "127.0.0.1:8080");
        assert_eq!(s.bitrix.fields.participant_qr, "UF_CRM_20_QR");
        assert_eq!(s.bitrix.fields.event_title, "UF_CRM_19_1775713913090");
        assert_eq!(s.bitrix.stages.generate, "Сформировать документ");
        assert_eq!(s.bitrix.rate, 2.0);
        assert_eq!(s.bitrix.burst, 50);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (var, value) in [
            ("CERTPORTAL_BIND", "nowhere"),
            ("CERTPORTAL_BIND", "localhost:http"),
            ("BITRIX_PARTICIPANT_TYPE_ID", "20"),
            ("BITRIX_RATE", "fast"),
            ("LOG_FORMAT", "xml"),
            ("SMTP_URL", "http://mail"),
            ("MAIL_FROM", "not an address"),
            ("DATABASE_URL", "mysql://x"),
        ] {
            let err = load(&[(var, value)]).unwrap_err().to_string();
            assert!(err.starts_with(var), "{var}: {err}");
        }
    }

    #[test]
    fn a_host_name_may_be_bound() {
        assert_eq!(
            load(&[("CERTPORTAL_BIND", "localhost:8080")]).unwrap().bind,
            "localhost:8080"
        );
        assert!(load(&[("CERTPORTAL_BIND", "[::1]:8080")]).is_ok());
    }

    #[test]
    fn secrets_never_appear_in_the_printed_configuration() {
        let s = load(&[
            (
                "BITRIX_WEBHOOK_URL",
                "https://x.bitrix24.ru/rest/1/topsecret1/",
            ),
            ("SMTP_URL", "smtp://u:topsecret2@mail:587"),
            ("ADMIN_PASSWORD", "topsecret3"),
            ("DATABASE_URL", "postgres://u:topsecret4@db/x"),
        ])
        .unwrap();
        let shown = format!("{}{:?}", s.redacted(), s);
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(shown.contains("BITRIX_WEBHOOK_URL = <redacted>"));
    }

    #[test]
    fn serve_names_the_first_missing_variable() {
        let err = load(&[]).unwrap().require_for_serve().unwrap_err();
        assert_eq!(
            err.to_string(),
            "BITRIX_WEBHOOK_URL is required for this command"
        );
    }

    #[test]
    fn the_file_layer_is_overridden_by_the_environment_layer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "bitrix_rate = 5\nBITRIX_BURST = 250\n").unwrap();
        let mut values = read_toml(&path).unwrap();
        values.insert("BITRIX_BURST".into(), "100".into());
        let s = Settings::load(&Source::from_map(values)).unwrap();
        assert_eq!((s.bitrix.rate, s.bitrix.burst), (5.0, 100));
    }
}
