//! Maps field paths (`topology.imp_clusters[0].name`) to their line and column in the YAML
//! source, so that errors found after deserialization (cross-field rules) point at the text
//! the user must change, exactly like parse errors do. The index is the one that locates the
//! connector's config errors too (`connector::io::located`).

pub use connector::io::located::{PathIndex, Pos};
