//! A small SMTP server that keeps what it receives: the demo's mailbox and the tests' peer. It
//! speaks enough of RFC 5321 for lettre (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and can be told
//! to refuse mail, temporarily or for good, or to drop connections, to exercise failure paths.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Switches for failure tests.
#[derive(Debug, Default)]
pub struct SinkFaults {
    /// Answer RCPT with 550 (permanent).
    pub reject_permanent: AtomicBool,
    /// Answer this many next RCPTs with 451 (temporary).
    pub reject_transient: AtomicU32,
    /// Close every connection at once, as if the server were down.
    pub down: AtomicBool,
}

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    received: Arc<Mutex<Vec<ReceivedMail>>>,
    pub faults: Arc<SinkFaults>,
    eml_dir: Option<PathBuf>,
}

impl SmtpSink {
    /// Starts on `127.0.0.1:port` (0 picks a free port). With `eml_dir`, each message is also
    /// written there as `<n>.eml`.
    pub async fn start(port: u16, eml_dir: Option<PathBuf>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        if let Some(dir) = &eml_dir {
            std::fs::create_dir_all(dir)?;
        }
        let sink = Self {
            port: listener.local_addr()?.port(),
            received: Arc::default(),
            faults: Arc::default(),
            eml_dir,
        };
        let server = sink.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = server.clone();
                tokio::spawn(async move {
                    if let Err(e) = s.session(stream).await {
                        tracing::debug!(error = %e, "SMTP sink session ended");
                    }
                });
            }
        });
        Ok(sink)
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.received.lock().expect("sink lock").clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().expect("sink lock").len()
    }

    async fn session(&self, stream: TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        if self.faults.down.load(Ordering::SeqCst) {
            write.write_all(b"421 service not available\r\n").await?;
            return Ok(());
        }
        let mut reader = BufReader::new(read);
        write.write_all(b"220 certportal-sink ESMTP\r\n").await?;
        let mut from = String::new();
        let mut to = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let cmd = line.trim_end().to_string();
            let upper = cmd.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") {
                b"250-certportal-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 52428800\r\n"
            } else if upper.starts_with("HELO") {
                b"250 certportal-sink\r\n"
            } else if upper.starts_with("MAIL FROM:") {
                from = address(&cmd[10..]);
                to.clear();
                b"250 OK\r\n"
            } else if upper.starts_with("RCPT TO:") {
                if self.faults.reject_permanent.load(Ordering::SeqCst) {
                    b"550 5.1.1 mailbox unavailable\r\n"
                } else if self
                    .faults
                    .reject_transient
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    b"451 4.3.0 try again later\r\n"
                } else {
                    to.push(address(&cmd[8..]));
                    b"250 OK\r\n"
                }
            } else if upper == "DATA" {
                if to.is_empty() {
                    b"503 need RCPT first\r\n"
                } else {
                    write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                    let data = read_data(&mut reader).await?;
                    self.keep(ReceivedMail {
                        from: from.clone(),
                        to: std::mem::take(&mut to),
                        data,
                        at: chrono::Utc::now(),
                    });
                    b"250 OK queued\r\n"
                }
            } else if upper.starts_with("RSET") {
                to.clear();
                b"250 OK\r\n"
            } else if upper.starts_with("NOOP") {
                b"250 OK\r\n"
            } else if upper.starts_with("QUIT") {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else {
                b"502 command not implemented\r\n"
            };
            write.write_all(reply).await?;
        }
    }

    fn keep(&self, mail: ReceivedMail) {
        let mut all = self.received.lock().expect("sink lock");
        if let Some(dir) = &self.eml_dir {
            let path = dir.join(format!("{:05}.eml", all.len() + 1));
            if let Err(e) = std::fs::write(&path, &mail.data) {
                tracing::warn!(error = %e, "cannot write {}", path.display());
            }
        }
        all.push(mail);
    }
}

fn address(arg: &str) -> String {
    let arg = arg.trim();
    let inner = arg
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map_or(arg, |(a, _)| a);
    inner.to_string()
}

async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed inside DATA",
            ));
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(data);
        }
        // Dot-stuffing: a leading dot was doubled by the client.
        let start = usize::from(line.starts_with(b".."));
        data.extend_from_slice(&line[start..]);
    }
}
