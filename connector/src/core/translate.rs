//! Translation between Jabber's XMPP stanzas and Webex activities (spec 32-45), over a neutral
//! [`Activity`] model that the cloud client maps to and from its JSON. Pure functions: the
//! caller supplies ids.
//!
//! Rules, from the spec:
//! - plain text only: bodies pass through unchanged; Webex markdown is not rendered and
//!   XHTML-IM is not converted (spec 41);
//! - typing: XEP-0085 `composing` starts it, `paused`/`active`/`inactive`/`gone` stop it
//!   (spec 37);
//! - read: XEP-0333 `displayed` (or a XEP-0184 receipt) ↔ Webex read (spec 38);
//! - Webex delete → the notice "<Name> used Webex App to delete a previously posted message";
//!   the Jabber copy stays (spec 39), never a XEP-0424 retraction;
//! - Webex edit → the new text as a new message, then the delete notice (spec 40),
//!   never a XEP-0308 correction;
//! - Webex file → a link, as body text and a XEP-0066 URL; a deleted file → a notice (spec 43);
//! - a Jabber file transfer to a Webex user is refused; the Webex user is told "file sent in
//!   Jabber" (spec 43);
//! - group chat is never bridged (spec 42).

use crate::proto::xml::Element;
use crate::proto::xmpp::{self, NS_CHATSTATES, NS_CLIENT, NS_MARKERS, NS_OOB, NS_RECEIPTS};

/// The text Jabber shows when a Webex message is deleted (spec 39).
pub fn delete_notice(name: &str) -> String {
    format!("{name} used Webex App to delete a previously posted message")
}

/// The text Jabber shows when a Webex file is deleted (spec 43).
pub fn file_delete_notice(name: &str, file: &str) -> String {
    format!("{name} used Webex App to delete the file {file}")
}

/// The text the Webex user sees when a Jabber user tries to send a file (spec 43).
pub const FILE_FROM_JABBER_NOTICE: &str = "file sent in Jabber";

/// A bridged 1:1 activity, independent of both wire formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    /// A text message.
    Post {
        /// Plain text.
        text: String,
    },
    /// An edit: Webex deletes `replaces` and posts `text`.
    Edit {
        /// Id of the edited activity.
        replaces: String,
        /// The new text.
        text: String,
    },
    /// A deleted message.
    Delete {
        /// Id of the deleted activity.
        target: String,
    },
    /// A shared file.
    File {
        /// Download link.
        url: String,
        /// File name.
        name: String,
    },
    /// A deleted file.
    FileDeleted {
        /// Id of the file activity.
        target: String,
        /// File name.
        name: String,
    },
    /// The reader has read everything up to and including `up_to`.
    Read {
        /// Id of the last message read.
        up_to: String,
    },
    /// Typing started (`true`) or stopped.
    Typing(bool),
    /// A Jabber file-transfer attempt, refused; Webex shows a notice (spec 43).
    FileRefused,
}

/// Why a stanza is not bridged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotBridged {
    /// Group chat (spec 42).
    GroupChat,
    /// Errors, headlines and other non-chat stanzas.
    NotChat,
    /// A chat stanza with nothing translatable (e.g. a bare receipt request).
    Empty,
}

/// Jabber → Webex: the activities a 1:1 message stanza carries, in the order Webex should see
/// them (typing stop before the text, so the indicator clears as the message lands).
pub fn from_xmpp(msg: &Element) -> Result<Vec<Activity>, NotBridged> {
    match msg.attr("type").unwrap_or("normal") {
        "groupchat" => return Err(NotBridged::GroupChat),
        "chat" | "normal" => {}
        _ => return Err(NotBridged::NotChat),
    }
    let mut out = Vec::new();
    if let Some(state) = xmpp::chat_state(msg) {
        out.push(Activity::Typing(state == "composing"));
    }
    if msg.child("x", NS_OOB).is_some() || is_file_transfer(msg) {
        out.push(Activity::FileRefused);
    } else if let Some(text) = xmpp::body(msg) {
        out.push(Activity::Post { text });
    }
    let read = msg
        .child("displayed", NS_MARKERS)
        .or_else(|| msg.child("received", NS_RECEIPTS))
        .and_then(|m| m.attr("id"));
    if let Some(id) = read {
        out.push(Activity::Read {
            up_to: id.to_string(),
        });
    }
    if out.is_empty() {
        return Err(NotBridged::Empty);
    }
    Ok(out)
}

fn is_file_transfer(msg: &Element) -> bool {
    // Jingle file transfer and stream initiation offers travel in messages or IQs; any such
    // payload in a chat message is a transfer attempt.
    msg.elements().any(|e| {
        e.ns.starts_with("urn:xmpp:jingle:apps:file-transfer")
            || e.ns == "http://jabber.org/protocol/si"
    })
}

/// Webex → Jabber: the stanzas that carry `activity` from `from` (the Webex user's session JID)
/// to `to`. `ids` yields fresh stanza ids; `sender_name` is used in notices.
pub fn to_xmpp(
    activity: &Activity,
    from: &str,
    to: &str,
    sender_name: &str,
    ids: &mut dyn FnMut() -> String,
) -> Vec<Element> {
    let chat = |id: String, body: String| xmpp::chat_message(NS_CLIENT, &id, Some(from), to, &body);
    match activity {
        Activity::Post { text } => vec![chat(ids(), text.clone())],
        Activity::Edit { text, .. } => {
            vec![
                chat(ids(), text.clone()),
                chat(ids(), delete_notice(sender_name)),
            ]
        }
        Activity::Delete { .. } => vec![chat(ids(), delete_notice(sender_name))],
        Activity::File { url, name } => {
            let mut m = chat(ids(), format!("{name}: {url}"));
            m = m.with_child(
                Element::new("x", NS_OOB)
                    .with_child(Element::new("url", NS_OOB).with_text(url.clone()))
                    .with_child(Element::new("desc", NS_OOB).with_text(name.clone())),
            );
            vec![m]
        }
        Activity::FileDeleted { name, .. } => {
            vec![chat(ids(), file_delete_notice(sender_name, name))]
        }
        Activity::Read { up_to } => vec![
            Element::new("message", NS_CLIENT)
                .with_attr("type", "chat")
                .with_attr("id", ids())
                .with_attr("from", from)
                .with_attr("to", to)
                .with_child(Element::new("displayed", NS_MARKERS).with_attr("id", up_to.clone())),
        ],
        Activity::Typing(on) => vec![
            Element::new("message", NS_CLIENT)
                .with_attr("type", "chat")
                .with_attr("id", ids())
                .with_attr("from", from)
                .with_attr("to", to)
                .with_child(Element::new(
                    if *on { "composing" } else { "paused" },
                    NS_CHATSTATES,
                )),
        ],
        Activity::FileRefused => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("hm-{n}")
        }
    }

    #[test]
    fn jabber_text_with_chat_state_becomes_typing_stop_then_post() {
        let m = xmpp::chat_message(NS_CLIENT, "1", Some("bob@x/j"), "alice@x", "*hi* <b>");
        assert_eq!(
            from_xmpp(&m).unwrap(),
            vec![
                Activity::Typing(false),
                Activity::Post {
                    text: "*hi* <b>".into()
                }
            ]
        );
    }

    #[test]
    fn markers_and_typing() {
        let typing = Element::new("message", NS_CLIENT)
            .with_attr("type", "chat")
            .with_child(Element::new("composing", NS_CHATSTATES));
        assert_eq!(from_xmpp(&typing).unwrap(), vec![Activity::Typing(true)]);
        let read = Element::new("message", NS_CLIENT)
            .with_attr("type", "chat")
            .with_child(Element::new("displayed", NS_MARKERS).with_attr("id", "m7"));
        assert_eq!(
            from_xmpp(&read).unwrap(),
            vec![Activity::Read { up_to: "m7".into() }]
        );
    }

    #[test]
    fn group_chat_and_files_are_not_bridged() {
        let gc = Element::new("message", NS_CLIENT).with_attr("type", "groupchat");
        assert_eq!(from_xmpp(&gc), Err(NotBridged::GroupChat));
        let file = xmpp::chat_message(NS_CLIENT, "1", None, "a@x", "see file")
            .with_child(Element::new("x", NS_OOB));
        assert!(from_xmpp(&file).unwrap().contains(&Activity::FileRefused));
        let empty = Element::new("message", NS_CLIENT).with_attr("type", "chat");
        assert_eq!(from_xmpp(&empty), Err(NotBridged::Empty));
    }

    #[test]
    fn webex_edit_is_new_text_then_delete_notice() {
        let edit = Activity::Edit {
            replaces: "a1".into(),
            text: "fixed".into(),
        };
        let out = to_xmpp(&edit, "alice@x/hm-webex", "bob@x", "Alice", &mut counter());
        let bodies: Vec<String> = out.iter().filter_map(xmpp::body).collect();
        assert_eq!(
            bodies,
            vec![
                "fixed".to_string(),
                "Alice used Webex App to delete a previously posted message".to_string()
            ]
        );
        assert_eq!(out[0].attr("id"), Some("hm-1"));
        assert_eq!(out[1].attr("id"), Some("hm-2"));
    }

    #[test]
    fn webex_file_is_a_link_with_oob() {
        let f = Activity::File {
            url: "https://files.example/f/1".into(),
            name: "plan.pdf".into(),
        };
        let out = to_xmpp(&f, "alice@x/hm-webex", "bob@x", "Alice", &mut counter());
        assert_eq!(
            xmpp::body(&out[0]).unwrap(),
            "plan.pdf: https://files.example/f/1"
        );
        let url = out[0]
            .child("x", NS_OOB)
            .and_then(|x| x.child("url", NS_OOB))
            .map(Element::text);
        assert_eq!(url.as_deref(), Some("https://files.example/f/1"));
    }
}
