//! `/gov/*`: service, members, proposals, ballots, acks, login, blobs.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};

use super::{ApiError, Incoming, MAX_BLOB_BYTES, MAX_BODY_BYTES, Service, json_ok, not_found, parse_query, read_body};
use crate::error::{ErrorKind, ServiceError};
use crate::runtime::CallerKind;
use crate::txn::Written;

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let status = match e.kind {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::NotAllowedInState => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Contended | ErrorKind::NotReady | ErrorKind::Busy | ErrorKind::Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorKind::Plugin(s) => StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        };
        let a = ApiError::new(status, e.code, e.message);
        if status == StatusCode::SERVICE_UNAVAILABLE { a.with_header("retry-after", "1".into()) } else { a }
    }
}

pub(super) fn written(w: Written) -> Response<Full<Bytes>> {
    let mut resp = json_ok(&w.body);
    with_tx_id(&mut resp, w.tx_id);
    resp
}

/// Name the transaction that committed a write (`x-cgs-tx-id`), for receipts and status.
pub(super) fn with_tx_id(resp: &mut Response<Full<Bytes>>, tx: cgs_core::TxId) {
    if let Ok(v) = HeaderValue::from_str(&tx.to_string()) {
        resp.headers_mut().insert("x-cgs-tx-id", v);
    }
}

impl Service {
    /// Route `/gov/...` (the path after `/gov`).
    pub(super) async fn gov(&self, req: Request<Incoming>, rest: &str) -> Result<Response<Full<Bytes>>, ApiError> {
        let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let m = req.method().clone();
        let query = req.uri().query().map(str::to_string);
        // The route table let through only the methods it names for each path (`openapi`).
        match (m, segs.as_slice()) {
            (Method::GET, ["service"]) => Ok(json_ok(&self.gov.service()?)),
            (Method::GET, ["constitution"]) => Ok(json_ok(&self.gov.constitution()?)),
            (Method::GET, ["recovery"]) => {
                self.member_or_user(&req)?;
                Ok(json_ok(&self.gov.recovery()?))
            }
            (Method::GET, ["recovery", "shares", id]) => {
                self.member_or_user(&req)?;
                Ok(json_ok(&self.gov.recovery_share(id)?))
            }
            (Method::GET, ["plugins"]) => Ok(self.plugins()),
            (Method::GET, ["members"]) => {
                self.member_or_user(&req)?;
                Ok(json_ok(&self.gov.list_members(None)?))
            }
            (Method::GET, ["members", id]) => {
                self.member_or_user(&req)?;
                Ok(json_ok(&self.gov.list_members(Some(id))?))
            }
            (Method::GET, ["members", id, "state-digest"]) => {
                Ok(json_ok(&serde_json::json!({"member_id": id, "state_digest": self.gov.state_digest()?})))
            }
            (Method::POST, ["members", id, "ack"]) => {
                let id = id.to_string();
                let body = read_body(req.into_body(), MAX_BODY_BYTES).await?;
                Ok(written(self.gov.ack(&id, &body).await?))
            }
            (Method::POST, ["login"]) => {
                let body = read_body(req.into_body(), MAX_BODY_BYTES).await?;
                Ok(written(self.gov.login(&body).await?))
            }
            (Method::POST, ["proposals"]) => {
                let body = read_body(req.into_body(), MAX_BODY_BYTES).await?;
                Ok(written(self.gov.propose(&body).await?))
            }
            (Method::GET, ["proposals"]) => {
                self.member_only(&req)?;
                let state = parse_query(query.as_deref().unwrap_or(""))?
                    .into_iter()
                    .find(|(k, _)| k == "state")
                    .map(|(_, v)| v);
                Ok(json_ok(&self.gov.list_proposals(None, state.as_deref())?))
            }
            (Method::GET, ["proposals", id]) => {
                self.member_only(&req)?;
                Ok(json_ok(&self.gov.list_proposals(Some(id), None)?))
            }
            (Method::POST, ["proposals", id, "ballots"]) => {
                let id = id.to_string();
                let body = read_body(req.into_body(), MAX_BODY_BYTES).await?;
                Ok(written(self.gov.ballot(&id, &body).await?))
            }
            (Method::POST, ["proposals", id, "withdraw"]) => {
                let id = id.to_string();
                let body = read_body(req.into_body(), MAX_BODY_BYTES).await?;
                Ok(written(self.gov.withdraw(&id, &body).await?))
            }
            (Method::POST, ["proposals", "simulate"]) => {
                let caller = self.member_only(&req)?;
                let body = read_body(req.into_body(), MAX_BODY_BYTES).await?;
                Ok(json_ok(&crate::executor::off_executor(|| self.gov.simulate(&caller, &body))?))
            }
            (Method::POST, ["plugins", "check"]) => {
                self.member_only(&req)?;
                let q = parse_query(query.as_deref().unwrap_or(""))?;
                let rollback = q.iter().find(|(k, _)| k == "rollback").map(|(_, v)| v.clone());
                let replace_core = q.iter().any(|(k, v)| k == "replace_core" && v == "true");
                let body = read_body(req.into_body(), MAX_BLOB_BYTES).await?;
                Ok(json_ok(&self.gov.check_plugin(&body, rollback.as_deref(), replace_core)?))
            }
            (Method::PUT, ["blobs"]) => {
                let caller = self.member_only(&req)?;
                let body = read_body(req.into_body(), MAX_BLOB_BYTES).await?;
                if body.is_empty() {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "EmptyBlob",
                        "the request body is the blob; it is empty",
                    ));
                }
                Ok(written(self.gov.put_blob(&caller, body).await?))
            }
            _ => Err(not_found(&req)),
        }
    }

    /// The caller must present a member bearer token.
    pub(super) fn member_only(&self, req: &Request<Incoming>) -> Result<crate::runtime::Caller, ApiError> {
        self.caller_of(req, &[CallerKind::Member])
    }

    /// The caller must present a member token or a registered user's JWT.
    fn member_or_user(&self, req: &Request<Incoming>) -> Result<crate::runtime::Caller, ApiError> {
        self.caller_of(req, &[CallerKind::Member, CallerKind::User])
    }

    fn caller_of(&self, req: &Request<Incoming>, kinds: &[CallerKind]) -> Result<crate::runtime::Caller, ApiError> {
        let caller = self.authenticate(req)?;
        if kinds.contains(&caller.kind) {
            return Ok(caller);
        }
        let who = if kinds.contains(&CallerKind::User) { "member or user" } else { "member" };
        Err(if caller.kind == CallerKind::Anonymous {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Unauthenticated",
                format!("this route needs a {who} bearer token (members: POST /gov/login with a signed login message)"),
            )
        } else {
            ApiError::new(StatusCode::FORBIDDEN, "CallerKindNotAllowed", format!("this route is open to a {who} only"))
        })
    }
}
