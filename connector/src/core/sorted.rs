//! Lookups of keys that come in ascending order, in a sorted map, by walking the map alongside
//! them ([`SortedCursor`]). A status page (and hmsim's expectation of it) asks about every
//! assigned user at each sample, in email order, in maps kept in email order: a `get` for each
//! descends the tree from its root every time, some 14 string comparisons and as many cache
//! misses at 15,000 users, where a walk costs about one comparison per entry passed.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::collections::btree_map::Range;
use std::iter::Peekable;
use std::ops::Bound;

/// Entries a cursor steps over for one key before it jumps there instead (a range search, one
/// descent of the tree): a key far ahead of the last one, as when the keys asked are a small
/// part of the map, costs a descent rather than a walk over everything between.
pub const STEPS_BEFORE_JUMP_MAX: usize = 16;

/// A cursor over a sorted map for keys asked in ascending order. A key asked out of order is
/// still found (by a jump back), so a caller's order only decides the cost, never the answer.
pub struct SortedCursor<'a, K, V> {
    map: &'a BTreeMap<K, V>,
    ahead: Peekable<Range<'a, K, V>>,
    /// The greatest key passed: every entry up to it is behind the cursor.
    behind: Option<&'a K>,
}

impl<'a, K: Borrow<str> + Ord, V> SortedCursor<'a, K, V> {
    /// A cursor before the map's first entry.
    pub fn new(map: &'a BTreeMap<K, V>) -> Self {
        Self {
            map,
            ahead: map.range::<str, _>(..).peekable(),
            behind: None,
        }
    }

    /// The value of `key`, as `BTreeMap::get` would answer.
    pub fn get(&mut self, key: &str) -> Option<&'a V> {
        if self.behind.is_some_and(|b| b.borrow() >= key) {
            self.jump(key);
        }
        let mut steps = 0;
        while let Some((k, _)) = self.ahead.peek() {
            if (*k).borrow() >= key {
                break;
            }
            if steps == STEPS_BEFORE_JUMP_MAX {
                self.jump(key);
                break;
            }
            self.behind = self.ahead.next().map(|(k, _)| k);
            steps += 1;
        }
        match self.ahead.peek() {
            Some((k, v)) if (*k).borrow() == key => Some(*v),
            _ => None,
        }
    }

    /// Puts the cursor just before `key` (or where it would be).
    fn jump(&mut self, key: &str) {
        self.behind = (self.map)
            .range::<str, _>((Bound::Unbounded, Bound::Excluded(key)))
            .next_back()
            .map(|(k, _)| k);
        self.ahead = (self.map)
            .range::<str, _>((Bound::Included(key), Bound::Unbounded))
            .peekable();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the order of the keys asked (sorted, with repeats, shuffled, or a few
        /// of many), the cursor answers as `get` does.
        #[test]
        fn a_cursor_answers_as_get_does(
            keys in proptest::collection::btree_set("[a-e]{1,3}", 0..200),
            asked in proptest::collection::vec("[a-e]{1,3}", 0..200),
            sort in any::<bool>(),
        ) {
            let map: BTreeMap<String, usize> =
                keys.into_iter().enumerate().map(|(i, k)| (k, i)).collect();
            let mut asked = asked;
            if sort {
                asked.sort();
            }
            let mut cursor = SortedCursor::new(&map);
            for k in &asked {
                prop_assert_eq!(cursor.get(k), map.get(k.as_str()), "key {}", k);
            }
        }
    }

    #[test]
    fn a_key_far_ahead_is_reached_by_a_jump_and_an_earlier_one_by_a_jump_back() {
        let map: BTreeMap<String, usize> = (0..1000).map(|i| (format!("u{i:04}"), i)).collect();
        let mut cursor = SortedCursor::new(&map);
        assert_eq!(cursor.get("u0900"), Some(&900));
        assert_eq!(cursor.get("u0901"), Some(&901));
        assert_eq!(cursor.get("u0005"), Some(&5));
        assert_eq!(cursor.get("u0005x"), None);
        assert_eq!(cursor.get("u0006"), Some(&6));
        assert_eq!(cursor.get("v"), None);
        assert_eq!(cursor.get("u0999"), Some(&999));
    }
}
