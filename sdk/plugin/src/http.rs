//! Requests, responses and callers.

use std::ops::BitOr;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::sys::bindings::app::cgs::plugin::types as wit;
use crate::{Error, Result};

pub use cgs_core::caller::{Caller, CallerKind, Method};

pub(crate) fn method_to_wit(m: Method) -> wit::Method {
    match m {
        Method::Get => wit::Method::Get,
        Method::Put => wit::Method::Put,
        Method::Post => wit::Method::Post,
        Method::Patch => wit::Method::Patch,
        Method::Delete => wit::Method::Delete,
    }
}

fn method_from_wit(m: wit::Method) -> Method {
    match m {
        wit::Method::Get => Method::Get,
        wit::Method::Put => Method::Put,
        wit::Method::Post => Method::Post,
        wit::Method::Patch => Method::Patch,
        wit::Method::Delete => Method::Delete,
    }
}

/// Whether a route may write to tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Runs against committed state on any node; writes fail with `TableReadOnly`.
    ReadOnly,
    /// Runs on the leader in a transaction that commits if the handler succeeds.
    ReadWrite,
}

/// The set of caller kinds a route admits; combine with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Auth(u8);

impl Auth {
    /// Callers without credentials.
    pub const ANONYMOUS: Auth = Auth(1);
    /// Consortium members (bearer token from `/gov/login`).
    pub const MEMBER: Auth = Auth(2);
    /// Users with a JWT of a registered issuer and a registered identity.
    pub const USER: Auth = Auth(4);
    /// Attested clean-room sessions.
    pub const CLEANROOM: Auth = Auth(8);
    /// Anyone, with or without credentials.
    pub const ANYONE: Auth = Auth(15);

    /// Whether `kind` is admitted.
    pub fn admits(self, kind: CallerKind) -> bool {
        let bit = match kind {
            CallerKind::Anonymous => Self::ANONYMOUS,
            CallerKind::Member => Self::MEMBER,
            CallerKind::User => Self::USER,
            CallerKind::Cleanroom => Self::CLEANROOM,
        };
        self.0 & bit.0 != 0
    }

    pub(crate) fn to_wit(self) -> wit::CallerKinds {
        let mut k = wit::CallerKinds::empty();
        if self.0 & Self::ANONYMOUS.0 != 0 {
            k |= wit::CallerKinds::ANONYMOUS;
        }
        if self.0 & Self::MEMBER.0 != 0 {
            k |= wit::CallerKinds::MEMBER;
        }
        if self.0 & Self::USER.0 != 0 {
            k |= wit::CallerKinds::USER;
        }
        if self.0 & Self::CLEANROOM.0 != 0 {
            k |= wit::CallerKinds::CLEANROOM;
        }
        k
    }
}

impl BitOr for Auth {
    type Output = Auth;
    fn bitor(self, rhs: Auth) -> Auth {
        Auth(self.0 | rhs.0)
    }
}

pub(crate) fn caller_from_wit(c: wit::Caller) -> Caller {
    let kind = match c.kind {
        wit::CallerKind::Anonymous => CallerKind::Anonymous,
        wit::CallerKind::Member => CallerKind::Member,
        wit::CallerKind::User => CallerKind::User,
        wit::CallerKind::Cleanroom => CallerKind::Cleanroom,
    };
    Caller { kind, id: c.id, roles: c.roles, contract_id: c.contract_id, claims: c.claims }
}

/// A request routed to this plugin.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path below `/app`.
    pub path: String,
    /// The route template that matched.
    pub route: String,
    /// Path parameters.
    pub params: Vec<(String, String)>,
    /// Decoded query parameters.
    pub query: Vec<(String, String)>,
    /// Headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
    /// The authenticated caller.
    pub caller: Caller,
}

impl Request {
    /// A request for native tests: `method` on `route` with the given path parameters.
    pub fn new(method: Method, route: &str, params: &[(&str, &str)]) -> Self {
        let mut path = route.to_string();
        for (k, v) in params {
            path = path.replace(&format!("{{{k}}}"), v);
        }
        Self {
            method,
            path,
            route: route.to_string(),
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            query: vec![],
            headers: vec![],
            body: vec![],
            caller: Caller::anonymous(),
        }
    }

    /// With a JSON body (for native tests).
    pub fn with_json(mut self, body: &impl Serialize) -> Self {
        self.body = serde_json::to_vec(body).unwrap_or_default();
        self
    }

    /// With a caller (for native tests).
    pub fn with_caller(mut self, caller: Caller) -> Self {
        self.caller = caller;
        self
    }

    /// A path parameter; missing is a routing bug, reported as 500.
    pub fn param(&self, name: &str) -> Result<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| Error::internal("MissingPathParameter", format!("route has no parameter `{name}`")))
    }

    /// The first query parameter named `name`.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A query parameter parsed as `T`; unparsable is a 400 naming the parameter.
    pub fn query_parse<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>> {
        match self.query(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                Error::bad_request(
                    "InvalidQueryParameter",
                    format!("query parameter `{name}` has an invalid value `{v}`"),
                )
            }),
        }
    }

    /// A header by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; bad JSON or a missing field is a 400 `InvalidJson` with serde's
    /// explanation.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        if self.body.is_empty() {
            return Err(Error::bad_request("InvalidJson", "the request body is empty; a JSON document is required"));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::bad_request("InvalidJson", format!("the request body is not valid: {e}")))
    }

    pub(crate) fn from_wit(r: wit::Request) -> Self {
        Self {
            method: method_from_wit(r.method),
            path: r.path,
            route: r.route,
            params: r.params,
            query: r.query,
            headers: r.headers,
            body: r.body,
            caller: caller_from_wit(r.caller),
        }
    }
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    pub fn status(status: u16) -> Self {
        Self { status, headers: vec![], body: vec![] }
    }

    /// `204 No Content`.
    pub fn no_content() -> Self {
        Self::status(204)
    }

    /// A JSON response.
    pub fn json(status: u16, value: &impl Serialize) -> Result<Self> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Error::internal("SerializationFailed", format!("could not encode the response: {e}")))?;
        Ok(Self { status, headers: vec![("content-type".into(), "application/json".into())], body })
    }

    /// `200` with a JSON body.
    pub fn ok(value: &impl Serialize) -> Result<Self> {
        Self::json(200, value)
    }

    /// `201` with a JSON body.
    pub fn created(value: &impl Serialize) -> Result<Self> {
        Self::json(201, value)
    }

    /// Add a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into().to_ascii_lowercase(), value.into()));
        self
    }

    /// The body parsed as JSON (for native tests).
    pub fn body_json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::internal("InvalidJson", format!("response body is not JSON: {e}")))
    }

    pub(crate) fn into_wit(self) -> wit::Response {
        wit::Response { status: self.status, headers: self.headers, body: self.body }
    }
}
