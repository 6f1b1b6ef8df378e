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

    pub(super) fn fetch_key(&mut self, uri: &str) {
        if self.keys_in_flight.insert(uri.to_string()) {
            // Fetches need no order among themselves: spread them over the connections.
            self.cloud(
                Method::Post,
                "/v1/kms/keys",
                json!({"uri": uri}),
                fnv(uri),
                Pending::Key {
                    uri: uri.to_string(),
                },
            );
        }
    }
}
