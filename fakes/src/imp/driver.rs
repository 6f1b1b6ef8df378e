//! The I/O driver of an IM&P node: accepts c2s connections on any [`Net`] backend and shuttles
//! bytes between sockets and the sans-IO [`ImpNode`].
//!
//! One task per connection; every task shares the node (single-threaded, `Rc<RefCell<_>>`) and
//! a table of per-connection outbound queues. Queues are bounded: a client that does not read
//! is disconnected rather than allowed to grow the node's memory.

use super::node::{ConnId, ImpNode, Transmit};
use connector::io::net::Net;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

/// The XMPP client port.
pub const C2S_PORT: u16 = 5222;
/// Outbound stanzas queued per connection before the node gives up on a slow reader. A
/// Jabber client drains its socket continuously; 1,024 covers a burst of offline messages.
pub const OUT_QUEUE_MAX: usize = 1_024;
/// Read buffer per connection. Small on purpose: 15,000 connections per node (PITFALLS).
pub const READ_BUF_BYTES: usize = 4 * 1024;

type Writers = Rc<RefCell<BTreeMap<ConnId, mpsc::Sender<Transmit>>>>;

/// Serves c2s on `port` until the listener fails. Restartable: state that must survive a
/// restart lives in the node's `NodeDb`, not here.
pub async fn serve_c2s<N: Net>(
    net: N,
    node: Rc<RefCell<ImpNode>>,
    port: u16,
) -> std::io::Result<()> {
    let listener = net.bind(port).await?;
    let writers: Writers = Rc::default();
    loop {
        let (stream, _) = net.accept(&listener).await?;
        let id = node.borrow_mut().open();
        let (tx, rx) = mpsc::channel(OUT_QUEUE_MAX);
        writers.borrow_mut().insert(id, tx);
        tokio::task::spawn_local(connection(
            net.clone(),
            node.clone(),
            writers.clone(),
            id,
            stream,
            rx,
        ));
    }
}

async fn connection<N: Net>(
    net: N,
    node: Rc<RefCell<ImpNode>>,
    writers: Writers,
    id: ConnId,
    stream: N::Stream,
    mut rx: mpsc::Receiver<Transmit>,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = vec![0u8; READ_BUF_BYTES];
    loop {
        tokio::select! {
            biased;
            out = rx.recv() => {
                let Some(first) = out else { break };
                if !write_batch(&mut wr, first, &mut rx).await {
                    break;
                }
            }
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    node.borrow_mut().input(net.now(), id, &buf[..n]);
                    dispatch(&node, &writers);
                }
            },
        }
    }
    writers.borrow_mut().remove(&id);
    node.borrow_mut().closed(net.now(), id);
    dispatch(&node, &writers);
}

/// Writes `first` and everything else already queued in one write; false once closed.
async fn write_batch<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    first: Transmit,
    rx: &mut mpsc::Receiver<Transmit>,
) -> bool {
    let mut out = String::new();
    let mut close = false;
    let mut next = Some(first);
    while let Some(t) = next {
        match t {
            Transmit::Bytes(b) => out.push_str(&b),
            Transmit::Close => {
                close = true;
                break;
            }
        }
        next = rx.try_recv().ok();
    }
    if !out.is_empty() && wr.write_all(out.as_bytes()).await.is_err() {
        return false;
    }
    if close {
        let _ = wr.shutdown().await;
        return false;
    }
    true
}

/// Moves the node's outputs to the connections' queues.
fn dispatch(node: &Rc<RefCell<ImpNode>>, writers: &Writers) {
    loop {
        let next = node.borrow_mut().poll_transmit();
        let Some((conn, t)) = next else { return };
        let full = match writers.borrow().get(&conn) {
            Some(tx) => tx.try_send(t).is_err(),
            None => false,
        };
        if full {
            tracing::warn!(conn, "outbound queue full: disconnecting slow client");
            writers.borrow_mut().remove(&conn);
            node.borrow_mut().closed(Default::default(), conn);
        }
    }
}
