//! Plugin routes: parsing templates, detecting conflicts, matching request paths.

use super::LoadError;

pub use cgs_core::caller::Method;

/// Whether a route writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Runs against committed state; writes are refused.
    ReadOnly,
    /// Runs in a transaction that commits when the handler succeeds.
    ReadWrite,
}

/// A set of caller kinds (bit 0 anonymous, 1 member, 2 user, 3 clean room).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CallerKinds(pub u8);

impl CallerKinds {
    /// Anonymous callers.
    pub const ANONYMOUS: u8 = 1;
    /// Members.
    pub const MEMBER: u8 = 2;
    /// Users.
    pub const USER: u8 = 4;
    /// Clean rooms.
    pub const CLEANROOM: u8 = 8;

    /// Whether the set contains `kind`.
    pub fn admits(self, kind: crate::runtime::CallerKind) -> bool {
        let bit = match kind {
            crate::runtime::CallerKind::Anonymous => Self::ANONYMOUS,
            crate::runtime::CallerKind::Member => Self::MEMBER,
            crate::runtime::CallerKind::User => Self::USER,
            crate::runtime::CallerKind::Cleanroom => Self::CLEANROOM,
        };
        self.0 & bit != 0
    }

    /// Names of the kinds in the set, for messages and `/gov/plugins`.
    pub fn names(self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (bit, name) in [
            (Self::ANONYMOUS, "anonymous"),
            (Self::MEMBER, "member"),
            (Self::USER, "user"),
            (Self::CLEANROOM, "cleanroom"),
        ] {
            if self.0 & bit != 0 {
                v.push(name);
            }
        }
        v
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A route a plugin serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The template below `/app`, e.g. `/contracts/{id}`.
    pub template: String,
    /// Who may call it.
    pub auth: CallerKinds,
    /// Whether it writes.
    pub access: Access,
    segments: Vec<Segment>,
}

fn valid_literal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
}

fn valid_param(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Route {
    /// Parse and validate a route template.
    pub fn new(method: Method, template: &str, auth: CallerKinds, access: Access) -> Result<Self, LoadError> {
        let bad = |why: &str| LoadError::InvalidRoute(format!("{method} {template}"), why.to_string());
        let rest = template.strip_prefix('/').ok_or_else(|| bad("must start with `/`"))?;
        if template.len() > 256 {
            return Err(bad("longer than 256 bytes"));
        }
        // Plugin routes live below `/app`; a template that names another of the service's
        // prefixes would be served at `/app/gov/...`, not where its author meant.
        if let Some(first) = rest.split('/').next()
            && ["app", "gov", "node", "cleanroom", "oidc", ".well-known"].contains(&first)
        {
            return Err(bad(
                "plugin routes are relative to `/app` and may not start with a service prefix (`/app`, `/gov`, `/node`, `/cleanroom`, `/oidc`, `/.well-known`)",
            ));
        }
        let mut segments = Vec::new();
        if !rest.is_empty() {
            for seg in rest.split('/') {
                if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    if !valid_param(name) {
                        return Err(bad("parameter names are 1-32 chars of a-z A-Z 0-9 _"));
                    }
                    if segments.iter().any(|s| s == &Segment::Param(name.to_string())) {
                        return Err(bad("a parameter name appears twice"));
                    }
                    segments.push(Segment::Param(name.to_string()));
                } else if seg == "." || seg == ".." {
                    // Requests can never carry these (paths are normalized and refused), so the
                    // route could never be reached.
                    return Err(bad("`.` and `..` segments can never be requested"));
                } else if valid_literal(seg) {
                    segments.push(Segment::Literal(seg.to_string()));
                } else {
                    return Err(bad("segments are non-empty and use only a-z A-Z 0-9 - _ . ~ (or are `{param}`)"));
                }
            }
        }
        if auth.0 == 0 {
            return Err(bad("admits no caller kind"));
        }
        if method == Method::Get && access == Access::ReadWrite {
            return Err(bad("GET routes must be read-only"));
        }
        Ok(Self { method, template: template.to_string(), auth, access, segments })
    }

    /// The route as `/gov/plugins` and `/gov/plugins/check` show it.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "method": self.method.as_str(),
            "path": format!("/app{}", self.template),
            "auth": self.auth.names(),
            "read_only": self.access == Access::ReadOnly,
        })
    }

    /// The shape used to detect conflicts: literals kept, parameters erased.
    fn shape(&self) -> Vec<Option<&str>> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => Some(l.as_str()),
                Segment::Param(_) => None,
            })
            .collect()
    }

    /// Match `segments` of a request path; returns the parameters and the number of literal
    /// segments (more literals = more specific).
    fn matches(&self, segments: &[&str]) -> Option<(Vec<(String, String)>, usize)> {
        if segments.len() != self.segments.len() {
            return None;
        }
        let mut params = Vec::new();
        let mut literals = 0;
        for (t, s) in self.segments.iter().zip(segments) {
            match t {
                Segment::Literal(l) if l == s => literals += 1,
                Segment::Literal(_) => return None,
                Segment::Param(name) => params.push((name.clone(), (*s).to_string())),
            }
        }
        Some((params, literals))
    }
}

/// The owner of the host's own routes in the table (a name no plugin may take).
pub const HOST: &str = "host";

/// The host's own routes below `/app`: clean-room sessions, secrets and ID tokens are the host's
/// (evidence checks, HPKE, the OIDC keys), but they live in the contracts' path space, so they
/// are in the same table as plugin routes — a plugin that declares one of them is refused at
/// load (`RouteConflict`), and a request is matched against both at once.
pub fn host_routes() -> Vec<Route> {
    [
        (Method::Post, "/contracts/{id}/cleanroom/session", CallerKinds::ANONYMOUS, Access::ReadOnly),
        (Method::Put, "/contracts/{id}/secrets/{name}", CallerKinds::MEMBER, Access::ReadWrite),
        (Method::Delete, "/contracts/{id}/secrets/{name}", CallerKinds::MEMBER, Access::ReadWrite),
        (Method::Post, "/contracts/{id}/secrets/{name}/release", CallerKinds::CLEANROOM, Access::ReadOnly),
        (Method::Post, "/contracts/{id}/oauth/token", CallerKinds::CLEANROOM, Access::ReadOnly),
    ]
    .into_iter()
    // The templates are constants (a test checks that every one parses).
    .filter_map(|(m, t, auth, access)| Route::new(m, t, CallerKinds(auth), access).ok())
    .collect()
}

/// All installed routes, by plugin (and the host's, under [`HOST`]).
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<(String, Route)>,
}

impl Default for RouteTable {
    /// The host's routes, no plugin's.
    fn default() -> Self {
        Self { routes: host_routes().into_iter().map(|r| (HOST.to_string(), r)).collect() }
    }
}

/// The result of matching a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    /// A route matched.
    Found {
        /// The plugin that serves it.
        plugin: String,
        /// The route.
        route: Route,
        /// Decoded path parameters.
        params: Vec<(String, String)>,
    },
    /// The path exists, but not for this method.
    MethodNotAllowed(Vec<Method>),
    /// No route has this path.
    NotFound,
}

impl RouteTable {
    /// Check that `routes` of `plugin` conflict neither with each other nor with other plugins'
    /// routes (the plugin's own old routes are ignored: they are being replaced).
    pub fn check(&self, plugin: &str, routes: &[Route]) -> Result<(), LoadError> {
        for (i, r) in routes.iter().enumerate() {
            for other in &routes[..i] {
                if other.method == r.method && other.shape() == r.shape() {
                    return Err(LoadError::RouteConflict(format!("{} {}", r.method, r.template), plugin.to_string()));
                }
            }
            for (p, other) in &self.routes {
                if p != plugin && other.method == r.method && other.shape() == r.shape() {
                    return Err(LoadError::RouteConflict(format!("{} {}", r.method, r.template), p.clone()));
                }
            }
        }
        Ok(())
    }

    /// Replace the routes of `plugin`.
    pub fn replace(&mut self, plugin: &str, routes: Vec<Route>) {
        self.routes.retain(|(p, _)| p != plugin);
        self.routes.extend(routes.into_iter().map(|r| (plugin.to_string(), r)));
    }

    /// Match a request path (below `/app`, percent-decoded per segment by the caller).
    pub fn find(&self, method: Method, segments: &[&str]) -> RouteMatch {
        // (plugin, route, params, literal segments)
        type Candidate<'a> = (&'a str, &'a Route, Vec<(String, String)>, usize);
        let mut best: Option<Candidate<'_>> = None;
        let mut methods = Vec::new();
        for (plugin, route) in &self.routes {
            if let Some((params, literals)) = route.matches(segments) {
                if route.method != method {
                    methods.push(route.method);
                    continue;
                }
                if best.as_ref().is_none_or(|b| literals > b.3) {
                    best = Some((plugin, route, params, literals));
                }
            }
        }
        match best {
            Some((plugin, route, params, _)) => {
                RouteMatch::Found { plugin: plugin.to_string(), route: route.clone(), params }
            }
            None if !methods.is_empty() => {
                methods.sort();
                methods.dedup();
                RouteMatch::MethodNotAllowed(methods)
            }
            None => RouteMatch::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(m: Method, t: &str) -> Route {
        let access = if m == Method::Get { Access::ReadOnly } else { Access::ReadWrite };
        Route::new(m, t, CallerKinds(15), access).unwrap()
    }

    #[test]
    fn host_routes_are_in_the_table_and_conflict_with_plugins() {
        assert_eq!(host_routes().len(), 5);
        let table = RouteTable::default();
        let RouteMatch::Found { plugin, route, params } =
            table.find(Method::Post, &["contracts", "c1", "cleanroom", "session"])
        else {
            panic!("the host's session route is in the table")
        };
        assert_eq!((plugin.as_str(), route.template.as_str()), (HOST, "/contracts/{id}/cleanroom/session"));
        assert_eq!(params, vec![("id".to_string(), "c1".to_string())]);
        assert_eq!(
            table.find(Method::Get, &["contracts", "c1", "secrets", "k"]),
            RouteMatch::MethodNotAllowed(vec![Method::Put, Method::Delete])
        );
        // A plugin may not take a host route, under any parameter names.
        let err = table.check("evil", &[r(Method::Post, "/contracts/{x}/oauth/token")]).unwrap_err();
        assert!(matches!(err, LoadError::RouteConflict(_, owner) if owner == HOST));
        // Its other routes under /contracts are fine.
        table.check("contracts", &[r(Method::Get, "/contracts/{id}")]).unwrap();
    }

    #[test]
    fn templates_are_validated() {
        for bad in [
            "", "x", "/a//b", "/{}", "/{a-b}", "/a?b", "/{x}/{x}", "/a b", "/a/../b", "/./a", "/gov/x", "/app",
            "/node/y",
        ] {
            assert!(Route::new(Method::Get, bad, CallerKinds(1), Access::ReadOnly).is_err(), "{bad}");
        }
        assert!(Route::new(Method::Get, "/a", CallerKinds(0), Access::ReadOnly).is_err());
        assert!(Route::new(Method::Get, "/a", CallerKinds(1), Access::ReadWrite).is_err());
        assert!(Route::new(Method::Get, "/", CallerKinds(1), Access::ReadOnly).is_ok());
    }

    #[test]
    fn matching_prefers_literals_and_reports_methods() {
        let mut t = RouteTable::default();
        t.replace(
            "contracts",
            vec![
                r(Method::Get, "/contracts/{id}"),
                r(Method::Put, "/contracts/{id}"),
                r(Method::Get, "/contracts/summary"),
            ],
        );
        t.replace("audit", vec![r(Method::Post, "/contracts/{id}/events")]);
        match t.find(Method::Get, &["contracts", "summary"]) {
            RouteMatch::Found { route, params, .. } => {
                assert_eq!(route.template, "/contracts/summary");
                assert!(params.is_empty());
            }
            other => panic!("{other:?}"),
        }
        match t.find(Method::Get, &["contracts", "c1"]) {
            RouteMatch::Found { plugin, params, .. } => {
                assert_eq!(plugin, "contracts");
                assert_eq!(params, vec![("id".to_string(), "c1".to_string())]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            t.find(Method::Delete, &["contracts", "c1"]),
            RouteMatch::MethodNotAllowed(vec![Method::Get, Method::Put])
        );
        assert_eq!(t.find(Method::Get, &["nothing"]), RouteMatch::NotFound);
        match t.find(Method::Post, &["contracts", "c9", "events"]) {
            RouteMatch::Found { plugin, .. } => assert_eq!(plugin, "audit"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn conflicts_are_refused() {
        let mut t = RouteTable::default();
        t.replace("a", vec![r(Method::Get, "/x/{id}")]);
        assert!(t.check("b", &[r(Method::Get, "/x/{name}")]).is_err());
        assert!(t.check("b", &[r(Method::Put, "/x/{name}")]).is_ok());
        assert!(t.check("a", &[r(Method::Get, "/x/{name}")]).is_ok(), "a plugin may replace its own routes");
        assert!(t.check("b", &[r(Method::Get, "/y"), r(Method::Get, "/y")]).is_err());
    }
}
