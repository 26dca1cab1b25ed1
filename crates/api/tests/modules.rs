//! The api crate's modules form no cycle: leaf modules (errors, extractors,
//! paging, the CodePipeline model) sit under the route modules, and `server`
//! only composes routers. Read from the sources, so a new `crate::` path that
//! closes a cycle fails here.

#[path = "../../engine/tests/module_graph/mod.rs"]
mod module_graph;

use module_graph::{cycle, module_graph};
use std::path::Path;

#[test]
fn api_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(graph.contains_key("server") && graph["native"].contains("error"), "the graph was read: {graph:?}");
    assert_eq!(cycle(&graph), None, "module graph: {graph:?}");
}
