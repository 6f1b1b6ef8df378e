//! Wire codecs shared by the connector and the fakes: one implementation of each format, so a
//! fake and the product can never disagree on what the bytes mean (independent clients —
//! slixmpp, jwcrypto, curl — check the formats themselves in the interop tests).
//!
//! - [`http`]: the HTTP request method (the core builds requests; drivers and fakes send them).
//! - [`xml`]: owned element tree and serializer.
//! - [`stream`]: sans-IO XMPP stream parser on rxml, with named size limits.
//! - [`text`]: a peer's text made safe to log (control characters escaped, length bounded).
//! - [`webex`]: the Webex cloud's JSON wire types (REST bodies, activities, events).
//! - [`xmpp`]: namespaces, JIDs and stanza constructors.

pub mod http;
pub mod jwe;
pub mod stream;
pub mod text;
pub mod webex;
pub mod xml;
pub mod xmpp;
