//! Spaces and keys: the answers of space, space-info and key fetches.

use super::*;

impl ConnectorNode {
    pub(super) fn on_space(
        &mut self,
        now: Duration,
        p: (String, String),
        v: &Value,
        rng: &mut impl Rng,
    ) {
        let (Some(id), Some(uri)) = (v["space_id"].as_str(), v["key_uri"].as_str()) else {
            self.stats.rejected += 1;
            return;
        };
        self.stats.spaces_created += u64::from(v["created"].as_bool().unwrap_or(false));
        let members = v["members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        self.spaces.insert(
            id.to_string(),
            SpaceInfo {
                members,
                key_uri: uri.to_string(),
            },
        );
        self.pair_space.insert(p.clone(), id.to_string());
        self.flush_outbox(&p, now, rng);
    }

    pub(super) fn on_space_info(
        &mut self,
        now: Duration,
        space_id: &str,
        v: &Value,
        rng: &mut impl Rng,
    ) {
        let (Some(uri), Some(members)) = (v["key_uri"].as_str(), v["members"].as_array()) else {
            self.stats.rejected += 1;
            return;
        };
        let members: Vec<String> = members
            .iter()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect();
        if members.len() == 2 {
            self.pair_space
                .insert(pair(&members[0], &members[1]), space_id.to_string());
        }
        self.spaces.insert(
            space_id.to_string(),
            SpaceInfo {
                members,
                key_uri: uri.to_string(),
            },
        );
        for item in self.inbox_space.remove(space_id).unwrap_or_default() {
            self.inbound(now, item, rng);
        }
    }

    pub(super) fn on_key(&mut self, now: Duration, uri: &str, v: &Value, rng: &mut impl Rng) {
        let bytes = v["key"]
            .as_str()
            .and_then(|k| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(k)
                    .ok()
            })
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok());
        let Some(bytes) = bytes else {
            self.stats.rejected += 1;
            return;
        };
        self.stats.keys_fetched += 1;
        self.keys.insert(
            uri.to_string(),
            SpaceKey {
                uri: uri.to_string(),
                bytes,
            },
        );
        for p in self.key_waiters.remove(uri).unwrap_or_default() {
            self.flush_outbox(&p, now, rng);
        }
        for item in self.inbox_key.remove(uri).unwrap_or_default() {
            self.inbound(now, item, rng);
        }
    }

    /// `users` were just assigned here: a space or key that a conversation of theirs waits
    /// for after a failure is asked for again now, its backoff forgotten. The failures were
    /// an outage, or the cloud refusing a node that served no member (403) while it had moved
    /// them away; the node serves them again, and another node serving the other member posts
    /// that conversation's next message at once: the backlog held here must not wait out a
    /// backoff grown meanwhile (up to [`RETRY_MAX`]) and come after it.
    pub(super) fn ask_again_for(&mut self, users: &[String], now: Duration, rng: &mut impl Rng) {
        if users.is_empty() || self.deferred.is_empty() {
            return;
        }
        let users: BTreeSet<&str> = users.iter().map(String::as_str).collect();
        let theirs =
            |p: &(String, String)| users.contains(p.0.as_str()) || users.contains(p.1.as_str());
        let waiters = &self.key_waiters;
        let (now_due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|(_, what)| match what {
                Pending::Space { pair } => theirs(pair),
                Pending::Key { uri } => waiters.get(uri).is_some_and(|w| w.iter().any(theirs)),
                _ => false,
            });
        self.deferred = later;
        for (_, what) in now_due {
            if let Some(id) = fetch_id(&what) {
                self.fetch_failures.remove(&id);
            }
            self.retry_fetch(what, now, rng);
        }
    }

    pub(super) fn fetch_key(&mut self, uri: &str) {
        if self.keys_in_flight.insert(uri.to_string()) {
            let mut body = json!({"uri": uri});
            if let Some((p, space_id, since)) = self.held_for_key(uri) {
                let unposted = self.unposted(&p, Some(&space_id));
                body["held"] = json!({"space_id": space_id,
                    "since_ms": since.as_millis() as u64, "unposted": unposted});
            }
            // Fetches need no order among themselves: spread them over the connections.
            self.cloud(
                Method::Post,
                "/v1/kms/keys",
                body,
                fnv(uri),
                Pending::Key {
                    uri: uri.to_string(),
                },
            );
        }
    }

    /// The conversation held here longest that waits for key `uri` after a failed fetch, as
    /// (its members, its space, since when): what the fetch's retry claims at the cloud.
    fn held_for_key(&self, uri: &str) -> Option<((String, String), String, Duration)> {
        let waiters = self.key_waiters.get(uri)?;
        waiters
            .iter()
            .filter_map(|p| {
                let space_id = self.pair_space.get(p)?.clone();
                Some((p.clone(), space_id, *self.held_since.get(p)?))
            })
            .min_by_key(|(_, _, since)| *since)
    }

    /// A space or key fetch failed: the conversations whose posts wait for it are held here
    /// from now on (kept from the first failure), and its retries claim them at the cloud.
    pub(super) fn note_held(&mut self, fetch: &Pending, now: Duration) {
        let pairs: Vec<(String, String)> = match fetch {
            Pending::Space { pair } => vec![pair.clone()],
            Pending::Key { uri } => self
                .key_waiters
                .get(uri)
                .map(|w| w.iter().cloned().collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        for p in pairs {
            if self.outbox.get(&p).is_some_and(|q| !q.is_empty()) {
                self.held_since.entry(p).or_insert(now);
            }
        }
    }
}
