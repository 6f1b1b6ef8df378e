//! What the connector binary's log filter lets through: never a credential.

/// A writer into a shared buffer, for capturing log output.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_connector_token_never_reaches_a_trace_log() {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(connector::io::real::log_filter(Some("trace")))
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        // What tungstenite logs for the event socket's upgrade request.
        tracing::trace!(
            target: "tungstenite::handshake::client",
            "Request: \"GET /v1/events HTTP/1.1\\r\\nauthorization: Bearer conn-SECRET\""
        );
        tracing::trace!(target: "connector::io::http", "other trace lines stay");
    });
    let logged = String::from_utf8(out.0.lock().expect("not poisoned").clone()).expect("UTF-8");
    assert!(logged.contains("other trace lines stay"), "{logged}");
    assert!(!logged.contains("conn-SECRET"), "{logged}");
}
