//! criterion benches, one group per area, fixed seeds. Run: `cargo bench -p benches`.
//!
//! - `codec`: XMPP stanza parse + serialize (the per-hop cost of every chat message).
//! - `crypto`: JWE A256GCM encrypt + decrypt of a 200-byte message.
//! - `scenario`: a whole small scenario, simulated seconds per wall second.

use benches::{body_200, chat_stanza, stream_header};
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
}

fn crypto(c: &mut Criterion) {
    let key = SpaceKey {
        uri: "kms://kms/keys/00000000-0000-4000-8000-000000000001".into(),
        bytes: [7u8; 32],
    };
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

fn scenario(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/smoke.yaml");
    let s = sim::scenario::load(&path).expect("smoke scenario is valid");
    let mut g = c.benchmark_group("scenario");
    g.sample_size(10);
    g.throughput(Throughput::Elements(s.duration.0.as_secs()));
    g.bench_function("smoke_sim_seconds", |b| {
        b.iter(|| {
            let out = sim::runner::run(&s, s.seed, &mut |_| {});
            assert!(out.failure.is_none());
            out.steps
        })
    });
    g.finish();
}

criterion_group!(benches, codec, crypto, scenario);
criterion_main!(benches);
