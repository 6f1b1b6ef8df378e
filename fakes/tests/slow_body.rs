//! Issue 14 item 3: a request body that never completes is answered 408 and its connection
//! closed after [`fakes::body::BODY_READ_TIMEOUT`], on the cloud, the KMS and AXL (before, a
//! half-sent body was still open after 100 s). Simulated time (turmoil).

use connector::io::net::TurmoilNet;
use fakes::body::BODY_READ_TIMEOUT;
use fakes::cloud::{Cloud, CloudConfig};
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Sends headers announcing 100,000 bytes and only the start of the body; returns the answer
/// and how long it took (simulated).
async fn half_sent(host: &str, port: u16, path: &str) -> (String, Duration) {
    let start = tokio::time::Instant::now();
    let mut s = turmoil::net::TcpStream::connect((host, port))
        .await
        .expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Basic YXhsOnB3\r\n\
         content-type: application/json\r\ncontent-length: 100000\r\n\r\n{{\"a\":"
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

#[test]
fn half_sent_bodies_time_out_on_every_http_server() {
    let mut sim = turmoil::Builder::new()
        .rng_seed(3)
        .simulation_duration(Duration::from_secs(600))
        .build();
    sim.host("cloud", || async {
        let cfg = CloudConfig {
            domain: "example.com".into(),
            admin_token: "admin".into(),
            kms_host: "kms".into(),
        };
        let cloud = Rc::new(RefCell::new(Cloud::new(cfg, ChaCha8Rng::seed_from_u64(1))));
        fakes::cloud::http::serve(TurmoilNet, cloud, 443).await?;
        Ok(())
    });
    sim.host("kms", || async {
        let kms = fakes::kms::KmsService::new("kms", ChaCha8Rng::seed_from_u64(2));
        fakes::kms::http::serve(TurmoilNet, Rc::new(RefCell::new(kms)), 443).await?;
        Ok(())
    });
    sim.host("imp", || async {
        let cfg: fakes::imp::serve::ServeImpConfig = serde_json::from_value(serde_json::json!({
            "component": {"secret": "s"},
            "axl": {"username": "axl", "password": "pw"},
            "users": [],
        }))
        .expect("config");
        let (_, _, axl) = fakes::imp::serve::build(&cfg);
        fakes::imp::axl::serve_axl(TurmoilNet, Rc::new(RefCell::new(axl)), 8443).await?;
        Ok(())
    });
    sim.client("slow", async {
        for (host, port, path, want) in [
            ("cloud", 443, "/v1/login", "408"),
            ("kms", 443, "/v1/keys", "408"),
            ("imp", 8443, "/axl/", "408"),
        ] {
            let (answer, took) = half_sent(host, port, path).await;
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {want}")),
                "{host}: {answer}"
            );
            assert!(took >= BODY_READ_TIMEOUT, "{host}: {took:?}");
            assert!(took < BODY_READ_TIMEOUT * 2, "{host}: {took:?}");
        }
        Ok(())
    });
    sim.run().expect("simulation");
}
