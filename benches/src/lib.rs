//! Shared fixtures for the criterion benches in `benches/hmsim.rs`: fixed inputs, fixed seeds,
//! so numbers compare across runs and machines only through ratios measured in the same run;
//! and the scale benches' pieces (`benches/scale.rs`): [`raw`], the raw-turmoil baseline of
//! the Large-node traffic shape, [`shape`], the harness runs of the same shape, and [`axl`],
//! discovery's paging through the fake AXL service.

pub mod axl;
pub mod raw;
pub mod shape;

use connector::proto::xml::Element;
use connector::proto::xmpp;

/// A chat message with a body, a chat state, a receipt request and a markable marker, as a
/// Jabber client sends it: the unit of work of every c2s hop.
pub fn chat_stanza() -> Element {
    xmpp::chat_message(
        xmpp::NS_CLIENT,
        "user00042.1.17",
        Some("user00042@example.com/jabber-1.0"),
        "user00007@example.com",
        "can you review the draft before the meeting at three, thanks",
    )
}

/// The stream header a parser must consume before stanzas.
pub fn stream_header() -> String {
    xmpp::stream_header(xmpp::NS_CLIENT, None, Some("example.com"), None)
}

/// A 200-byte message body (the size the issues quote).
pub fn body_200() -> Vec<u8> {
    let base = b"hello from webex, this is a two hundred byte message used by the crypto bench. ";
    base.iter().cycle().take(200).copied().collect()
}
