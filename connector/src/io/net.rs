//! One network interface, two backends: turmoil's simulated TCP and real tokio sockets.
//!
//! Drivers (the connector's and every fake's) are written against [`Net`], so the same code runs
//! inside the simulation and on loopback sockets, the way s2n-quic has one core and several I/O
//! backends.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream usable by the drivers.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + 'static> Stream for T {}

/// A network backend: listen, accept, connect, and tell the time.
pub trait Net: Clone + 'static {
    /// The connected stream type.
    type Stream: Stream;
    /// The listener type.
    type Listener: 'static;

    /// Listens on `port` on all of this host's addresses.
    fn bind(&self, port: u16) -> impl std::future::Future<Output = io::Result<Self::Listener>>;
    /// Accepts one connection.
    fn accept(
        &self,
        l: &Self::Listener,
    ) -> impl std::future::Future<Output = io::Result<(Self::Stream, SocketAddr)>>;
    /// Connects to `host:port`.
    fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> impl std::future::Future<Output = io::Result<Self::Stream>>;
    /// Time since the start of the run (simulated under turmoil, real otherwise): the `now`
    /// that drivers pass to sans-IO cores.
    fn now(&self) -> Duration;
}

/// turmoil's simulated network. Must be used from within a turmoil simulation.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurmoilNet;

impl Net for TurmoilNet {
    type Stream = turmoil::net::TcpStream;
    type Listener = turmoil::net::TcpListener;

    async fn bind(&self, port: u16) -> io::Result<Self::Listener> {
        turmoil::net::TcpListener::bind(("0.0.0.0", port)).await
    }
    async fn accept(&self, l: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        l.accept().await
    }
    async fn connect(&self, host: &str, port: u16) -> io::Result<Self::Stream> {
        turmoil::net::TcpStream::connect((host, port)).await
    }
    fn now(&self) -> Duration {
        turmoil::sim_elapsed().unwrap_or_default()
    }
}

/// Real tokio sockets. Host names other than IP literals resolve through `hosts`, a table the
/// caller provides (real mode maps simulated host names to loopback ports).
#[derive(Debug, Clone)]
pub struct TokioNet {
    /// Address to bind listeners on (usually 127.0.0.1).
    pub bind_ip: std::net::IpAddr,
    /// Host name → socket address overrides for `connect` (name, port) → addr.
    pub hosts: std::rc::Rc<std::collections::BTreeMap<(String, u16), SocketAddr>>,
    /// Start of the run, for [`Net::now`].
    pub start: tokio::time::Instant,
}

impl TokioNet {
    /// A backend binding on `bind_ip` with no host overrides.
    pub fn new(bind_ip: std::net::IpAddr) -> Self {
        Self {
            bind_ip,
            hosts: Default::default(),
            start: tokio::time::Instant::now(), // allow-nondeterminism: real mode, never simulated
        }
    }
}

impl Net for TokioNet {
    type Stream = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;

    async fn bind(&self, port: u16) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::bind((self.bind_ip, port)).await
    }
    async fn accept(&self, l: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        l.accept().await
    }
    async fn connect(&self, host: &str, port: u16) -> io::Result<Self::Stream> {
        match self.hosts.get(&(host.to_string(), port)) {
            Some(addr) => tokio::net::TcpStream::connect(addr).await,
            None => tokio::net::TcpStream::connect((host, port)).await,
        }
    }
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Runs `fut` to completion on a current-thread tokio runtime inside a `LocalSet`: how every
/// real-mode program here (the `connector` binary, `hmsim serve`) runs the same `Rc`-based
/// tasks the simulation runs in turmoil hosts.
///
/// # Errors
/// The runtime could not be built.
pub fn run_local<F: std::future::Future>(fut: F) -> std::io::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(tokio::task::LocalSet::new().block_on(&rt, fut))
}
