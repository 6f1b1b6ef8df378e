//! Issue 14 item 1: an accept error (out of file descriptors) must not end a server. Every
//! listener here is wrapped so that its first accepts fail with `EMFILE` (what `accept`
//! returns once the process has no descriptor left); the servers must log, pause, accept
//! again, and answer once descriptors are back.

use connector::io::net::{Net, TokioNet};
use rand::SeedableRng as _;
use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Accept errors each listener returns before accepting for real.
const FAILURES: u32 = 5;

/// Loopback sockets whose listeners fail their first [`FAILURES`] accepts with `EMFILE`,
/// leaving the pending connections in the backlog as a full descriptor table does.
#[derive(Clone)]
struct FlakyNet(TokioNet);

impl Net for FlakyNet {
    type Stream = tokio::net::TcpStream;
    type Listener = (tokio::net::TcpListener, Rc<Cell<u32>>);

    async fn bind(&self, port: u16) -> io::Result<Self::Listener> {
        Ok((self.0.bind(port).await?, Rc::new(Cell::new(FAILURES))))
    }

    async fn accept(&self, l: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        if l.1.get() > 0 {
            l.1.set(l.1.get() - 1);
            // EMFILE: "Too many open files".
            return Err(io::Error::from_raw_os_error(24));
        }
        self.0.accept(&l.0).await
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<Self::Stream> {
        self.0.connect(host, port).await
    }

    fn now(&self) -> Duration {
        self.0.now()
    }
}

fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("addr").port())
}

/// Sends `request` to `port` and returns the first bytes of the answer (within 5 s).
async fn ask(port: u16, request: &str) -> String {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(request.as_bytes()).await.ok()?;
        let mut buf = vec![0u8; 512];
        let n = s.read(&mut buf).await.ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn imp_config(c2s: u16, component: u16, axl: u16) -> fakes::imp::serve::ServeImpConfig {
    let cfg = serde_json::json!({
        "listen": {"ip": "127.0.0.1", "c2s": c2s, "component": component, "axl": axl},
        "component": {"secret": "s3cret"},
        "axl": {"username": "axl", "password": "axl-pw"},
        "users": [{"userid": "alice", "password": "pw"}],
    });
    serde_json::from_value(cfg).expect("config")
}

#[test]
fn servers_keep_accepting_after_running_out_of_descriptors() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let [c2s, component, axl, cloud_port, kms_port] = free_ports::<5>();
        let net = FlakyNet(TokioNet::new(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let (node, comp, axl_svc) = fakes::imp::serve::build(&imp_config(c2s, component, axl));
        let ports = fakes::imp::driver::NodePorts {
            c2s,
            component,
            axl,
            router: None,
        };
        let imp = tokio::task::spawn_local(fakes::imp::driver::serve_node(
            net.clone(),
            Rc::new(RefCell::new(node)),
            Rc::new(RefCell::new(comp)),
            Rc::new(RefCell::new(axl_svc)),
            ports,
            || {},
        ));
        let cloud = fakes::cloud::Cloud::new(
            fakes::cloud::CloudConfig {
                domain: "example.com".into(),
                admin_token: "admin".into(),
                kms_host: "kms".into(),
            },
            rand_chacha::ChaCha8Rng::seed_from_u64(1),
        );
        let listener = net.bind(cloud_port).await.expect("bind cloud");
        let cloud = tokio::task::spawn_local(fakes::cloud::http::serve_listener(
            net.clone(),
            Rc::new(RefCell::new(cloud)),
            listener,
        ));
        let kms = fakes::kms::KmsService::new("kms", rand_chacha::ChaCha8Rng::seed_from_u64(2));
        let listener = net.bind(kms_port).await.expect("bind kms");
        let kms = tokio::task::spawn_local(fakes::kms::http::serve_listener(
            net.clone(),
            Rc::new(RefCell::new(kms)),
            listener,
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let http = "GET /v1/health HTTP/1.1\r\nhost: x\r\n\r\n";
        let axl_get = "GET /axl/ HTTP/1.1\r\nhost: x\r\n\r\n";
        let c2s_open = "<?xml version='1.0'?><stream:stream to='example.com' \
            xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
        let comp_open = "<stream:stream to='hm.example.com' xmlns='jabber:component:accept' \
            xmlns:stream='http://etherx.jabber.org/streams'>";
        // Each listener fails FAILURES accepts, then takes the waiting connection.
        assert!(ask(c2s, c2s_open).await.contains("stream:stream"), "c2s");
        assert!(
            ask(component, comp_open).await.contains("stream:stream"),
            "component"
        );
        assert!(ask(axl, axl_get).await.starts_with("HTTP/1.1"), "axl");
        assert!(ask(cloud_port, http).await.starts_with("HTTP/1.1"), "cloud");
        assert!(ask(kms_port, http).await.starts_with("HTTP/1.1 200"), "kms");
        for (name, task) in [("imp", &imp), ("cloud", &cloud), ("kms", &kms)] {
            assert!(!task.is_finished(), "{name} server ended");
        }
        imp.abort();
        cloud.abort();
        kms.abort();
    });
}
