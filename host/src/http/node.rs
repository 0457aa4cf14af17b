//! `/node/*`: health, transaction status, receipts, checkpoints, consistency proofs.

use bytes::Bytes;
use cgs_core::TxId;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};

use super::{ApiError, Service, json_ok, parse_query};
use crate::ledger::LedgerError;

fn ledger_error(e: LedgerError) -> ApiError {
    match e {
        LedgerError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "TransactionNotFound", m),
        LedgerError::NotReady(m) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "NotReady", m).with_header("retry-after", "1".into())
        }
        LedgerError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "InvalidRequest", m),
        other => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "LedgerUnavailable", other.to_string())
            .with_header("retry-after", "1".into()),
    }
}

fn tx_id(s: &str) -> Result<TxId, ApiError> {
    s.parse().map_err(|e: cgs_core::ParseIdError| ApiError::new(StatusCode::BAD_REQUEST, "InvalidTxId", e.to_string()))
}

impl Service {
    pub(super) fn health(&self) -> Response<Full<Bytes>> {
        let last = self.ledger.last_applied();
        json_ok(&serde_json::json!({
            "status": "ok",
            "role": self.ledger.role(),
            "last_tx": last.to_string(),
            "commit": last.to_string(),
        }))
    }

    pub(super) fn tx_status(&self, id: &str) -> Result<Response<Full<Bytes>>, ApiError> {
        let tx = tx_id(id)?;
        match self.ledger.status(tx).map_err(ledger_error)? {
            Some(status) => Ok(json_ok(&serde_json::json!({ "status": status }))),
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "TransactionNotFound",
                format!("no entry has seqno {} yet", tx.seqno),
            )),
        }
    }

    pub(super) fn receipt(&self, id: &str, query: Option<&str>) -> Result<Response<Full<Bytes>>, ApiError> {
        let tx = tx_id(id)?;
        let format = parse_query(query.unwrap_or(""))?.into_iter().find(|(k, _)| k == "format").map(|(_, v)| v);
        let data = self.ledger.receipt(tx).map_err(|e| match e {
            LedgerError::Invalid(m) => ApiError::new(StatusCode::CONFLICT, "TransactionInvalid", m),
            other => ledger_error(other),
        })?;
        match format.as_deref() {
            Some("json") => Ok(json_ok(&serde_json::to_value(&data.json).unwrap_or_default())),
            None | Some("cose") => {
                let mut resp = Response::new(Full::new(Bytes::from(data.cose)));
                resp.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/cose"));
                Ok(resp)
            }
            Some(other) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidFormat",
                format!("format `{other}` is not json or cose"),
            )),
        }
    }

    pub(super) fn checkpoint(&self) -> Result<Response<Full<Bytes>>, ApiError> {
        match self.ledger.latest_checkpoint().map_err(ledger_error)? {
            Some((_, note)) => {
                let mut resp = Response::new(Full::new(Bytes::from(note)));
                resp.headers_mut()
                    .insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
                Ok(resp)
            }
            None => {
                Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "NotReady", "no checkpoint has been signed yet")
                    .with_header("retry-after", "1".into()))
            }
        }
    }

    pub(super) fn consistency(&self, query: Option<&str>) -> Result<Response<Full<Bytes>>, ApiError> {
        let q = parse_query(query.unwrap_or(""))?;
        let num = |name: &str| -> Result<u64, ApiError> {
            let v = q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "MissingParameter",
                    format!("query parameter `{name}` is required"),
                )
            })?;
            v.parse().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameter",
                    format!("`{name}` must be a tree size, not `{v}`"),
                )
            })
        };
        let (from, to) = (num("from")?, num("to")?);
        Ok(json_ok(&self.ledger.consistency(from, to).map_err(ledger_error)?))
    }

    /// `GET /node/attestation`: evidence, node key, service certificate and the active plugin
    /// set, signed by the node key.
    pub(super) fn attestation(&self) -> Result<Response<Full<Bytes>>, ApiError> {
        let registry = self.runtime.registry();
        let mut plugins = Vec::new();
        let mut constitution = serde_json::Value::Null;
        for p in registry.plugins() {
            let entry = serde_json::json!({"name": p.info.name, "version": p.info.version, "blake3": p.blake3});
            if p.info.world == cgs_core::plugin::World::Constitution {
                constitution = entry;
            } else {
                plugins.push(entry);
            }
        }
        let ledger = self.ledger.clone();
        let doc = self.evidence.document(plugins, constitution, |d| ledger.sign_attestation(d));
        Ok(json_ok(&doc))
    }

    pub(super) fn identity(&self) -> Response<Full<Bytes>> {
        json_ok(&serde_json::to_value(self.ledger.identity()).unwrap_or_default())
    }
}
