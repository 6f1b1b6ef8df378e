//! criterion benches, one group per area, fixed seeds. Run: `cargo bench -p benches`.
//!
//! - `codec`: XMPP stanza parse + serialize (the per-hop cost of every chat message), and
//!   parsing 1, 200 and 1,000 stanzas that arrive in one read (per stanza, as cheap as one
//!   alone: `parse_batch_N`).
//! - `crypto`: JWE A256GCM encrypt + decrypt of a 200-byte message.
//! - `translate`: the connector's per-message work in each direction: `translate+encrypt`
//!   (a parsed Jabber message with a 200-byte body → `translate::from_xmpp` → JWE encrypt
//!   with the space key) and `decrypt+translate` (JWE decrypt → `translate::to_xmpp` → the
//!   stanza serialized for the component link). Quote them against `crypto` from the same run.
//! - `scenario`: a whole small scenario, simulated seconds per wall second.

use benches::{body_200, chat_stanza, stream_header};
use connector::core::translate::{self, Activity};
use connector::proto::jwe::{self, SpaceKey};
use connector::proto::stream::{StreamEvent, StreamParser};
use connector::proto::xmpp;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::path::Path;

fn codec(c: &mut Criterion) {
    let stanza = chat_stanza();
    let wire = stanza.to_xml_in(xmpp::NS_CLIENT);
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("serialize_chat_message", |b| {
        b.iter(|| black_box(&stanza).to_xml_in(xmpp::NS_CLIENT))
    });
    let header = stream_header();
    g.bench_function("parse_chat_message", |b| {
        let mut p = StreamParser::new();
        p.feed(header.as_bytes());
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
        b.iter(|| {
            p.feed(black_box(wire.as_bytes()));
            match p.next_event() {
                Ok(Some(StreamEvent::Stanza(e))) => e,
                other => panic!("{other:?}"),
            }
        })
    });
    g.bench_function("parse_and_serialize_chat_message", |b| {
        let mut p = StreamParser::new();
        p.feed(header.as_bytes());
        let _ = p.next_event();
        b.iter(|| {
            p.feed(black_box(wire.as_bytes()));
            let Ok(Some(StreamEvent::Stanza(e))) = p.next_event() else {
                panic!()
            };
            e.to_xml_in(xmpp::NS_CLIENT)
        })
    });
    g.finish();
    codec_batch(c, &header, &wire);
}

/// Stanzas per read in `parse_batch_N`: one alone, and a busy component link's hundreds to
/// a thousand per segment.
const BATCH_STANZAS: [usize; 3] = [1, 200, 1000];

/// One read carrying N chat messages, parsed to the end, per stanza: it costs what one
/// stanza alone does whatever N is (the parser moves past consumed bytes with an offset and
/// drops them once per read; it used to move the rest of the read after every event).
fn codec_batch(c: &mut Criterion, header: &str, wire: &str) {
    for n in BATCH_STANZAS {
        let batch = wire.repeat(n);
        let mut g = c.benchmark_group("codec");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("parse_batch_{n}"), |b| {
            let mut p = StreamParser::new();
            p.feed(header.as_bytes());
            assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
            b.iter(|| {
                p.feed(black_box(batch.as_bytes()));
                let mut got = 0;
                while let Ok(Some(StreamEvent::Stanza(_))) = p.next_event() {
                    got += 1;
                }
                assert_eq!(got, n);
            })
        });
        g.finish();
    }
}

/// A fixed space key (the `crypto` and `translate` groups).
fn space_key() -> SpaceKey {
    SpaceKey {
        uri: "kms://kms/keys/00000000-0000-4000-8000-000000000001".into(),
        bytes: [7u8; 32],
    }
}

fn crypto(c: &mut Criterion) {
    let key = space_key();
    let body = body_200();
    let mut g = c.benchmark_group("crypto");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("jwe_encrypt_decrypt_200b", |b| {
        let mut iv = [0u8; 12];
        let mut n: u64 = 0;
        b.iter(|| {
            n += 1;
            iv[..8].copy_from_slice(&n.to_le_bytes());
            let token = jwe::encrypt(&key, iv, black_box(&body));
            jwe::decrypt(&key, &token).unwrap()
        })
    });
    g.finish();
}

fn translate(c: &mut Criterion) {
    let key = space_key();
    let body = String::from_utf8(body_200()).expect("ASCII body");
    let mut g = c.benchmark_group("translate");
    g.throughput(Throughput::Bytes(body.len() as u64));
    // Jabber → Webex: what the connector does with a message from a component link.
    let stanza = xmpp::chat_message(
        xmpp::NS_COMPONENT,
        "alice-desk-17",
        Some("alice@example.com/desk"),
        "bob@example.com",
        &body,
    );
    g.bench_function("translate+encrypt", |b| {
        let mut iv = [0u8; jwe::IV_BYTES];
        let mut n: u64 = 0;
        b.iter(|| {
            n += 1;
            iv[..8].copy_from_slice(&n.to_le_bytes());
            let activities = translate::from_xmpp(black_box(&stanza)).expect("a chat message");
            let Some(Activity::Post { text }) = activities.last() else {
                panic!("{activities:?}")
            };
            jwe::encrypt(&key, iv, text.as_bytes())
        })
    });
    // Webex → Jabber: what the connector does with an activity from the event socket.
    let token = jwe::encrypt(&key, [3; jwe::IV_BYTES], body.as_bytes());
    g.bench_function("decrypt+translate", |b| {
        let mut n: u64 = 0;
        b.iter(|| {
            let plain = jwe::decrypt(&key, black_box(&token)).expect("the space key");
            let text = String::from_utf8(plain).expect("UTF-8");
            let post = Activity::Post { text };
            let mut ids = || {
                n += 1;
                format!("hm-{n}")
            };
            let stanzas = translate::to_xmpp(
                &post,
                "alice@example.com/hm-webex",
                "bob@example.com",
                "Alice",
                &mut ids,
            );
            stanzas[0].to_xml_in(xmpp::NS_COMPONENT)
        })
    });
    g.finish();
}

fn scenario(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/smoke.yaml");
    let s = sim::load(&path).expect("smoke scenario is valid");
    let mut g = c.benchmark_group("scenario");
    g.sample_size(10);
    g.throughput(Throughput::Elements(s.duration.0.as_secs()));
    g.bench_function("smoke_sim_seconds", |b| {
        b.iter(|| {
            let out = sim::run::run(&s, s.seed, sim::run::Options::default(), &mut |_| {});
            assert!(out.failure.is_none());
            out.steps
        })
    });
    g.finish();
}

criterion_group!(benches, codec, crypto, translate, scenario);
criterion_main!(benches);
