//! `/node/*`: health, transaction status, receipts and entries (for who may read them),
//! checkpoints, consistency proofs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use cgs_core::TxId;
use cgs_core::entry::Payload;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};

use super::{ApiError, Incoming, Service, json_ok, parse_query};
use crate::ledger::LedgerError;
use crate::runtime::CallerKind;

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

    /// `GET /node/network`: the service's status, the current view (raft term) and primary.
    pub(super) fn network(&self) -> Response<Full<Bytes>> {
        let (nodes, term) = self.ledger.nodes();
        let service = self.gov.service().unwrap_or_default();
        // The ledger secret version this node writes with (after re-keys), and whether it holds
        // the newest one its ledger names: public, the versions reveal nothing.
        let secrets = self.ledger.secrets();
        json_ok(&serde_json::json!({
            "service_status": service["status"],
            "current_view": term,
            "primary_id": nodes.iter().find(|n| n.3).map(|n| n.0),
            "node_id": self.ledger.identity().node_id,
            "nodes": nodes.len(),
            "ledger_secret": {"version": secrets.latest().version(), "current": secrets.current().is_ok()},
        }))
    }

    /// `GET /node/network/nodes`: every node recorded (`Pending`, `Trusted`, `Retired`), its
    /// raft role and whether it is the primary.
    pub(super) fn network_nodes(&self) -> Result<Response<Full<Bytes>>, ApiError> {
        let list = self.cluster.nodes_view()?;
        Ok(json_ok(&serde_json::json!({ "nodes": list })))
    }

    /// `POST /node/join`.
    pub(super) async fn join(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, ApiError> {
        let body = super::read_body(req.into_body(), super::MAX_BODY_BYTES).await?;
        let (answer, tx) = self.cluster.join(&body).await?;
        let mut resp = json_ok(&answer);
        if let Some(tx) = tx
            && let Ok(v) = hyper::header::HeaderValue::from_str(&tx.to_string())
        {
            resp.headers_mut().insert("x-cgs-tx-id", v);
        }
        Ok(resp)
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

    /// The entry at `id` if the caller may read it (see `Governance::authorize_tx_read`):
    /// signature entries (checkpoints) are for any credentialed caller; raft membership and blank
    /// entries for members.
    fn readable_entry(
        &self,
        req: &Request<Incoming>,
        id: &str,
    ) -> Result<(TxId, Vec<u8>, cgs_core::entry::Entry, crate::runtime::Caller), ApiError> {
        let tx = tx_id(id)?;
        let caller = self.credentialed(
            req,
            "receipts and entries are for the transaction's writer, its contract's parties, or members \
             (governance): send a bearer token",
        )?;
        let (bytes, entry) = self.ledger.entry(tx).map_err(ledger_error)?;
        match &entry.payload {
            Payload::Transaction(t) => self.gov.authorize_tx_read(&caller, t)?,
            Payload::Signature(_) => {}
            Payload::Blank | Payload::Membership(_) => {
                if caller.kind != CallerKind::Member {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "NotAllowedToRead",
                        "replication entries are for members",
                    ));
                }
            }
        }
        Ok((tx, bytes, entry, caller))
    }

    /// `GET /node/receipt/{id}[?format=json|cose][&entry=true]`: the inclusion proof of the
    /// transaction against a signed checkpoint. It carries the entry only when asked
    /// (`entry=true`): a receipt handed on proves inclusion without disclosing the write set.
    pub(super) fn receipt(
        &self,
        req: &Request<Incoming>,
        id: &str,
        query: Option<&str>,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let q = parse_query(query.unwrap_or(""))?;
        let format = q.iter().find(|(k, _)| k == "format").map(|(_, v)| v.clone());
        let with_entry = match q.iter().find(|(k, _)| k == "entry").map(|(_, v)| v.as_str()) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameter",
                    format!("`entry` is true or false, not `{other}`"),
                ));
            }
        };
        let (tx, ..) = self.readable_entry(req, id)?;
        let data = self.ledger.receipt(tx, with_entry).map_err(|e| match e {
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

    /// `GET /node/entry/{id}`: the entry as the ledger holds it, with what the caller may read of
    /// it decrypted (`Governance::value_readable`, `Governance::envelope_readable`): the signed
    /// governance message, for members, never a login; the values written, each only to those who
    /// may read it (never the host's `gov.private.*`: contract secrets, signing keys). A refused
    /// transaction (status `Invalid`) shows no value and no message: nothing vouched for them.
    pub(super) fn entry(&self, req: &Request<Incoming>, id: &str) -> Result<Response<Full<Bytes>>, ApiError> {
        let (tx, bytes, entry, caller) = self.readable_entry(req, id)?;
        let mut doc = serde_json::json!({
            "tx_id": tx.to_string(),
            "seqno": tx.seqno,
            "entry": B64.encode(&bytes),
        });
        match &entry.payload {
            Payload::Transaction(t) => {
                let refused = self.ledger.status(tx).map_err(ledger_error)? == Some(crate::ledger::TxStatus::Invalid);
                doc["kind"] = "transaction".into();
                doc["tx_time_ms"] = t.tx_time_ms.into();
                doc["caller"] = t.caller.clone().into();
                doc["operation"] = t.operation.clone().into();
                doc["request_digest"] = hex::encode(t.request_digest).into();
                if refused {
                    doc["refused"] = true.into();
                }
                if !refused && crate::gov::Governance::envelope_readable(&caller, t) {
                    if let Some(env) = self.ledger.open_envelope(t).map_err(ledger_error)? {
                        doc["envelope"] = B64.encode(env).into();
                    }
                } else if !t.envelope.is_empty() {
                    doc["envelope_withheld"] = true.into();
                }
                let mut writes = Vec::new();
                for (w, key) in t.resolved_writes(tx.seqno) {
                    let op = match (&w.value, w.append) {
                        (None, _) => "delete",
                        (Some(_), true) => "append",
                        (Some(_), false) => "put",
                    };
                    let mut item = serde_json::json!({"table": w.table, "key": B64.encode(&key), "op": op});
                    if let Some(v) = &w.value {
                        if !refused && self.gov.value_readable(&caller, t, &w.table, &key)? {
                            item["value"] =
                                B64.encode(self.ledger.open_value(&w.table, &key, v).map_err(ledger_error)?).into();
                        } else {
                            item["value_withheld"] = true.into();
                        }
                    }
                    writes.push(item);
                }
                doc["writes"] = writes.into();
            }
            Payload::Signature(_) => doc["kind"] = "signature".into(),
            Payload::Membership(_) => doc["kind"] = "membership".into(),
            Payload::Blank => doc["kind"] = "blank".into(),
        }
        Ok(json_ok(&doc))
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
