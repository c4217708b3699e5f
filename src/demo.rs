//! `certportal demo`: the whole service against a sandbox portal and an SMTP sink, nothing to
//! install. Everything it keeps (database, received mail) goes to one folder.

use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;

use crate::config::Settings;
use crate::mail::sink::SmtpSink;
use crate::sandbox::{Sandbox, seed};
use crate::startup::Application;

fn random_secret() -> String {
    format!("{:032x}", rand::random::<u128>())
}

pub async fn run(
    mut settings: Settings,
    bind: &str,
    sandbox_port: u16,
    dir: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let sink = SmtpSink::start(0, Some(dir.join("mail"))).await?;
    let sandbox = Sandbox::start(sandbox_port).await?;
    sandbox.edit(seed::demo);
    sandbox.attach_mail(sink.clone());
    sandbox.set_rate_limit(true);

    let app_token = random_secret();
    settings.bind = bind.to_string();
    settings.database_url =
        SecretString::from(format!("sqlite://{}", dir.join("certportal.db").display()));
    let b = &mut settings.bitrix;
    b.webhook_url = Some(SecretString::from(sandbox.webhook_url()));
    b.app_token = Some(SecretString::from(app_token.clone()));
    b.robot_key = Some(SecretString::from(random_secret()));
    b.participant_type_id = Some(seed::PARTICIPANT_TYPE);
    b.event_type_id = Some(seed::EVENT_TYPE);
    settings.smtp_url = Some(SecretString::from(sink.url()));
    settings.mail_from = Some("Отдел организации набора ТПУ <noreply@tpu.example>".into());
    settings.poll_interval = Duration::from_secs(20);
    let demo_password = settings.admin_login.is_none().then(|| {
        settings.admin_login = Some("admin".into());
        let p = random_secret()[..12].to_string();
        settings.admin_password = Some(SecretString::from(p.clone()));
        p
    });

    let app = Application::build(settings).await?;
    let port = app.port();
    sandbox.set_event_handler(
        &format!("http://127.0.0.1:{port}/bitrix/events"),
        &app_token,
    );

    println!("certportal demo is running.");
    println!(
        "  Sandbox portal (move participants):  http://127.0.0.1:{}/sandbox",
        sandbox.port
    );
    println!(
        "  Received mail:                       http://127.0.0.1:{}/sandbox/mail  (.eml files in {})",
        sandbox.port,
        dir.join("mail").display()
    );
    println!("  Certificate check (public):          http://127.0.0.1:{port}/");
    println!("  Admin console:                       http://127.0.0.1:{port}/admin");
    if let Some(p) = demo_password {
        println!("  Admin sign-in:                       admin / {p}");
    }
    println!("Press Ctrl+C to stop.");
    app.run_until_stopped().await
}
