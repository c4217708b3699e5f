//! Headless Chromium driving the public page and the console, as a person would.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use certportal::render::QrMatrix;
use certportal::sandbox::seed;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::{Options, TestApp, pdf_text, spawn_app_with};

/// A chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_browser() -> (Driver, Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver must be installed (Debian chromium-driver; see .ci/run)");
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        port,
        _profile: profile,
    };
    let status = format!("http://127.0.0.1:{port}/status");
    for _ in 0..100 {
        if reqwest::get(&status).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), json!({
        "binary": "/usr/bin/chromium",
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-quic",
                 format!("--user-data-dir={}", driver._profile.path().display())]
    }));
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session");
    (driver, client)
}

/// Severe entries of the browser console, via chromedriver's log endpoint.
async fn console_errors(driver: &Driver, client: &Client) -> Vec<String> {
    let id = client.session_id().await.unwrap().unwrap_or_default();
    let r = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/session/{id}/se/log",
            driver.port
        ))
        .json(&json!({"type": "browser"}))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    v["value"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn text_of(c: &Client, css: &str) -> String {
    c.wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits (up to ten seconds) until the browser's address satisfies `pred`.
async fn wait_for_url(c: &Client, pred: impl Fn(&url::Url) -> bool) {
    for _ in 0..100 {
        if pred(&c.current_url().await.unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the page never reached the expected address: {}",
        c.current_url().await.unwrap()
    );
}

/// Opens the home page, picks `file` in the photo field and submits it.
async fn upload(c: &Client, app: &TestApp, file: &std::path::Path) {
    c.goto(&format!("{}/", app.address)).await.unwrap();
    c.find(Locator::Css("#qr"))
        .await
        .unwrap()
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    c.find(Locator::Css("form[enctype='multipart/form-data'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn issued_app() -> TestApp {
    let app = spawn_app_with(Options {
        extra: vec![
            ("ADMIN_LOGIN", "staff".into()),
            ("ADMIN_PASSWORD", "correct horse battery".into()),
        ],
        ..Options::default()
    })
    .await;
    app.sandbox.move_participant(100500, seed::STAGE_GENERATE);
    app.wait_for_mail(1, Duration::from_secs(20)).await;
    app
}

#[tokio::test]
async fn a_visitor_checks_a_certificate_by_code_and_by_photo() {
    let app = issued_app().await;
    let (driver, c) = start_browser().await;

    // Type the code.
    c.goto(&format!("{}/", app.address)).await.unwrap();
    c.find(Locator::Css("#code"))
        .await
        .unwrap()
        .send_keys("S.100500.7")
        .await
        .unwrap();
    c.find(Locator::Css("form[action='/verify'][method='get'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text_of(&c, "#verdict").await, "Сертификат подлинный");
    assert_eq!(text_of(&c, "#holder").await, "Иванова А. С.");

    // Upload a photo of the QR.
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("qr.png");
    std::fs::write(&photo, QrMatrix::encode("S.100500.7").to_png(7)).unwrap();
    upload(&c, &app, &photo).await;
    assert_eq!(text_of(&c, "#verdict").await, "Сертификат подлинный");
    assert!(
        c.current_url()
            .await
            .unwrap()
            .as_str()
            .ends_with("/verify?code=S.100500.7")
    );

    // Upload a text file.
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "не картинка").unwrap();
    upload(&c, &app, &notes).await;
    assert!(text_of(&c, "#error").await.contains("Это не изображение"));

    // The refused upload answers 400 on purpose; Chromium logs that status, nothing else may appear.
    let errors: Vec<String> = console_errors(&driver, &c)
        .await
        .into_iter()
        .filter(|e| {
            !e.contains(
                "/verify - Failed to load resource: the server responded with a status of 400",
            )
        })
        .collect();
    assert_eq!(errors, Vec::<String>::new());
    c.close().await.unwrap();
}

#[tokio::test]
async fn staff_sign_in_search_open_a_certificate_and_download_its_pdf() {
    let app = issued_app().await;
    let (driver, c) = start_browser().await;

    c.goto(&format!("{}/admin", app.address)).await.unwrap();
    c.wait()
        .for_element(Locator::Css("#login"))
        .await
        .unwrap()
        .send_keys("staff")
        .await
        .unwrap();
    c.find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys("correct horse battery")
        .await
        .unwrap();
    c.find(Locator::Css("form[action='/admin/login'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#registry"))
        .await
        .unwrap();

    c.find(Locator::Css("#q"))
        .await
        .unwrap()
        .send_keys("Иванова")
        .await
        .unwrap();
    c.find(Locator::Css("form[action='/admin/certificates'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The unfiltered registry already lists 100500: wait for the search page itself, or the link
    // found could belong to the page being replaced.
    wait_for_url(&c, |url| url.query().is_some_and(|q| q.contains("q="))).await;
    let link = c
        .wait()
        .for_element(Locator::Css(
            "#registry a[href='/admin/certificates/100500']",
        ))
        .await
        .unwrap();
    link.click().await.unwrap();
    assert_eq!(text_of(&c, "#holder").await, "Иванова Анастасия Сергеевна");

    let href = c
        .find(Locator::Css("#pdf"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let cookie = c.get_named_cookie("certportal_session").await.unwrap();
    let pdf = reqwest::Client::new()
        .get(format!("{}{href}", app.address))
        .header("Cookie", format!("certportal_session={}", cookie.value()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(pdf_text(&pdf).contains("Иванова Анастасия"));

    assert_eq!(console_errors(&driver, &c).await, Vec::<String>::new());
    c.close().await.unwrap();
}
