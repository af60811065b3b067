//! The fuzz targets of the model's text parsers, shared by `fuzz/` (cargo-fuzz) and
//! the corpus replay of the normal test suite. Each takes arbitrary bytes and must
//! never panic; both have a printer, so each checks its round trip too.

use crate::edge::Edge;
use crate::export::{self, ProfileDocument};

/// A fuzz target: its name (the folder of its corpus) and its entry point.
pub type Target = (&'static str, fn(&[u8]));

pub const TARGETS: [Target; 2] = [("edge", edge), ("profile_yaml", profile_yaml)];

/// The edge grammar `SRC->DST:PORT/PROTO`: what parses prints as text that parses
/// back to the same edge, and prints the same again.
pub fn edge(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(edge) = text.parse::<Edge>() else {
        return;
    };
    let printed = edge.to_string();
    let again: Edge = printed.parse().unwrap_or_else(|err| {
        panic!("{text:?} printed as {printed:?}, which does not parse: {err}")
    });
    assert_eq!(again, edge, "{text:?} printed as {printed:?}");
    assert_eq!(again.to_string(), printed);
}

/// `zwctl profile import`: what imports exports as a stream that imports as the
/// same documents, and exports byte for byte the same again.
pub fn profile_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut documents) = export::parse(text) else {
        return;
    };
    documents.sort_by(|a, b| a.zone.cmp(&b.zone));
    // A version line is read and ignored: it is not exported.
    for doc in &mut documents {
        doc.version = 0;
    }
    let rendered = export::render(&documents);
    let again: Vec<ProfileDocument> = export::parse(&rendered).unwrap_or_else(|err| {
        panic!("{text:?} exported as {rendered:?}, which does not import: {err}")
    });
    assert_eq!(again, documents, "{text:?} exported as {rendered:?}");
    assert_eq!(export::render(&again), rendered);
}
