//! Which seeds a sweep runs: a range `A..B` (end excluded), or seeds counted up from `A` until
//! a wall-time budget runs out; split across shards by seed modulo the shard count, so that
//! the shards of a range cover it exactly once and a slow seed range is spread over all.
//!
//! A shard comes from `--shard i/n` (0-based), else from a Kubernetes Indexed Job
//! (`JOB_COMPLETION_INDEX` of `JOB_COMPLETIONS`), else from a CI matrix
//! (`HMSIM_SHARD_INDEX` of `HMSIM_SHARD_COUNT`), else the sweep is one shard.

use std::ops::Range;

/// Environment variables read for the shard, in order: Kubernetes, then a CI matrix.
pub const SHARD_ENV: [(&str, &str); 2] = [
    ("JOB_COMPLETION_INDEX", "JOB_COMPLETIONS"),
    ("HMSIM_SHARD_INDEX", "HMSIM_SHARD_COUNT"),
];

/// The largest shard count accepted (a Kubernetes Indexed Job allows 100,000 completions).
pub const SHARDS_MAX: u64 = 100_000;

/// One shard of a sweep: index `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based.
    pub index: u64,
    /// At least 1.
    pub count: u64,
}

impl Shard {
    /// The whole sweep.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether `seed` belongs to this shard.
    pub fn owns(self, seed: u64) -> bool {
        seed % self.count == self.index
    }

    /// The seeds of `range` this shard runs, in order.
    pub fn seeds(self, range: Range<u64>) -> impl Iterator<Item = u64> {
        range.filter(move |s| self.owns(*s))
    }
}

/// Parses `i/n` (0 <= i < n).
pub fn parse_shard(text: &str) -> Result<Shard, String> {
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| format!("shard `{text}`: write index/count, such as 0/4"))?;
    shard_of(i, n).map_err(|e| format!("shard `{text}`: {e}"))
}

fn shard_of(i: &str, n: &str) -> Result<Shard, String> {
    let index: u64 = i.trim().parse().map_err(|_| format!("bad index `{i}`"))?;
    let count: u64 = n.trim().parse().map_err(|_| format!("bad count `{n}`"))?;
    if count == 0 || count > SHARDS_MAX || index >= count {
        return Err(format!(
            "index {index} of {count}: the index is 0-based and below the count (1..={SHARDS_MAX})"
        ));
    }
    Ok(Shard { index, count })
}

/// The shard from `--shard`, else from the environment (`env` looks a variable up).
pub fn shard_from(
    flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Shard, String> {
    if let Some(f) = flag {
        return parse_shard(f);
    }
    for (index, count) in SHARD_ENV {
        if let (Some(i), Some(n)) = (env(index), env(count)) {
            return shard_of(&i, &n).map_err(|e| format!("{index}={i}, {count}={n}: {e}"));
        }
    }
    Ok(Shard::ALL)
}

/// Parses `A..B` (B excluded) or a single seed `A`.
pub fn parse_range(text: &str) -> Result<Range<u64>, String> {
    let num = |t: &str| {
        t.trim()
            .parse::<u64>()
            .map_err(|_| format!("seeds `{text}`: `{t}` is not a seed number"))
    };
    let r = match text.split_once("..") {
        Some((a, b)) => num(a)?..num(b)?,
        None => {
            let a = num(text)?;
            a..a.saturating_add(1)
        }
    };
    if r.is_empty() {
        return Err(format!(
            "seeds `{text}`: the range is empty (write A..B with A < B)"
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_shards_of_a_range_cover_it_exactly_once() {
        for n in [2u64, 3, 4] {
            let mut all: Vec<u64> = (0..n)
                .flat_map(|i| {
                    Shard { index: i, count: n }
                        .seeds(10..47)
                        .collect::<Vec<_>>()
                })
                .collect();
            all.sort_unstable();
            assert_eq!(all, (10..47).collect::<Vec<_>>(), "{n} shards");
        }
    }

    #[test]
    fn shards_come_from_the_flag_then_kubernetes_then_a_ci_matrix() {
        let none = |_: &str| None;
        assert_eq!(shard_from(None, &none), Ok(Shard::ALL));
        assert_eq!(
            shard_from(Some("1/4"), &none),
            Ok(Shard { index: 1, count: 4 })
        );
        let k8s = |k: &str| match k {
            "JOB_COMPLETION_INDEX" => Some("2".into()),
            "JOB_COMPLETIONS" => Some("3".into()),
            "HMSIM_SHARD_INDEX" => Some("0".into()),
            "HMSIM_SHARD_COUNT" => Some("9".into()),
            _ => None,
        };
        assert_eq!(shard_from(None, &k8s), Ok(Shard { index: 2, count: 3 }));
        let ci = |k: &str| match k {
            "HMSIM_SHARD_INDEX" => Some("5".into()),
            "HMSIM_SHARD_COUNT" => Some("9".into()),
            _ => None,
        };
        assert_eq!(shard_from(None, &ci), Ok(Shard { index: 5, count: 9 }));
        assert!(shard_from(Some("4/4"), &none).is_err());
        assert!(shard_from(Some("x"), &none).is_err());
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("3..7"), Ok(3..7));
        assert_eq!(parse_range("5"), Ok(5..6));
        assert!(parse_range("7..3").is_err());
        assert!(parse_range("a..3").is_err());
    }
}
