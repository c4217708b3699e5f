//! The command line: account management and the printed configuration.

use std::io::Write;
use std::process::{Command, Stdio};

fn certportal(db: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_certportal"))
        .args(args)
        .env("DATABASE_URL", db)
        .env(
            "BITRIX_WEBHOOK_URL",
            "https://x.bitrix24.ru/rest/1/very-secret-hook/",
        )
        .env("SMTP_URL", "smtp://user:very-secret-pass@mail.example:587")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn admin_accounts_are_added_listed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());
    let out = certportal(
        &db,
        &["admin", "add", "registrar"],
        "long enough password\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = certportal(&db, &["admin", "list"], "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("registrar"));
    let out = certportal(&db, &["admin", "add", "weak"], "short\n");
    assert!(!out.status.success());
    let out = certportal(&db, &["admin", "remove", "registrar"], "");
    assert!(out.status.success());
    let out = certportal(&db, &["admin", "list"], "");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("registrar"));
}

#[test]
fn the_printed_configuration_hides_every_secret() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());
    let out = certportal(&db, &["config"], "");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("BITRIX_WEBHOOK_URL = <redacted>") && text.contains("SMTP_URL = <redacted>"),
        "{text}"
    );
    assert!(!text.contains("very-secret"), "{text}");
}

#[test]
fn a_bad_variable_stops_the_program_naming_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_certportal"))
        .arg("config")
        .env("BITRIX_RATE", "fast")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BITRIX_RATE"));
}
