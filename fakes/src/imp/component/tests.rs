//! The component port's tests: the sans-IO core, over turmoil, and the connector's contract.

pub(super) mod tests_support {
    pub(super) use super::sans_io::{SECRET, World};

    /// A world whose session limit is `max` (`None`: the default).
    pub(super) fn world(max: Option<usize>) -> World {
        World::new(super::super::ComponentConfig {
            sessions_max: max,
            ..World::cfg()
        })
    }
}

mod sans_io {
    use super::super::*;
    use crate::imp::directory::{NodeDb, UserRecord};
    use connector::proto::stream::StreamParser;
    use std::cell::RefCell;

    pub(super) const SECRET: &str = "s3cret";
    const DOMAIN: &str = "example.com";

    fn user(u: &str, home: &str) -> UserRecord {
        UserRecord {
            userid: u.into(),
            jid: format!("{u}@{DOMAIN}"),
            email: Some(format!("{u}@{DOMAIN}")),
            password: "pw".into(),
            home: home.into(),
        }
    }

    pub(super) struct World {
        pub(super) node: ImpNode,
        svc: ComponentService,
        /// Parsers of what each connection received.
        rx: BTreeMap<ConnId, StreamParser>,
        /// Connections closed by the node.
        closed: Vec<ConnId>,
    }

    impl World {
        pub(super) fn new(cfg: ComponentConfig) -> Self {
            Self::build(cfg, None)
        }

        /// The world, its node in PRG `prg` (restarted: its database says it ran before).
        fn build(cfg: ComponentConfig, prg: Option<crate::imp::PrgConfig>) -> Self {
            let dir = Rc::new(Directory::new([
                user("alice", "imp-a-1"),
                user("bob", "imp-a-1"),
                user("carol", "imp-a-2"),
            ]));
            let ncfg = NodeConfig {
                host: "imp-a-1".into(),
                domain: DOMAIN.into(),
                version: (14, 0),
                offline_storage: true,
                mdm: true,
            };
            let db = NodeDb {
                prg_started: prg.is_some(),
                ..NodeDb::default()
            };
            let node = ImpNode::new(ncfg.clone(), dir.clone(), Rc::new(RefCell::new(db)));
            let node = match prg {
                Some(p) => node.with_prg(p),
                None => node,
            };
            let svc = ComponentService::new(cfg, &ncfg, dir);
            Self {
                node,
                svc,
                rx: BTreeMap::new(),
                closed: Vec::new(),
            }
        }

        /// A world whose node imp-a-1 has just restarted in a PRG pair with imp-a-2 (its
        /// database says it ran before), high availability `ha`: `Unknown` until its peer's
        /// heartbeat says who serves whom.
        pub(super) fn restarted_in_pair(ha: bool) -> Self {
            let prg = crate::imp::PrgConfig {
                cluster: vec!["imp-a-1".into(), "imp-a-2".into()],
                high_availability: ha,
                automatic_fallback: false,
                heartbeat_timeout: Duration::from_secs(60),
                remote: Vec::new(),
            };
            Self::build(Self::cfg(), Some(prg))
        }

        pub(super) fn cfg() -> ComponentConfig {
            ComponentConfig {
                secret: SECRET.into(),
                sessions_max: None,
                create_rate: None,
            }
        }

        /// Drains the node's output and returns the stanzas each connection received.
        pub(super) fn drain(&mut self) -> BTreeMap<ConnId, Vec<Element>> {
            let mut got: BTreeMap<ConnId, Vec<Element>> = BTreeMap::new();
            while let Some((conn, t)) = self.node.poll_transmit() {
                match t {
                    Transmit::Close => self.closed.push(conn),
                    // Only c2s streams drain after their close; a link never gets it.
                    Transmit::Closing => {}
                    Transmit::Bytes(b) => {
                        let p = self.rx.entry(conn).or_default();
                        p.feed(b.as_bytes());
                        while let Ok(Some(ev)) = p.next_event() {
                            if let StreamEvent::Stanza(el) = ev {
                                got.entry(conn).or_default().push(el);
                            }
                        }
                    }
                }
            }
            got
        }

        pub(super) fn link_input(&mut self, link: ConnId, s: &str) -> Vec<Element> {
            self.svc
                .input(Duration::ZERO, &mut self.node, link, s.as_bytes());
            self.drain().remove(&link).unwrap_or_default()
        }

        fn link_at(&mut self, now: Duration, link: ConnId, s: &str) -> Vec<Element> {
            self.svc.input(now, &mut self.node, link, s.as_bytes());
            self.drain().remove(&link).unwrap_or_default()
        }

        /// Sends `s` on `link`; returns what every connection received.
        pub(super) fn link_send(
            &mut self,
            now: Duration,
            link: ConnId,
            s: &str,
        ) -> BTreeMap<ConnId, Vec<Element>> {
            self.svc.input(now, &mut self.node, link, s.as_bytes());
            self.drain()
        }

        /// Opens a link and completes the handshake with `secret`.
        pub(super) fn link(&mut self, secret: &str) -> (ConnId, Vec<Element>) {
            let link = self.svc.open(&mut self.node);
            self.svc.input(
                Duration::ZERO,
                &mut self.node,
                link,
                b"<stream:stream xmlns='jabber:component:accept' \
                  xmlns:stream='http://etherx.jabber.org/streams' to='hm.example.com'>",
            );
            let _ = self.drain();
            let id = format!("imp-a-1-c{link}");
            let hs = format!(
                "<handshake>{}</handshake>",
                xmpp::component_handshake(&id, secret)
            );
            let got = self.link_input(link, &hs);
            (link, got)
        }

        pub(super) fn c2s(&mut self, user: &str, resource: &str) -> ConnId {
            let c = self.node.open();
            let header = "<stream:stream xmlns='jabber:client' \
                xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";
            self.node.input(Duration::ZERO, c, header.as_bytes());
            let auth = format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
                xmpp::sasl_plain_response(user, "pw")
            );
            self.node.input(Duration::ZERO, c, auth.as_bytes());
            self.node.input(Duration::ZERO, c, header.as_bytes());
            let bind = format!(
                "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                 <resource>{resource}</resource></bind></iq>\
                 <iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq><presence/>"
            );
            self.node.input(Duration::ZERO, c, bind.as_bytes());
            let _ = self.drain();
            // The client restarted its stream after SASL: read what follows as a new stream.
            let mut p = StreamParser::new();
            p.feed(header.as_bytes());
            let _ = p.next_event();
            self.rx.insert(c, p);
            c
        }
    }

    fn session_iq(id: &str, action: &str, jid: &str) -> String {
        format!(
            "<iq type='set' id='{id}' from='hm.example.com' to='example.com'>\
             <session xmlns='urn:hmsim:hybrid-session:0' action='{action}' jid='{jid}'/></iq>"
        )
    }

    fn cond(el: &Element) -> Option<&str> {
        xmpp::error_condition(el)
    }

    /// Explore seed 9517: imp-a-1 came back from an automatic failover after imp-a-2 had
    /// taken its users over (and high availability was switched off, automatic fallback off,
    /// so they stay there). Restarted, imp-a-1 is `Unknown` until imp-a-2's heartbeat tells
    /// it so; its c2s port refuses logins meanwhile, but its component port opened the
    /// connector's sessions of its users by its stale view, then ended them with
    /// `see-other-host` once it knew it was Failed Over, and the connector (high availability
    /// off, as read at discovery) moved them nowhere. A node that does not know yet whom it
    /// serves holds no session: it asks the connector to come back (`wait`), and then
    /// redirects it to the node that serves the user.
    #[test]
    fn a_node_restarting_in_its_prg_opens_no_session_before_it_knows_whom_it_serves() {
        const ALICE: &str = "alice@example.com/hm-webex";
        let mut w = World::restarted_in_pair(false);
        assert_eq!(w.node.prg_state(), Some(crate::imp::PrgState::Unknown));
        let (link, _) = w.link(SECRET);
        let r = w.link_input(link, &session_iq("1", "start", ALICE));
        assert_eq!(r[0].attr("type"), Some("error"), "{r:?}");
        assert_eq!(cond(&r[0]), Some("resource-constraint"), "{r:?}");
        let kind = r[0]
            .child("error", xmpp::NS_COMPONENT)
            .and_then(|e| e.attr("type"));
        assert_eq!(kind, Some("wait"));
        assert_eq!(w.node.component_session_count(), 0);
        // imp-a-2's heartbeat: it serves imp-a-1's users (it took them over while imp-a-1 was
        // down). imp-a-1 is Failed Over, and sends the connector's retry to imp-a-2.
        let t = Duration::from_secs(6);
        let rc = w.node.open_router();
        w.node.input(t, rc, b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='imp-a-2' to='imp-a-1' version='1.0'>");
        w.node.input(t, rc, b"<message from='imp-a-2' to='imp-a-1'><prg xmlns='urn:hmsim:prg:0' action='heartbeat' state='5'><serve home='imp-a-1' server='imp-a-2' epoch='1'/><serve home='imp-a-2' server='imp-a-2' epoch='0'/></prg></message>");
        let _ = w.drain();
        assert_eq!(w.node.prg_state(), Some(crate::imp::PrgState::FailedOver));
        let r = w.link_at(t, link, &session_iq("2", "start", ALICE));
        assert_eq!(cond(&r[0]), Some("redirect"), "{r:?}");
        let to = r[0]
            .child("error", xmpp::NS_COMPONENT)
            .and_then(|e| e.child("redirect", xmpp::NS_STANZAS))
            .map(|e| e.text());
        assert_eq!(to.as_deref(), Some("imp-a-2"));
        assert_eq!(w.node.component_session_count(), 0);
    }

    #[test]
    fn handshake_with_the_right_secret_is_confirmed() {
        let mut w = World::new(World::cfg());
        let (link, got) = w.link(SECRET);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].is("handshake", xmpp::NS_COMPONENT));
        assert!(got[0].children.is_empty());
        assert!(!w.closed.contains(&link));
        assert_eq!(w.svc.stats().handshakes_ok, 1);
        // The header is XEP-0114 style: no version, deterministic id.
        let mut w = World::new(World::cfg());
        let link = w.svc.open(&mut w.node);
        w.svc.input(
            Duration::ZERO,
            &mut w.node,
            link,
            b"<stream:stream xmlns='jabber:component:accept' \
              xmlns:stream='http://etherx.jabber.org/streams' to='hm'>",
        );
        let Some((_, Transmit::Bytes(h))) = w.node.poll_transmit() else {
            panic!("no header")
        };
        assert!(h.contains(&format!("id='imp-a-1-c{link}'")), "{h}");
        let header = h.split("<stream:stream").nth(1).unwrap();
        assert!(!header.contains("version"), "{h}");
    }

    #[test]
    fn wrong_secret_is_not_authorized_and_closes() {
        let mut w = World::new(World::cfg());
        let (link, got) = w.link("wrong");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].is("error", NS_STREAM));
        assert!(
            got[0]
                .child("not-authorized", xmpp::NS_STREAMS_ERR)
                .is_some()
        );
        assert!(w.closed.contains(&link));
        assert_eq!(w.svc.stats().handshakes_failed, 1);
        // Anything but a handshake first is refused the same way.
        let mut w = World::new(World::cfg());
        let link = w.svc.open(&mut w.node);
        let got = w.link_input(
            link,
            &format!(
                "<stream:stream xmlns='jabber:component:accept' \
                 xmlns:stream='http://etherx.jabber.org/streams'>{}",
                session_iq("1", "start", "alice@example.com/hm")
            ),
        );
        assert!(
            got[0]
                .child("not-authorized", xmpp::NS_STREAMS_ERR)
                .is_some()
        );
        assert!(w.closed.contains(&link));
        assert_eq!(w.node.component_session_count(), 0);
    }

    #[test]
    fn session_start_stop_and_errors() {
        let mut w = World::new(World::cfg());
        let (link, _) = w.link(SECRET);
        let r = w.link_input(
            link,
            &session_iq("1", "start", "alice@example.com/hm-webex"),
        );
        assert_eq!(r[0].attr("type"), Some("result"), "{r:?}");
        assert_eq!(r[0].attr("id"), Some("1"));
        assert_eq!(r[0].attr("to"), Some("hm.example.com"));
        assert_eq!(w.node.component_session_count(), 1);
        // Starting it again is a takeover, still one session.
        let r = w.link_input(
            link,
            &session_iq("2", "start", "alice@example.com/hm-webex"),
        );
        assert_eq!(r[0].attr("type"), Some("result"));
        assert_eq!(w.node.component_session_count(), 1);

        let cases = [
            (
                session_iq("3", "start", "nobody@example.com/hm"),
                "item-not-found",
            ),
            (
                session_iq("4", "start", "alice@other.org/hm"),
                "item-not-found",
            ),
            (
                session_iq("5", "start", "alice@example.com"),
                "jid-malformed",
            ),
            (session_iq("6", "start", "@@"), "jid-malformed"),
            (
                session_iq("7", "jump", "alice@example.com/hm"),
                "bad-request",
            ),
            (session_iq("8", "start", "carol@example.com/hm"), "redirect"),
        ];
        for (iq, want) in cases {
            let r = w.link_input(link, &iq);
            assert_eq!(r[0].attr("type"), Some("error"), "{iq}");
            assert_eq!(cond(&r[0]), Some(want), "{iq}");
        }
        let r = w.link_input(link, &session_iq("8", "start", "carol@example.com/hm"));
        let redirect = r[0]
            .child("error", xmpp::NS_COMPONENT)
            .and_then(|e| e.child("redirect", xmpp::NS_STANZAS))
            .unwrap();
        assert_eq!(redirect.text(), "imp-a-2", "the home node");
        let get = "<iq type='get' id='g'><session xmlns='urn:hmsim:hybrid-session:0' \
                   action='start' jid='alice@example.com/x'/></iq>";
        assert_eq!(cond(&w.link_input(link, get)[0]), Some("bad-request"));

        let r = w.link_input(link, &session_iq("9", "stop", "alice@example.com/hm-webex"));
        assert_eq!(r[0].attr("type"), Some("result"));
        assert_eq!(w.node.component_session_count(), 0);
        // Stop is idempotent.
        let r = w.link_input(
            link,
            &session_iq("10", "stop", "alice@example.com/hm-webex"),
        );
        assert_eq!(r[0].attr("type"), Some("result"));
        assert_eq!(w.svc.stats().sessions_stopped, 1);
    }

    #[test]
    fn connector_sessions_count_against_the_nodes_jsm_limit_not_the_homed_users() {
        // No cap of the port's own: only the node's JSM limit (spec 10), not 1.5 × the two
        // users homed here.
        let mut w = World::new(World::cfg());
        assert_eq!(w.svc.sessions_max(), usize::MAX);
        w.node = std::mem::replace(&mut w.node, World::new(World::cfg()).node)
            .with_jsm_sessions_max(Some(1));
        let (link, _) = w.link(SECRET);
        let r = w.link_input(link, &session_iq("1", "start", "alice@example.com/hm"));
        assert_eq!(r[0].attr("type"), Some("result"));
        let r = w.link_input(link, &session_iq("2", "start", "bob@example.com/hm"));
        assert_eq!(cond(&r[0]), Some("resource-constraint"));
        assert_eq!(w.node.stats().jsm_refused_sessions, 1);
        assert_eq!(w.svc.stats().refused_capacity, 1);
    }

    #[test]
    fn an_explicit_session_cap_refuses_beyond_it() {
        let mut w = World::new(ComponentConfig {
            sessions_max: Some(1),
            ..World::cfg()
        });
        let (link, _) = w.link(SECRET);
        let r = w.link_input(link, &session_iq("1", "start", "alice@example.com/hm"));
        assert_eq!(r[0].attr("type"), Some("result"));
        let r = w.link_input(link, &session_iq("2", "start", "bob@example.com/hm"));
        assert_eq!(cond(&r[0]), Some("resource-constraint"));
        assert_eq!(
            r[0].child("error", xmpp::NS_COMPONENT)
                .unwrap()
                .attr("type"),
            Some("wait")
        );
        // A takeover of an existing session is not a new session.
        let r = w.link_input(link, &session_iq("3", "start", "alice@example.com/hm"));
        assert_eq!(r[0].attr("type"), Some("result"));
        assert_eq!(w.svc.stats().refused_capacity, 1);
    }

    #[test]
    fn rate_limit_gives_resource_constraint_then_recovers() {
        let mut w = World::new(ComponentConfig {
            sessions_max: Some(100),
            create_rate: Some(CreateRate {
                sessions: 2,
                per: Duration::from_secs(10),
            }),
            ..World::cfg()
        });
        let (link, _) = w.link(SECRET);
        let t0 = Duration::from_secs(100);
        let start = |w: &mut World, t, id: &str, res: &str| {
            let r = w.link_at(
                t,
                link,
                &session_iq(id, "start", &format!("alice@example.com/{res}")),
            );
            r[0].clone()
        };
        assert_eq!(start(&mut w, t0, "1", "a").attr("type"), Some("result"));
        assert_eq!(start(&mut w, t0, "2", "b").attr("type"), Some("result"));
        let refused = start(&mut w, t0, "3", "c");
        assert_eq!(cond(&refused), Some("resource-constraint"));
        assert_eq!(
            xmpp::error_text(&refused).as_deref(),
            Some("session creation rate exceeded")
        );
        // One interval later, one more token.
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(start(&mut w, t1, "4", "c").attr("type"), Some("result"));
        assert_eq!(
            cond(&start(&mut w, t1, "5", "d")),
            Some("resource-constraint")
        );
        assert_eq!(w.svc.stats().refused_rate, 2);
    }

    #[test]
    fn a_session_is_a_device_of_its_user() {
        let mut w = World::new(World::cfg());
        let (link, _) = w.link(SECRET);
        w.link_input(
            link,
            &session_iq("1", "start", "alice@example.com/hm-webex"),
        );
        let alice_jabber = w.c2s("alice", "jabber");
        let bob = w.c2s("bob", "jabber");

        // Bob → alice (bare): alice's Jabber and the session both get it, the session with
        // `to` = its full JID.
        w.node.input(
            Duration::ZERO,
            bob,
            b"<message to='alice@example.com' type='chat' id='m1'><body>hi</body></message>",
        );
        let got = w.drain();
        let to_link = &got[&link];
        assert_eq!(to_link.len(), 1, "{got:?}");
        assert_eq!(to_link[0].attr("to"), Some("alice@example.com/hm-webex"));
        assert_eq!(to_link[0].attr("from"), Some("bob@example.com/jabber"));
        assert!(to_link[0].is("message", xmpp::NS_COMPONENT));
        assert_eq!(xmpp::body(&to_link[0]).as_deref(), Some("hi"));
        assert_eq!(
            got.get(&alice_jabber).map(Vec::len),
            Some(1),
            "{got:?} {:?}",
            w.node.stats()
        );

        // Alice's own send from Jabber reaches the session as a sent carbon.
        w.node.input(
            Duration::ZERO,
            alice_jabber,
            b"<message to='bob@example.com' type='chat' id='m2'><body>yo</body></message>",
        );
        let got = w.drain();
        let carbon = &got[&link][0];
        assert_eq!(carbon.attr("to"), Some("alice@example.com/hm-webex"));
        assert!(
            carbon.child("sent", xmpp::NS_CARBONS).is_some(),
            "{carbon:?}"
        );

        // The connector sends as the session: bob gets it from alice's session JID, and
        // alice's Jabber gets a carbon.
        let r = w.link_input(
            link,
            "<message from='alice@example.com/hm-webex' to='bob@example.com' type='chat' \
             id='w1'><body>from webex</body></message>",
        );
        assert!(r.is_empty(), "{r:?}");
        let got = w.drain();
        assert!(got.is_empty());
        // (outputs were already drained by link_input; replay to look at them)
        w.svc.input(
            Duration::ZERO,
            &mut w.node,
            link,
            b"<message from='alice@example.com/hm-webex' to='bob@example.com' type='chat' \
              id='w2'><body>again</body></message>",
        );
        let got = w.drain();
        let m = &got[&bob][0];
        assert_eq!(m.attr("from"), Some("alice@example.com/hm-webex"));
        assert!(m.is("message", xmpp::NS_CLIENT));
        assert_eq!(xmpp::body(m).as_deref(), Some("again"));
        assert!(
            got[&alice_jabber][0]
                .child("sent", xmpp::NS_CARBONS)
                .is_some()
        );

        // A stanza from a JID without a session is refused.
        let r = w.link_input(
            link,
            "<message from='bob@example.com/hm' to='alice@example.com' type='chat' id='x'>\
             <body>spoof</body></message>",
        );
        assert_eq!(cond(&r[0]), Some("not-allowed"));

        // Closing the link ends the session: alice's bare JID reaches only Jabber now.
        w.svc.closed(Duration::ZERO, &mut w.node, link);
        assert_eq!(w.node.component_session_count(), 0);
        w.node.input(
            Duration::ZERO,
            bob,
            b"<message to='alice@example.com' type='chat' id='m3'><body>2</body></message>",
        );
        let got = w.drain();
        assert!(!got.contains_key(&link));
        assert_eq!(got[&alice_jabber].len(), 1);
    }

    #[test]
    fn jabber_client_taking_the_resource_ends_the_session_with_a_notice() {
        let mut w = World::new(World::cfg());
        let (link, _) = w.link(SECRET);
        w.link_input(
            link,
            &session_iq("1", "start", "alice@example.com/hm-webex"),
        );
        let c = w.node.open();
        let header = "<stream:stream xmlns='jabber:client' \
            xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";
        w.node.input(Duration::ZERO, c, header.as_bytes());
        let auth = format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            xmpp::sasl_plain_response("alice", "pw")
        );
        w.node.input(Duration::ZERO, c, auth.as_bytes());
        w.node.input(Duration::ZERO, c, header.as_bytes());
        w.node.input(
            Duration::ZERO,
            c,
            b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
              <resource>hm-webex</resource></bind></iq>",
        );
        let got = w.drain();
        let notice = &got[&link][0];
        let s = notice.child("session", xmpp::NS_HM_SESSION).unwrap();
        assert_eq!(s.attr("action"), Some("stop"));
        assert_eq!(s.attr("jid"), Some("alice@example.com/hm-webex"));
        assert_eq!(w.node.component_session_count(), 0);
        assert!(!w.closed.contains(&link), "the link itself stays up");
        // And a session cannot take a resource a Jabber client holds.
        let r = w.link_input(
            link,
            &session_iq("2", "start", "alice@example.com/hm-webex"),
        );
        assert_eq!(cond(&r[0]), Some("conflict"));
    }

    #[test]
    fn ping_close_and_stream_errors() {
        let mut w = World::new(World::cfg());
        let (link, _) = w.link(SECRET);
        let r = w.link_input(
            link,
            "<iq type='get' id='p' from='hm.example.com' to='example.com'>\
             <ping xmlns='urn:xmpp:ping'/></iq>",
        );
        assert_eq!(r[0].attr("type"), Some("result"));
        let r = w.link_input(link, "<bogus/>");
        assert!(
            r[0].child("unsupported-stanza-type", xmpp::NS_STREAMS_ERR)
                .is_some()
        );
        assert!(w.closed.contains(&link));

        let mut w = World::new(World::cfg());
        let (link, _) = w.link(SECRET);
        w.link_input(link, &session_iq("1", "start", "alice@example.com/hm"));
        w.link_input(link, "</stream:stream>");
        assert!(w.closed.contains(&link));
        assert_eq!(w.node.component_session_count(), 0);

        let mut w = World::new(World::cfg());
        let (link, _) = w.link(SECRET);
        let r = w.link_input(link, "<message><body></message>");
        assert!(
            r[0].child("not-well-formed", xmpp::NS_STREAMS_ERR)
                .is_some()
        );
    }

    #[test]
    fn too_many_links_are_refused() {
        let mut w = World::new(World::cfg());
        for _ in 0..COMPONENT_LINKS_MAX {
            let (l, _) = w.link(SECRET);
            assert!(!w.closed.contains(&l));
        }
        let (l, _) = w.link(SECRET);
        let _ = w.drain();
        assert!(w.closed.contains(&l));
    }

    #[test]
    fn idle_unauthenticated_links_do_not_lock_the_connector_out() {
        let mut w = World::new(World::cfg());
        let idle: Vec<ConnId> = (0..COMPONENT_LINKS_MAX)
            .map(|_| w.svc.open(&mut w.node))
            .collect();
        let _ = w.drain();
        let refused = idle.iter().filter(|i| w.closed.contains(i)).count();
        assert_eq!(refused, COMPONENT_LINKS_MAX - COMPONENT_PENDING_LINKS_MAX);
        // The handshake timeout closes the idle ones that were let in.
        for i in &idle {
            w.svc.handshake_timed_out(&mut w.node, *i);
        }
        let _ = w.drain();
        assert_eq!(
            w.svc.stats().handshake_timeouts,
            COMPONENT_PENDING_LINKS_MAX as u64
        );
        let (l, _) = w.link(SECRET);
        let _ = w.drain();
        assert!(!w.closed.contains(&l), "the connector's link is refused");
        assert!(w.svc.is_authenticated(l));
        w.svc.handshake_timed_out(&mut w.node, l);
        assert!(
            !w.closed.contains(&l),
            "an authenticated link has no handshake timeout"
        );
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..8),
            handshake_first in proptest::bool::ANY,
        ) {
            let mut w = World::new(World::cfg());
            let link = if handshake_first { w.link(SECRET).0 } else { w.svc.open(&mut w.node) };
            for c in &chunks {
                w.svc.input(Duration::ZERO, &mut w.node, link, c);
                let _ = w.drain();
            }
            w.svc.closed(Duration::ZERO, &mut w.node, link);
            proptest::prop_assert_eq!(w.node.component_session_count(), 0);
        }

        #[test]
        fn random_stanzas_never_panic(
            stanzas in proptest::collection::vec(
                proptest::sample::select(vec![
                    "<iq type='set' id='1'><session xmlns='urn:hmsim:hybrid-session:0' action='start' jid='alice@example.com/hm'/></iq>",
                    "<iq type='set' id='2'><session xmlns='urn:hmsim:hybrid-session:0' action='stop' jid='alice@example.com/hm'/></iq>",
                    "<iq type='set'><session xmlns='urn:hmsim:hybrid-session:0'/></iq>",
                    "<message from='alice@example.com/hm' to='bob@example.com' type='chat'><body>x</body></message>",
                    "<message from='alice@example.com/hm' to='nobody@x' type='chat'><body>x</body></message>",
                    "<message from='alice@example.com/hm' to='@@'/>",
                    "<presence from='alice@example.com/hm'/>",
                    "<presence from='alice@example.com/hm' type='unavailable'/>",
                    "<iq from='alice@example.com/hm' type='get' id='3'><ping xmlns='urn:xmpp:ping'/></iq>",
                    "<iq type='result' id='4'/>",
                    "<handshake>00</handshake>",
                    "<x/>",
                ]),
                0..12,
            ),
        ) {
            let mut w = World::new(World::cfg());
            let (link, _) = w.link(SECRET);
            for s in &stanzas {
                w.svc.input(Duration::ZERO, &mut w.node, link, s.as_bytes());
                let _ = w.drain();
            }
        }
    }
}

/// The whole node served over turmoil's network: the component port and AXL reached by
/// clients on another host, through [`super::driver::serve_node`].
mod turmoil_tests {
    use super::super::*;
    use crate::imp::axl::{AxlAccount, AxlNode, AxlService};
    use crate::imp::directory::{NodeDb, UserRecord};
    use crate::imp::driver::{NodePorts, serve_node};
    use connector::io::net::TurmoilNet;
    use std::cell::RefCell;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn node_host()
    -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = turmoil::Result>>> {
        || {
            let dir = Rc::new(Directory::new([UserRecord {
                userid: "alice".into(),
                jid: "alice@example.com".into(),
                email: Some("alice@example.com".into()),
                password: "pw".into(),
                home: "imp-1".into(),
            }]));
            let cfg = NodeConfig {
                host: "imp-1".into(),
                domain: "example.com".into(),
                version: (14, 0),
                offline_storage: true,
                mdm: true,
            };
            let comp = ComponentService::new(
                ComponentConfig {
                    secret: "s".into(),
                    sessions_max: None,
                    create_rate: None,
                },
                &cfg,
                dir.clone(),
            );
            let axl = AxlService::new(
                vec![AxlAccount {
                    username: "axl".into(),
                    password: "pw".into(),
                    axl_role: true,
                }],
                vec![AxlNode {
                    name: "imp-1".into(),
                    description: String::new(),
                    version: "14.0".into(),
                    prg_peer: None,
                    prg_high_availability: false,
                }],
                dir.clone(),
                Vec::new(),
            );
            let node = Rc::new(RefCell::new(ImpNode::new(
                cfg,
                dir,
                Rc::new(RefCell::new(NodeDb::default())),
            )));
            Box::pin(async move {
                serve_node(
                    TurmoilNet,
                    node,
                    Rc::new(RefCell::new(comp)),
                    Rc::new(RefCell::new(axl)),
                    NodePorts::default(),
                    || {},
                )
                .await?;
                Ok(())
            })
        }
    }

    async fn read_until(s: &mut turmoil::net::TcpStream, needle: &str) -> String {
        let mut got = String::new();
        let mut buf = [0u8; 1024];
        while !got.contains(needle) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before {needle:?}: {got}");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        got
    }

    /// Reads until the peer closes (or 1 MiB); what it sent.
    async fn read_to_close(s: &mut turmoil::net::TcpStream) -> String {
        let mut got = String::new();
        let mut buf = [0u8; 1024];
        while got.len() < 1 << 20 {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        got
    }

    #[test]
    fn silent_c2s_and_component_links_are_closed_in_time() {
        let mut sim = turmoil::Builder::new()
            .rng_seed(7)
            .simulation_duration(Duration::from_secs(300))
            .build();
        sim.host("imp-1", node_host());
        sim.client("idler", async {
            let start = tokio::time::Instant::now(); // allow-nondeterminism: turmoil's simulated clock
            let mut c = turmoil::net::TcpStream::connect(("imp-1", COMPONENT_PORT)).await?;
            let got = read_to_close(&mut c).await;
            assert!(got.contains("connection-timeout"), "{got}");
            let waited = start.elapsed();
            assert!(waited >= COMPONENT_HANDSHAKE_TIMEOUT, "{waited:?}");
            assert!(waited < COMPONENT_HANDSHAKE_TIMEOUT * 2, "{waited:?}");
            let start = tokio::time::Instant::now(); // allow-nondeterminism: turmoil's simulated clock
            let mut c = turmoil::net::TcpStream::connect(("imp-1", 5222)).await?;
            c.write_all(
                b"<stream:stream xmlns='jabber:client' \
                  xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>",
            )
            .await?;
            let got = read_to_close(&mut c).await;
            assert!(got.contains("connection-timeout"), "{got}");
            let waited = start.elapsed();
            let limit = crate::imp::driver::C2S_AUTH_TIMEOUT;
            assert!(waited >= limit && waited < limit * 2, "{waited:?}");
            Ok(())
        });
        sim.run().unwrap();
    }

    /// A component link through the handshake (secret "s").
    async fn component_link() -> std::io::Result<turmoil::net::TcpStream> {
        let mut c = turmoil::net::TcpStream::connect(("imp-1", COMPONENT_PORT)).await?;
        c.write_all(
            b"<stream:stream xmlns='jabber:component:accept' \
              xmlns:stream='http://etherx.jabber.org/streams' to='hm.example.com'>",
        )
        .await?;
        let header = read_until(&mut c, ">").await;
        let id = header
            .split("id='")
            .nth(1)
            .and_then(|r| r.split('\'').next())
            .unwrap()
            .to_string();
        let hs = format!(
            "<handshake>{}</handshake>",
            xmpp::component_handshake(&id, "s")
        );
        c.write_all(hs.as_bytes()).await?;
        read_until(&mut c, "<handshake/>").await;
        Ok(c)
    }

    /// A c2s stream logged in as alice and bound to `resource`.
    async fn c2s_login(resource: &str) -> std::io::Result<turmoil::net::TcpStream> {
        let mut c = turmoil::net::TcpStream::connect(("imp-1", 5222)).await?;
        let open = "<stream:stream xmlns='jabber:client' \
                    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";
        c.write_all(open.as_bytes()).await?;
        read_until(&mut c, "</stream:features>").await;
        let plain = xmpp::sasl_plain_response("alice", "pw");
        let auth = format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>"
        );
        c.write_all(auth.as_bytes()).await?;
        read_until(&mut c, "<success").await;
        c.write_all(open.as_bytes()).await?;
        read_until(&mut c, "</stream:features>").await;
        let bind = format!(
            "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>{resource}</resource></bind></iq>"
        );
        c.write_all(bind.as_bytes()).await?;
        read_until(&mut c, "id='b1'").await;
        Ok(c)
    }

    /// Issue 14 item 3: a logged-in c2s stream or an authenticated component link that goes
    /// silent stayed open forever. Now each gets `<connection-timeout/>` after its idle timeout;
    /// one that keeps pinging (as Jabber and the connector do, every 30 s) stays open.
    #[test]
    fn silent_logged_in_links_are_closed_and_pinging_ones_kept() {
        use crate::imp::driver::{IDLE_TIMEOUT_C2S, IDLE_TIMEOUT_COMPONENT};
        let mut sim = turmoil::Builder::new()
            .rng_seed(7)
            .simulation_duration(Duration::from_secs(600))
            .build();
        sim.host("imp-1", node_host());
        sim.client("idler", async {
            let start = tokio::time::Instant::now(); // allow-nondeterminism: turmoil's simulated clock
            let mut c = c2s_login("idle").await?;
            let got = read_to_close(&mut c).await;
            assert!(got.contains("connection-timeout"), "{got}");
            let waited = start.elapsed();
            assert!(waited >= IDLE_TIMEOUT_C2S, "{waited:?}");
            assert!(waited < IDLE_TIMEOUT_C2S * 2, "{waited:?}");

            let start = tokio::time::Instant::now(); // allow-nondeterminism: turmoil's simulated clock
            let mut c = component_link().await?;
            let got = read_to_close(&mut c).await;
            assert!(got.contains("connection-timeout"), "{got}");
            let waited = start.elapsed();
            assert!(waited >= IDLE_TIMEOUT_COMPONENT, "{waited:?}");
            assert!(waited < IDLE_TIMEOUT_COMPONENT * 2, "{waited:?}");
            Ok(())
        });
        sim.client("pinger", async {
            let mut c = c2s_login("pinging").await?;
            let mut l = component_link().await?;
            for i in 0..10 {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let ping = format!(
                    "<iq type='get' id='p{i}' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>"
                );
                c.write_all(ping.as_bytes()).await?;
                read_until(&mut c, &format!("id='p{i}'")).await;
                let ping = format!(
                    "<iq type='get' id='q{i}' to='imp-1'><ping xmlns='urn:xmpp:ping'/></iq>"
                );
                l.write_all(ping.as_bytes()).await?;
                read_until(&mut l, &format!("id='q{i}'")).await;
            }
            Ok(())
        });
        sim.run().unwrap();
    }

    #[test]
    fn component_and_axl_over_turmoil() {
        let mut sim = turmoil::Builder::new()
            .rng_seed(7)
            .simulation_duration(Duration::from_secs(60))
            .build();
        sim.host("imp-1", node_host());
        sim.client("connector", async {
            // AXL through hyper's client over a turmoil stream.
            let s = turmoil::net::TcpStream::connect(("imp-1", crate::imp::axl::AXL_PORT)).await?;
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s)).await?;
            tokio::task::spawn_local(conn);
            let body = "<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'>\
                        <soapenv:Body><ns:listProcessNode xmlns:ns='http://www.cisco.com/AXL/API/14.0'/>\
                        </soapenv:Body></soapenv:Envelope>";
            let req = hyper::Request::post("/axl/")
                .header("host", "imp-1")
                .header("authorization", "Basic YXhsOnB3") // axl:pw
                .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))?;
            let resp = send.send_request(req).await?;
            assert_eq!(resp.status(), 200);
            use http_body_util::BodyExt as _;
            let bytes = resp.into_body().collect().await?.to_bytes();
            assert!(String::from_utf8_lossy(&bytes).contains("<name>imp-1</name>"));

            // The component port: handshake, then a session.
            let mut c =
                turmoil::net::TcpStream::connect(("imp-1", COMPONENT_PORT)).await?;
            c.write_all(
                b"<stream:stream xmlns='jabber:component:accept' \
                  xmlns:stream='http://etherx.jabber.org/streams' to='hm.example.com'>",
            )
            .await?;
            let header = read_until(&mut c, ">").await;
            let id = header
                .split("id='")
                .nth(1)
                .and_then(|r| r.split('\'').next())
                .unwrap()
                .to_string();
            let hs = format!("<handshake>{}</handshake>", xmpp::component_handshake(&id, "s"));
            c.write_all(hs.as_bytes()).await?;
            read_until(&mut c, "<handshake/>").await;
            c.write_all(
                b"<iq type='set' id='s1'><session xmlns='urn:hmsim:hybrid-session:0' \
                  action='start' jid='alice@example.com/hm-webex'/></iq>",
            )
            .await?;
            let r = read_until(&mut c, "id='s1'").await;
            assert!(r.contains("type='result'"), "{r}");
            Ok(())
        });
        sim.run().unwrap();
    }
}

/// The fake against the connector's own session manager (`connector::core::sessions`): the
/// IQs it sends are understood here and the answers are understood there.
mod connector_contract {
    use super::tests_support::*;
    use connector::core::limiter::TokenBucket;
    use connector::core::sessions::{SessionManager, SessionState};
    use connector::proto::xmpp;
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::SeedableRng as _;
    use std::time::Duration;

    #[test]
    fn session_manager_opens_and_is_refused_as_it_expects() {
        let mut w = world(Some(1));
        let (link, _) = w.link(SECRET);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let t0 = Duration::ZERO;
        let mut m = SessionManager::new("hm.exp-a-1", TokenBucket::new(100.0, 100.0, t0));
        m.node_up("imp-a-1", t0);
        m.want("alice@example.com", "alice@example.com", "imp-a-1", t0);
        m.want("bob@example.com", "bob@example.com", "imp-a-1", t0);
        m.want("carol@example.com", "carol@example.com", "imp-a-1", t0);
        m.want("zed@example.com", "zed@example.com", "imp-a-1", t0);
        let cmds: Vec<_> = std::iter::from_fn(|| m.poll_command()).collect();
        assert_eq!(cmds.len(), 4);
        for c in &cmds {
            assert_eq!(c.node, "imp-a-1");
            let replies = w.link_input(link, &c.iq.to_xml_in(xmpp::NS_COMPONENT));
            assert_eq!(replies.len(), 1, "{replies:?}");
            assert!(m.handle_iq(&replies[0], t0, &mut rng), "{:?}", replies[0]);
        }
        assert_eq!(m.state("alice@example.com"), Some(&SessionState::Open));
        assert!(matches!(
            m.state("bob@example.com"),
            Some(SessionState::Backoff { .. })
        ));
        assert!(matches!(
            m.state("carol@example.com"),
            Some(SessionState::Failed { condition }) if condition == "redirect"
        ));
        assert!(matches!(
            m.state("zed@example.com"),
            Some(SessionState::Failed { condition }) if condition == "item-not-found"
        ));
        assert_eq!(w.node.component_session_count(), 1);
        let (session, _) = w
            .node
            .component_session(
                &xmpp::Jid::parse(&SessionManager::session_jid("alice@example.com")).unwrap(),
            )
            .unwrap();
        assert!(session > 0);
    }

    /// Maintenance mode (spec 29) moves a user between connector nodes: the old node releases
    /// the session instead of stopping it, so a message sent before the new node's session
    /// opens still reaches a connector, and the new node's start takes it over.
    #[test]
    fn a_released_session_carries_messages_until_the_new_node_takes_it_over() {
        const ALICE: &str = "alice@example.com";
        let mut w = world(None);
        let (old_link, _) = w.link(SECRET);
        let (new_link, _) = w.link(SECRET);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let t0 = Duration::ZERO;
        let manager = |name: &str| {
            let mut m = SessionManager::new(name, TokenBucket::new(100.0, 100.0, t0));
            m.node_up("imp-a-1", t0);
            m
        };
        let (mut old, mut new) = (manager("hm.exp-a-2"), manager("hm.exp-a-1"));
        old.want(ALICE, ALICE, "imp-a-1", t0);
        let start = old.poll_command().unwrap();
        let r = w.link_input(old_link, &start.iq.to_xml_in(xmpp::NS_COMPONENT));
        assert!(old.handle_iq(&r[0], t0, &mut rng));
        let alice = w.c2s("alice", "jabber");

        let t1 = Duration::from_secs(960);
        old.release(ALICE, t1);
        assert!(old.poll_command().is_none(), "no stop before the takeover");
        // Alice writes from Jabber before the new node has a session: her session on the old
        // node still gets the sent carbon, which the old node bridges.
        w.node.input(
            t1,
            alice,
            b"<message to='bob@example.com' type='chat' id='m1'><body>hi</body></message>",
        );
        let got = w.drain();
        let carbon = &got[&old_link][0];
        assert!(carbon.child("sent", xmpp::NS_CARBONS).is_some(), "{got:?}");

        // The new node opens: it takes the session over and the old node is told.
        new.want(ALICE, ALICE, "imp-a-1", t1);
        let start = new.poll_command().unwrap();
        let got = w.link_send(t1, new_link, &start.iq.to_xml_in(xmpp::NS_COMPONENT));
        assert!(new.handle_iq(&got[&new_link][0], t1, &mut rng));
        assert_eq!(new.state(ALICE), Some(&SessionState::Open));
        let notice = got[&old_link][0]
            .child("session", xmpp::NS_HM_SESSION)
            .unwrap();
        assert_eq!(notice.attr("reason"), Some(xmpp::SESSION_TAKEN_OVER));
        old.ended_by_node(ALICE, xmpp::SESSION_TAKEN_OVER);
        assert_eq!(old.handovers(), 0);
        assert_eq!(old.stats().handovers_taken_over, 1);
        old.handle_timeout(t1 + connector::core::sessions::HANDOVER_MAX);
        assert!(
            old.poll_command().is_none(),
            "the old node never stops the new session"
        );
        assert_eq!(w.node.component_session_count(), 1);

        // From now on the new node's session gets alice's messages.
        w.node.input(
            t1,
            alice,
            b"<message to='bob@example.com' type='chat' id='m2'><body>yo</body></message>",
        );
        let got = w.drain();
        assert!(!got.contains_key(&old_link), "{got:?}");
        assert!(got[&new_link][0].child("sent", xmpp::NS_CARBONS).is_some());
    }
}
