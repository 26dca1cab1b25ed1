//! The engine's modules form no cycle: leaf modules (errors, the parsed
//! pipeline, the mailbox) sit under the driver, the redrives and the service,
//! and no module reaches back up. Read from the sources, so a new `crate::`
//! path that closes a cycle fails here.

#[path = "module_graph/mod.rs"]
mod module_graph;

use module_graph::{cycle, module_graph};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[test]
fn engine_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(graph.contains_key("driver") && graph["driver"].contains("handle"), "the graph was read: {graph:?}");
    assert_eq!(cycle(&graph), None, "module graph: {graph:?}");
}

#[test]
fn the_checker_finds_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(cycle(&g), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
}
