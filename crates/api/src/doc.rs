//! Routes that document themselves: [`op`] registers a handler at the path and
//! methods its `#[utoipa::path]` names, and adds that operation to the OpenAPI
//! document in the same step — so what is routed and what is documented come
//! from one source. A leaf module.

use axum::handler::Handler;
use axum::routing::MethodRouter;
use utoipa::__dev::{SchemaReferences, Tags};
use utoipa::openapi::path::Paths;
use utoipa_axum::PathItemExt;
use utoipa_axum::router::UtoipaMethodRouter;

/// `utoipa_axum::routes!` for one handler, generic handlers included: `P` is the
/// `__path_<handler>` type `#[utoipa::path]` generates.
pub fn op<P, H, T, St>(handler: H) -> UtoipaMethodRouter<St>
where
    P: utoipa::Path + SchemaReferences + for<'t> Tags<'t>,
    H: Handler<T, St>,
    T: 'static,
    St: Clone + Send + Sync + 'static,
{
    let mut schemas = Vec::new();
    P::schemas(&mut schemas);
    let methods = P::methods();
    let router = methods.iter().fold(MethodRouter::new(), |r, m| r.on(m.to_method_filter(), handler.clone()));
    let mut operation = P::operation();
    let tags = P::tags();
    if !tags.is_empty() {
        operation.tags.get_or_insert_with(Vec::new).extend(tags.iter().map(ToString::to_string));
    }
    let mut paths = Paths::new();
    paths.add_path_operation(P::path(), methods, operation);
    (schemas, paths, router)
}
