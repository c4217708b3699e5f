//! `bench verify` and `bench registry`: the public check under load and the console's listing.

use std::time::{Duration, Instant};

use secrecy::SecretString;

use crate::bench::{ms, peak_rss_mb, percentile};
use crate::mail::sink::SmtpSink;
use crate::render::QrMatrix;
use crate::sandbox::{Sandbox, seed};
use crate::store::{IssuedSnapshot, RegistryFilter, RegistrySort, Store};

pub async fn run(requests: usize, concurrency: usize) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let sandbox = Sandbox::start(0).await?;
    sandbox.edit(seed::demo);
    let sink = SmtpSink::start(0, None).await?;
    let (_, app) = crate::bench::local_app(
        &sandbox,
        &sink,
        &dir,
        &[
            ("VERIFY_RATE_PER_MINUTE", "100000000".into()),
            ("VERIFY_BURST", "1000000".into()),
        ],
    )
    .await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    sandbox.move_participant(100500, seed::STAGE_GENERATE);
    if let Some(issuer) = &state.issuer {
        issuer.hint(100500).await?;
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let url = format!("{base}/api/v1/certificates/S.100500.7");
    // Issue it, then warm the cache.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: serde_json::Value = http.get(&url).send().await?.json().await?;
        if v["status"] == "authentic" {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the certificate was not issued: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let per_task = requests.div_ceil(concurrency.max(1));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let http = http.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let t = Instant::now();
                let r = http.get(&url).send().await;
                let ok = match r {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    lat.push(t.elapsed());
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let elapsed = started.elapsed();
    all.sort();
    println!(
        "bench verify: {} cached GET /api/v1/certificates/{{code}}, {} concurrent, same process as the load",
        all.len(),
        concurrency
    );
    println!(
        "  throughput {:.0} req/s; latency p50 {:.2} ms, p99 {:.2} ms",
        all.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99))
    );
    println!(
        "  peak RSS {:.1} MB (server and load generator together)",
        peak_rss_mb()
    );
    println!("  targets: >= 5000 req/s, p99 <= 20 ms, RSS <= 100 MB");

    let photo = twelve_megapixel_photo();
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let text = crate::verify::decode::decode_qr(&photo).map_err(|e| anyhow::anyhow!("{e}"))?;
        times.push(t.elapsed());
        anyhow::ensure!(text == "S.100500.10", "decoded {text}");
    }
    times.sort();
    println!(
        "  12 MP JPEG photo ({} KB) decode: median {:.1} ms (target <= 150 ms)",
        photo.len() / 1024,
        ms(percentile(&times, 0.5))
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("certportal-bench-{:x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A 4000×3000 JPEG: a QR small in a noisy frame, the way a phone photographs a certificate.
fn twelve_megapixel_photo() -> Vec<u8> {
    let qr = image::load_from_memory(&QrMatrix::encode("S.100500.10").to_png(12))
        .expect("own PNG")
        .to_luma8();
    let mut frame = image::GrayImage::from_pixel(4000, 3000, image::Luma([205]));
    image::imageops::overlay(&mut frame, &qr, 1700, 1200);
    let mut state = 0x2545F4914F6CDD1Du64;
    for p in frame.pixels_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = (state % 61) as i16 - 30;
        p.0[0] = (i16::from(p.0[0]) + n).clamp(0, 255) as u8;
    }
    let mut out = Vec::new();
    let enc =
        image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::Cursor::new(&mut out), 80);
    image::DynamicImage::ImageLuma8(frame)
        .write_with_encoder(enc)
        .expect("JPEG encodes");
    out
}

pub async fn registry(rows: i64, database_url: Option<String>) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let url =
        database_url.unwrap_or_else(|| format!("sqlite://{}", dir.join("registry.db").display()));
    let store = Store::connect(&SecretString::from(url.clone())).await?;
    let existing = store.count_certificates().await?;
    let t = Instant::now();
    let names = [
        "Иванова",
        "Петров",
        "Сидоров",
        "Кузнецова",
        "Смирнов",
        "Попова",
        "Соколов",
        "Лебедева",
    ];
    for i in existing..rows {
        let number = 1_000_000 + i;
        let s = IssuedSnapshot {
            number,
            code: format!("S.{number}.7"),
            event_id: Some(1 + i % 40),
            template: "2026-Сертификат".into(),
            last_name: format!("{}{}", names[(i % 8) as usize], i),
            first_name: "Анна".into(),
            second_name: "Сергеевна".into(),
            event_title: format!("Мероприятие {}", 1 + i % 40),
            points: 7,
            points_text: "7 баллов".into(),
            email: Some(format!("p{number}@example.org")),
            pdf_sha256: "00".repeat(32),
        };
        store.record_rendered(&s).await?;
        if i % 10 != 0 {
            store.mark_sent(number, "<x@y>").await?;
        }
    }
    println!(
        "bench registry: {} rows ({} inserted in {:.1} s) on {}",
        rows,
        rows - existing.min(rows),
        t.elapsed().as_secs_f64(),
        if url.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    let cases: [(&str, RegistryFilter, RegistrySort); 4] = [
        (
            "first page",
            RegistryFilter::default(),
            RegistrySort::NumberDesc,
        ),
        (
            "search by surname",
            RegistryFilter {
                q: Some("кузнецова1234".into()),
                ..Default::default()
            },
            RegistrySort::NumberDesc,
        ),
        (
            "status + event filter",
            RegistryFilter {
                status: Some("sending".into()),
                event_id: Some(1),
                ..Default::default()
            },
            RegistrySort::NumberDesc,
        ),
        (
            "newest issued first",
            RegistryFilter::default(),
            RegistrySort::IssuedDesc,
        ),
    ];
    for (name, filter, sort) in cases {
        let mut pages = Vec::new();
        let mut both = Vec::new();
        for _ in 0..15 {
            let t = Instant::now();
            let page = store.registry_page(&filter, sort, None, 50).await?;
            pages.push(t.elapsed());
            let counts = store.registry_counts(&filter).await?;
            both.push(t.elapsed());
            anyhow::ensure!(
                !page.rows.is_empty() && !counts.is_empty(),
                "{name}: no rows"
            );
        }
        pages.sort();
        both.sort();
        println!(
            "  {name}: page median {:.1} ms (max {:.1}); with status counters {:.1} ms (target <= 50 ms)",
            ms(percentile(&pages, 0.5)),
            ms(*pages.last().unwrap_or(&Duration::ZERO)),
            ms(percentile(&both, 0.5))
        );
    }
    if !url.starts_with("postgres") {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
