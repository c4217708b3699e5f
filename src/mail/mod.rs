//! Outgoing mail over SMTP (lettre, pooled connections), and an SMTP sink for tests and the demo.

pub mod sink;

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use crate::bitrix::LeakyBucket;
use crate::domain::RecipientEmail;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The server refused for good (5xx): retrying will not help.
    #[error("почтовый сервер отклонил письмо: {0}")]
    Permanent(String),
    /// Connection trouble or a 4xx: try again later.
    #[error("почтовый сервер временно недоступен: {0}")]
    Transient(String),
}

/// One certificate letter.
pub struct Letter<'a> {
    pub to: &'a RecipientEmail,
    pub subject: String,
    pub body: &'a str,
    pub attachment_name: String,
    pub pdf: &'a [u8],
    /// Deterministic per certificate delivery, so a repeat after a crash is folded by mail clients.
    pub message_id: String,
}

#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    pace: Option<std::sync::Arc<LeakyBucket>>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish()
    }
}

impl Mailer {
    /// `smtp_url` as lettre reads it: `smtp://host:25`, `smtp://user:pass@host:587?tls=required`,
    /// `smtps://user:pass@host:465`. `rate` > 0 caps messages per second.
    pub fn new(smtp_url: &SecretString, from: &str, rate: f64) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url.expose_secret())
            .map_err(|e| anyhow::anyhow!("SMTP_URL: {e}"))?
            .timeout(Some(Duration::from_secs(30)))
            .pool_config(
                PoolConfig::new()
                    .max_size(4)
                    .idle_timeout(Duration::from_secs(50)),
            )
            .build();
        let from: Mailbox = from
            .parse()
            .map_err(|e| anyhow::anyhow!("MAIL_FROM: {e}"))?;
        let pace = (rate > 0.0).then(|| std::sync::Arc::new(LeakyBucket::new(rate, 1)));
        Ok(Self {
            transport,
            from,
            pace,
        })
    }

    pub fn from_domain(&self) -> String {
        self.from.email.domain().to_string()
    }

    pub async fn send(&self, letter: Letter<'_>) -> Result<(), MailError> {
        let to: Mailbox = letter
            .to
            .as_ref()
            .parse()
            .map_err(|e| MailError::Permanent(format!("адрес получателя: {e}")))?;
        let html = html_body(letter.body);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(letter.subject)
            .message_id(Some(letter.message_id))
            .multipart(
                MultiPart::mixed()
                    .multipart(
                        MultiPart::alternative()
                            .singlepart(SinglePart::plain(letter.body.to_string()))
                            .singlepart(SinglePart::html(html)),
                    )
                    .singlepart(Attachment::new(letter.attachment_name).body(
                        letter.pdf.to_vec(),
                        ContentType::parse("application/pdf").expect("valid MIME type"),
                    )),
            )
            .map_err(|e| MailError::Permanent(e.to_string()))?;
        if let Some(pace) = &self.pace {
            pace.acquire().await;
        }
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(MailError::Permanent(e.to_string())),
            Err(e) => Err(MailError::Transient(e.to_string())),
        }
    }
}

/// The letter text as HTML: escaped, paragraphs and line breaks kept.
pub fn html_body(text: &str) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let paragraphs: Vec<String> = text
        .replace("\r\n", "\n")
        .split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| format!("<p>{}</p>", escape(p.trim()).replace('\n', "<br>\n")))
        .collect();
    format!(
        "<!DOCTYPE html><html lang=\"ru\"><head><meta charset=\"utf-8\"></head>\
         <body style=\"font-family: Georgia, serif; font-size: 15px; line-height: 1.5\">{}</body></html>",
        paragraphs.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_html_alternative_escapes_and_keeps_paragraphs() {
        let html = html_body("Здравствуйте!\n\nВаш <сертификат> во вложении.\nС уважением");
        assert!(html.contains("<p>Здравствуйте!</p>"));
        assert!(html.contains("&lt;сертификат&gt;"));
        assert!(html.contains("<br>"));
    }
}
