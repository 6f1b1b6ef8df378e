//! One read from a stream without a buffer held between reads (issue 16, memory per user):
//! a farm's Jabber devices and an IM&P node's connections each held a [`READ_BUF_BYTES`]
//! buffer for their whole life, 8 KiB per Jabber user, although a stream is idle almost all
//! of the time. [`read_some`] reads into a buffer on the stack of the poll that finds bytes
//! ready and hands back only those bytes.

use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::Poll;
use tokio::io::{AsyncRead, ReadBuf};

/// The most one read takes from a stream: what each reader used to keep allocated. Small on
/// purpose (it is on the stack of each poll): a stanza larger than this arrives in several
/// reads, as it did with the kept buffers.
pub const READ_BUF_BYTES: usize = 4 * 1024;

/// One read of at most [`READ_BUF_BYTES`] from `rd`, as `rd.read(&mut [0; READ_BUF_BYTES])`
/// would do it (the same poll, the same byte count), returning the bytes read: empty at the
/// end of the stream. Cancel-safe as `read` is: a poll that finds no bytes takes none.
pub async fn read_some<R: AsyncRead + Unpin>(rd: &mut R) -> std::io::Result<Vec<u8>> {
    poll_fn(|cx| {
        let mut stack = [MaybeUninit::<u8>::uninit(); READ_BUF_BYTES];
        let mut buf = ReadBuf::uninit(&mut stack);
        match Pin::new(&mut *rd).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().to_vec())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn reads_what_is_there_up_to_the_limit_then_the_end() {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        let sent: Vec<u8> = (0..READ_BUF_BYTES + 100).map(|i| (i % 251) as u8).collect();
        a.write_all(&sent).await.expect("written");
        drop(a);
        let first = read_some(&mut b).await.expect("read");
        assert_eq!(
            first.len(),
            READ_BUF_BYTES,
            "one read takes at most the limit"
        );
        let second = read_some(&mut b).await.expect("read");
        assert_eq!([first, second].concat(), sent);
        assert!(
            read_some(&mut b).await.expect("read").is_empty(),
            "end of stream"
        );
    }
}
