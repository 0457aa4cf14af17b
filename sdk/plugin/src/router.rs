//! Routes to handlers.

use crate::sys::bindings::app::cgs::plugin::types as wit;
use crate::{Access, Auth, Error, Method, Request, Response, Result};

/// A route handler.
pub type Handler = fn(&Request) -> Result<Response>;

struct RouteDef {
    method: Method,
    path: &'static str,
    auth: Auth,
    access: Access,
    handler: Handler,
}

/// The routes of an application plugin, relative to `/app`. Path segments in braces are
/// parameters (`/contracts/{id}`); the host matches paths, checks the caller kind against the
/// route's [`Auth`] and enforces its [`Access`] before the handler runs.
///
/// `get` routes are read-only; `put`, `post`, `patch` and `delete` are read-write. Use
/// [`Router::route`] to choose explicitly.
#[derive(Default)]
pub struct Router {
    routes: Vec<RouteDef>,
}

impl Router {
    /// No routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a route with an explicit access mode.
    pub fn route(mut self, method: Method, path: &'static str, auth: Auth, access: Access, handler: Handler) -> Self {
        self.routes.push(RouteDef { method, path, auth, access, handler });
        self
    }

    /// A read-only `GET` route.
    pub fn get(self, path: &'static str, auth: Auth, handler: Handler) -> Self {
        self.route(Method::Get, path, auth, Access::ReadOnly, handler)
    }

    /// A read-write `PUT` route.
    pub fn put(self, path: &'static str, auth: Auth, handler: Handler) -> Self {
        self.route(Method::Put, path, auth, Access::ReadWrite, handler)
    }

    /// A read-write `POST` route.
    pub fn post(self, path: &'static str, auth: Auth, handler: Handler) -> Self {
        self.route(Method::Post, path, auth, Access::ReadWrite, handler)
    }

    /// A read-write `PATCH` route.
    pub fn patch(self, path: &'static str, auth: Auth, handler: Handler) -> Self {
        self.route(Method::Patch, path, auth, Access::ReadWrite, handler)
    }

    /// A read-write `DELETE` route.
    pub fn delete(self, path: &'static str, auth: Auth, handler: Handler) -> Self {
        self.route(Method::Delete, path, auth, Access::ReadWrite, handler)
    }

    /// Run the handler of the route the host matched (`req.route`).
    pub fn dispatch(&self, req: &Request) -> Result<Response> {
        let def = self.routes.iter().find(|r| r.method == req.method && r.path == req.route).ok_or_else(|| {
            Error::not_found("RouteNotFound", format!("no route {:?} {} in this plugin", req.method, req.route))
        })?;
        if !def.auth.admits(req.caller.kind) {
            return Err(Error::forbidden(
                "CallerKindNotAllowed",
                format!("{:?} callers may not call {:?} {}", req.caller.kind, req.method, req.route),
            ));
        }
        // Natively, one dispatch is one transaction: its appends share a seqno.
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::native::STATE.with(|s| s.borrow_mut().append_tx = None);
        (def.handler)(req)
    }

    pub(crate) fn wit_routes(&self) -> Vec<wit::Route> {
        self.routes
            .iter()
            .map(|r| wit::Route {
                method: crate::http::method_to_wit(r.method),
                path: r.path.to_string(),
                auth: r.auth.to_wit(),
                access: match r.access {
                    Access::ReadOnly => wit::Access::ReadOnly,
                    Access::ReadWrite => wit::Access::ReadWrite,
                },
            })
            .collect()
    }
}
