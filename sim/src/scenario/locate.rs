//! Maps field paths (`topology.imp_clusters[0].name`) to their line and column in the YAML
//! source, so that errors found after deserialization (cross-field rules) point at the text
//! the user must change, exactly like parse errors do.

use saphyr_parser::{Event, Parser};
use std::collections::BTreeMap;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// Line, 1-based.
    pub line: usize,
    /// Column, 1-based.
    pub col: usize,
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
    /// Indexes `source`. A document that does not parse gives an empty index (the
    /// deserializer reports the syntax error with its own position).
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
                        let full = join(path, &value);
                        index.positions.entry(full).or_insert(pos);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_items() {
        let src = "name: x\ntopology:\n  imp_clusters:\n    - name: a\n      nodes: 2\n    - { name: b }\nfaults:\n  - at: 1m\n";
        let idx = PathIndex::build(src);
        assert_eq!(idx.find("name"), Pos { line: 1, col: 1 });
        assert_eq!(
            idx.find("topology.imp_clusters[0].nodes"),
            Pos { line: 5, col: 7 }
        );
        assert_eq!(
            idx.find("topology.imp_clusters[1].name"),
            Pos { line: 6, col: 9 }
        );
        assert_eq!(idx.find("faults[0].at"), Pos { line: 8, col: 5 });
        // Missing field: nearest existing ancestor.
        assert_eq!(
            idx.find("topology.imp_clusters[1].version"),
            Pos { line: 6, col: 7 }
        );
    }
}
