//! The raw-turmoil floor of the Large-node traffic shape: what turmoil and tokio alone cost for
//! the bytes the harness moves, with no XMPP, no connector and no checks.
//!
//! `users` devices spread over [`FARMS`] client hosts each hold one TCP connection to one
//! server host (as a Jabber device holds its c2s stream), send a [`PING_BYTES`] frame every
//! [`PING_EVERY`] and a [`MESSAGE_BYTES`] frame every [`MESSAGE_EVERY`]; the server answers each
//! frame with one of the same size (the pong, the receipt). Frames are a 2-byte big-endian
//! length and that many bytes. Device start times are spread over the intervals so that the
//! load is flat, as the harness's seeded devices are.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Client hosts, as `client_farms: { jabber: 4 }`.
pub const FARMS: usize = 4;
/// The keepalive frame: an XEP-0199 ping IQ is about this size on the wire.
pub const PING_BYTES: usize = 150;
/// The chat frame: a Jabber chat message with receipt request and chat state.
pub const MESSAGE_BYTES: usize = 300;
/// Keepalive period of every device.
pub const PING_EVERY: Duration = Duration::from_secs(30);
/// One message per user per 10 minutes (the capacity workload).
pub const MESSAGE_EVERY: Duration = Duration::from_secs(600);
/// The server's port.
const PORT: u16 = 5222;
/// Largest frame the server accepts (both sizes above fit).
const FRAME_BYTES_MAX: usize = 1024;

/// Frames the server answered, shared by the server's connection tasks.
pub type Answered = Rc<Cell<u64>>;

/// A turmoil simulation of `users` devices, ticking `tick`, and the server's frame counter.
pub fn sim(users: usize, tick: Duration, seed: u64) -> (turmoil::Sim<'static>, Answered) {
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .tick_duration(tick)
        .simulation_duration(Duration::from_secs(10 * 3600))
        // The harness's segment limit; also the listen backlog, where every device connects in
        // the first tick (turmoil panics on a full backlog: 75,000 devices did at 64 Ki).
        .tcp_capacity(sim::world::TCP_CAPACITY.max(users))
        .ephemeral_ports(1024..=65535)
        .build();
    let answered: Answered = Rc::new(Cell::new(0));
    let counter = answered.clone();
    sim.host("server", move || server(counter.clone()));
    for farm in 0..FARMS {
        let devices: Vec<usize> = (farm..users).step_by(FARMS).collect();
        sim.host(format!("farm-{}", farm + 1), move || {
            farm_host(devices.clone())
        });
    }
    (sim, answered)
}

async fn server(answered: Answered) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::task::spawn_local(echo(stream, answered.clone()));
    }
}

/// Answers every frame with one of the same length.
async fn echo(stream: turmoil::net::TcpStream, answered: Answered) {
    let (mut rd, mut wr) = stream.into_split();
    let mut frame = vec![0u8; FRAME_BYTES_MAX + 2];
    loop {
        if rd.read_exact(&mut frame[..2]).await.is_err() {
            return;
        }
        let len = usize::from(u16::from_be_bytes([frame[0], frame[1]])).min(FRAME_BYTES_MAX);
        if rd.read_exact(&mut frame[2..2 + len]).await.is_err()
            || wr.write_all(&frame[..2 + len]).await.is_err()
        {
            return;
        }
        answered.set(answered.get() + 1);
    }
}

async fn farm_host(devices: Vec<usize>) -> turmoil::Result {
    for i in devices {
        tokio::task::spawn_local(device(i));
    }
    std::future::pending::<()>().await;
    Ok(())
}

/// A frame of `len` payload bytes.
fn frame(len: usize) -> Vec<u8> {
    let mut f = (len as u16).to_be_bytes().to_vec();
    f.resize(2 + len, b'x');
    f
}

/// Where in an interval device `i` acts: a fixed spread (a multiplicative hash of the index),
/// so that devices do not all act on the same tick.
fn offset(i: usize, every: Duration) -> Duration {
    let ms = every.as_millis() as u64;
    Duration::from_millis((i as u64).wrapping_mul(2_654_435_761) % ms)
}

async fn device(i: usize) {
    let Ok(stream) = turmoil::net::TcpStream::connect(("server", PORT)).await else {
        return;
    };
    let (mut rd, mut wr) = stream.into_split();
    let start = tokio::time::Instant::now();
    let mut next_ping = start + offset(i, PING_EVERY);
    let mut next_message = start + offset(i, MESSAGE_EVERY);
    let (ping, message) = (frame(PING_BYTES), frame(MESSAGE_BYTES));
    let mut buf = vec![0u8; 4 * 1024];
    loop {
        tokio::select! {
            r = rd.read(&mut buf) => {
                if matches!(r, Ok(0) | Err(_)) {
                    return;
                }
            }
            _ = tokio::time::sleep_until(next_ping) => {
                next_ping += PING_EVERY;
                if wr.write_all(&ping).await.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(next_message) => {
                next_message += MESSAGE_EVERY;
                if wr.write_all(&message).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every device connects in the first tick, faster than the server accepts (a few hundred
    /// a tick), so the listen backlog must hold nearly all of them: at 75,000 devices
    /// (`scripts/scale.sh cluster 75000`) turmoil's backlog of 64 Ki panicked ("server socket
    /// buffer full"); so does this test with it.
    #[test]
    fn more_devices_than_the_default_backlog_all_connect() {
        let users = sim::world::TCP_CAPACITY * 9 / 8;
        let (mut sim, answered) = sim(users, Duration::from_millis(50), 1);
        // Bounded: the first frames go out within a ping interval of the start.
        while answered.get() == 0 && sim.elapsed() < PING_EVERY {
            sim.step().expect("the raw baseline runs");
        }
        assert!(answered.get() > 0, "no frame answered");
    }
}
