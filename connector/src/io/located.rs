//! Located errors for YAML config files: `file:line:column: error at `path`: what is wrong`,
//! with a `help:` line naming the valid keys or values and a "did you mean" for a likely typo.
//! The same shape as hmsim's scenario errors (`hmsim check`), so that a config file of the
//! connector reads like a scenario file when it is wrong.
//!
//! - [`PathIndex`] maps a field path (`message_service.publishers[0].host`) to where it is
//!   written in the source, so that rules checked after parsing point at the text to change.
//! - [`deserialize`] parses with serde and turns its error into a [`Located`].
//! - [`did_you_mean`] picks the closest candidate name.

use saphyr_parser::{Event, Parser};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// Line, 1-based.
    pub line: usize,
    /// Column, 1-based.
    pub col: usize,
}

/// One problem in a file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The file as given.
    pub file: String,
    /// Where the problem is written (or the nearest enclosing mapping for a missing field).
    pub pos: Pos,
    /// Field path such as `message_service.nodes[0]` (empty for the document).
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// What would be right: the valid keys or values, or a suggestion.
    pub help: Option<String>,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(document)"
        } else {
            &self.path
        };
        write!(
            f,
            "{}:{}:{}: error at `{}`: {}",
            self.file, self.pos.line, self.pos.col, path, self.message
        )?;
        if let Some(h) = &self.help {
            write!(f, "\n  help: {h}")?;
        }
        Ok(())
    }
}

/// Positions of every mapping key and sequence item of a document, by path.
#[derive(Debug, Default)]
pub struct PathIndex {
    positions: BTreeMap<String, Pos>,
}

enum Frame {
    /// Inside a mapping: the path of the mapping, and the key awaiting its value (if any).
    Map { path: String, key: Option<String> },
    /// Inside a sequence: the path and the next index.
    Seq { path: String, next: usize },
}

impl PathIndex {
    /// Indexes `source`. A document that does not parse gives what was indexed before the
    /// syntax error (the deserializer reports the error with its own position).
    pub fn build(source: &str) -> Self {
        let mut index = PathIndex::default();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(source) {
            let Ok((event, span)) = item else { break };
            let pos = Pos {
                line: span.start.line(),
                col: span.start.col() + 1,
            };
            match event {
                Event::MappingStart(..) => {
                    let path = index.enter_node(&mut stack, pos);
                    stack.push(Frame::Map { path, key: None });
                }
                Event::SequenceStart(..) => {
                    let path = index.enter_node(&mut stack, pos);
                    stack.push(Frame::Seq { path, next: 0 });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    index.value_done(&mut stack);
                }
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Map {
                        path,
                        key: key @ None,
                    }) = stack.last_mut()
                    {
                        index.positions.entry(join(path, &value)).or_insert(pos);
                        *key = Some(value.into_owned());
                    } else {
                        index.enter_node(&mut stack, pos);
                        index.value_done(&mut stack);
                    }
                }
                Event::Alias(_) => {
                    index.enter_node(&mut stack, pos);
                    index.value_done(&mut stack);
                }
                _ => {}
            }
        }
        index
    }

    /// The path a new node (value) gets, recording sequence items' positions.
    fn enter_node(&mut self, stack: &mut [Frame], pos: Pos) -> String {
        match stack.last_mut() {
            None => String::new(),
            Some(Frame::Map { path, key }) => join(path, key.as_deref().unwrap_or("?")),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                self.positions.entry(p.clone()).or_insert(pos);
                p
            }
        }
    }

    /// A value finished: a mapping awaits its next key, a sequence its next item.
    fn value_done(&mut self, stack: &mut [Frame]) {
        match stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { next, .. }) => *next += 1,
            None => {}
        }
    }

    /// The position of exactly `path`, if it is written in the source.
    pub fn exact(&self, path: &str) -> Option<Pos> {
        self.positions.get(path).copied()
    }

    /// The position of `path`, or of its nearest ancestor that exists in the source (a field
    /// left to its default is reported at the mapping that would hold it).
    pub fn find(&self, path: &str) -> Pos {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.positions.get(&p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p.truncate(i),
                None => return Pos { line: 1, col: 1 },
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Parses `source` (YAML) as a `T`; `file` names it in the error.
///
/// # Errors
/// The first problem serde meets, located, with the valid keys or values and a "did you
/// mean" for an unknown key or value that is close to a valid one.
pub fn deserialize<T: DeserializeOwned>(file: &str, source: &str) -> Result<T, Located> {
    let de = serde_yaml::Deserializer::from_str(source);
    serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = e.into_inner();
        let pos = inner
            .location()
            .map(|l| Pos {
                line: l.line(),
                col: l.column(),
            })
            .unwrap_or(Pos { line: 1, col: 1 });
        let raw = inner.to_string();
        // The YAML crate prefixes its own (parent's) path; ours is printed in front already.
        let raw = match raw.split_once(": ") {
            Some((prefix, rest)) if !prefix.is_empty() && path.starts_with(prefix) => rest,
            _ => &raw,
        };
        let (message, help) = explain_serde_message(raw);
        // Custom errors are located at the enclosing mapping; the field's own key is later in
        // the text and more useful.
        let pos = match PathIndex::build(source).exact(&path) {
            Some(p) if p > pos => p,
            _ => pos,
        };
        Located {
            file: file.to_string(),
            pos,
            path,
            message,
            help,
        }
    })
}

/// Splits serde's message into the problem and a help line, adds "did you mean", and drops
/// the YAML crate's own position suffix (the position is printed in front).
pub fn explain_serde_message(raw: &str) -> (String, Option<String>) {
    let msg = match raw.find(" at line ") {
        Some(i) => &raw[..i],
        None => raw,
    };
    for marker in [", expected one of ", ", expected "] {
        if let Some(i) = msg.find(marker) {
            let (problem, expected) = (&msg[..i], &msg[i + marker.len()..]);
            let one_of = marker.contains("one of");
            let valid = if one_of {
                format!("valid values: {expected}")
            } else {
                format!("expected {expected}")
            };
            // Names in backticks: the valid keys or variants (serde says "`a` or `b`" for
            // two, "one of …" for more).
            let names = backticked(expected);
            let help = match unknown_name(problem).filter(|_| !names.is_empty()) {
                Some(bad) => match did_you_mean(&bad, &names) {
                    Some(s) => format!("did you mean `{s}`? {valid}"),
                    None => valid,
                },
                None => valid,
            };
            return (problem.to_string(), Some(help));
        }
    }
    (msg.to_string(), None)
}

fn unknown_name(problem: &str) -> Option<String> {
    let start = problem.find('`')? + 1;
    let end = start + problem[start..].find('`')?;
    Some(problem[start..end].to_string())
}

fn backticked(list: &str) -> Vec<String> {
    list.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// The closest candidate to `bad`, if it is close enough to be a likely typo.
pub fn did_you_mean(bad: &str, candidates: &[String]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(bad, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_items() {
        let src = "name: x\nms:\n  nodes: [a, b]\n  publishers:\n    - host: h\n      user: u\n";
        let idx = PathIndex::build(src);
        assert_eq!(idx.find("name"), Pos { line: 1, col: 1 });
        assert_eq!(idx.find("ms.nodes[1]"), Pos { line: 3, col: 14 });
        assert_eq!(idx.find("ms.publishers[0].user"), Pos { line: 6, col: 7 });
        // Missing field: nearest existing ancestor.
        assert_eq!(idx.find("ms.publishers[0].port"), Pos { line: 5, col: 7 });
        assert_eq!(idx.exact("ms.proxy"), None);
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        seed: u64,
        #[serde(default)]
        colour: Option<String>,
    }

    #[test]
    fn an_unknown_key_is_located_with_did_you_mean() {
        let e = deserialize::<Doc>("c.yaml", "colour: red\nsede: 7\n").unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.starts_with("c.yaml:2:1: error at `(document)`: unknown field `sede`")
                || shown.starts_with("c.yaml:2:1: error at `sede`: unknown field `sede`"),
            "{shown}"
        );
        assert!(shown.contains("help: did you mean `seed`?"), "{shown}");
        let e = deserialize::<Doc>("c.yaml", "seed: many\n").unwrap_err();
        assert_eq!(e.path, "seed");
        assert_eq!(e.pos.line, 1);
    }
}
