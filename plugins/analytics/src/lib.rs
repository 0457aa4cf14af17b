//! Analytics collaborations, as a workload plugin an ISV publishes by vote (`set_plugin`).
//!
//! Everything lives under a contract (its parties read; its collaborators write), at
//! `/app/contracts/{id}/…`, so that the ledger attributes each transaction to that contract and
//! its receipts go to its parties:
//!
//! * **Datasets** (`PUT/GET /contracts/{id}/datasets/{name}`): owner (who registered it; only they
//!   change it, with the version they read), schema with per-column rules (`rules.rs`), storage
//!   location and format, the name of the contract secret holding its key, a privacy budget
//!   (epsilon per period). `POST …/datasets/{name}/consent/{enable|disable}`: the owner's consent.
//! * **Queries** (`PUT/GET /contracts/{id}/queries/{qid}`): SQL checked at submission against every
//!   input's rules (refused with the column and the rule); approvers derived from data ownership
//!   (the owners of every input, and the member the output is for), never sent by the client;
//!   `POST …/queries/{qid}/approve|reject {version}`; any edit resets the approvals.
//! * **Runs** (`POST /contracts/{id}/queries/{qid}/runs {run_id}`, clean rooms of the contract):
//!   approval, execution consent, each dataset's consent, the rules again, and the budget, then
//!   the run's epsilon is deducted from every input in the same transaction and a ticket is
//!   returned. Idempotent per `run_id`. A denial is committed too (the answer is the error
//!   envelope with the `tx_id` of the recorded denial). `POST /contracts/{id}/runs/{run_id}/complete`
//!   records the row counts. `GET /contracts/{id}/runs[?dataset=&query=]` lists runs, denials and
//!   completions, each with the `tx_id` that has a receipt.

pub mod rules;

use std::collections::BTreeMap;

use cgs_cleanroom::{CONTRACTS, Contract, State, authorize};
use cgs_plugin::{App, Auth, Caller, CallerKind, Error, Request, Response, Result, Router, Table, context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use rules::{Analysis, Column, DatasetRules};

/// The longest a run ticket is valid.
pub const TICKET_TTL_MS: u64 = 60 * 60 * 1000;
const MAX_COLUMNS: usize = 256;
const MAX_TEXT: usize = 1024;
const MAX_LIST: u32 = 1000;

/// A dataset's privacy budget: `epsilon` per period of `period_hours`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Epsilon available per period.
    pub epsilon: f64,
    /// The period's length in hours (1 to 8760).
    pub period_hours: u64,
}

/// A dataset as stored (key `<contract>/<name>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dataset {
    /// Its name (an identifier: queries name it).
    pub name: String,
    /// The member who registered it: the only one who changes it.
    pub owner: String,
    /// What it is.
    #[serde(default)]
    pub description: String,
    /// Columns and their rules.
    pub schema: Vec<Column>,
    /// Queries must aggregate and output COUNT(*).
    #[serde(default)]
    pub aggregate_only: bool,
    /// The smallest group a clean room may output.
    #[serde(default)]
    pub min_group_size: u64,
    /// Where the encrypted file is (a URL or path the clean room reads).
    pub location: String,
    /// `csv` or `parquet`.
    pub format: String,
    /// The contract secret holding the file's key (released to the contract's clean rooms).
    pub key_secret: String,
    /// The privacy budget.
    pub budget: Budget,
    /// The owner's consent to runs over it.
    pub consent: bool,
    /// Last change (tx time, ms).
    pub updated_at_ms: u64,
}

impl Dataset {
    fn rules(&self) -> DatasetRules {
        DatasetRules {
            columns: self.schema.clone(),
            aggregate_only: self.aggregate_only,
            min_group_size: self.min_group_size,
        }
    }
}

/// `PUT …/datasets/{name}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutDataset {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    description: String,
    schema: Vec<Column>,
    #[serde(default)]
    aggregate_only: bool,
    #[serde(default)]
    min_group_size: Option<u64>,
    location: String,
    #[serde(default = "csv")]
    format: String,
    key_secret: String,
    budget: Budget,
}

fn csv() -> String {
    "csv".into()
}

/// A query's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryState {
    /// Waiting for approvals.
    Pending,
    /// Every approver approved this version.
    Approved,
    /// An approver rejected this version.
    Rejected,
}

/// A query as stored (key `<contract>/<id>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Query {
    /// Its id.
    pub id: String,
    /// The SQL as submitted.
    pub sql: String,
    /// What the checker found (inputs, canonical SQL, outputs, group size).
    pub analysis: Analysis,
    /// The member the output is written for.
    pub output_owner: String,
    /// Epsilon each run costs every input.
    pub epsilon: f64,
    /// Derived: the owners of every input, and the output's owner.
    pub approvers: Vec<String>,
    /// Its revision: 1, plus one per edit. Ballots name the revision they approve (a ballot
    /// changes the record's version, never its revision).
    pub revision: u64,
    /// Ballots on this revision, by member id.
    pub ballots: BTreeMap<String, String>,
    /// Pending, Approved or Rejected.
    pub state: QueryState,
    /// Who submitted it (only they edit it).
    pub author: String,
    /// Last change (tx time, ms).
    pub updated_at_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutQuery {
    #[serde(default)]
    version: Option<String>,
    sql: String,
    #[serde(default)]
    output_owner: Option<String>,
    epsilon: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ballot {
    revision: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRequest {
    run_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Completion {
    rows_out: u64,
    #[serde(default)]
    rows_in: Option<u64>,
    #[serde(default)]
    groups_dropped: Option<u64>,
}

/// One dataset as a ticket names it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TicketDataset {
    /// Its name.
    pub name: String,
    /// The version the run reads (tx id of its last change).
    pub version: String,
    /// Its owner.
    pub owner: String,
    /// Where the file is.
    pub location: String,
    /// csv or parquet.
    pub format: String,
    /// The contract secret holding its key.
    pub key_secret: String,
    /// Its schema.
    pub schema: Vec<Column>,
    /// Whether the clean room must keep only groups of at least `min_group_size` of its rows.
    pub aggregate_only: bool,
    /// Its own minimum group size (the ticket's `min_group_size` is the largest of them).
    pub min_group_size: u64,
}

/// What a clean room needs to run an approved query once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ticket {
    /// The client's idempotent id.
    pub run_id: String,
    /// The contract.
    pub contract_id: String,
    /// The query.
    pub query_id: String,
    /// Its version (tx id).
    pub query_version: String,
    /// SHA-256 of `sql`.
    pub query_sha256: String,
    /// The checked, canonical SQL: what the clean room runs.
    pub sql: String,
    /// Output columns.
    pub outputs: Vec<String>,
    /// The output's owner.
    pub output_owner: String,
    /// The output column holding COUNT(*) (joined rows; the clean room enforces the minimum on
    /// distinct rows of each aggregate-only input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_size_column: Option<String>,
    /// Drop groups smaller than this (0: none).
    pub min_group_size: u64,
    /// Epsilon deducted from every input.
    pub epsilon: f64,
    /// The inputs at the versions checked.
    pub datasets: Vec<TicketDataset>,
    /// When it was issued (tx time).
    pub issued_at_ms: u64,
    /// When it stops being valid.
    pub expires_at_ms: u64,
}

/// A run as stored (key `<contract>/<run_id>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    /// The ticket.
    pub ticket: Ticket,
    /// The clean-room session that asked.
    pub session: String,
    /// Issued or Completed.
    pub state: String,
    /// Row counts, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<serde_json::Value>,
    /// The transaction that issued the ticket, kept when the completion rewrites the record (a
    /// record's version is its last write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_tx: Option<String>,
}

/// One audit record (the `log` table, appended per contract: one ledger transaction each).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// `run`, `denial` or `completion`.
    pub kind: String,
    /// The run id asked for.
    pub run_id: String,
    /// The query.
    pub query_id: String,
    /// The datasets it touches.
    pub datasets: Vec<String>,
    /// Who asked (session or member id).
    pub caller: String,
    /// For a denial: the code and message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// For a denial: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For a run: epsilon deducted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// For a completion: row counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<serde_json::Value>,
    /// Tx time (ms).
    pub at_ms: u64,
}

/// A member's execution kill switch, as the consent plugin stores it.
#[derive(Debug, Serialize, Deserialize)]
struct KillSwitch {
    disabled: bool,
}

static DATASETS: Table<str, Dataset> = Table::new("datasets");
static QUERIES: Table<str, Query> = Table::new("queries");
static RUNS: Table<str, Run> = Table::new("runs");
/// Micro-epsilon spent, keyed `<contract>/<dataset>/<period>`.
static SPENT: Table<str, u64> = Table::new("spent");
static LOG: Table<[u8], Record> = Table::new("log");
static KILL_SWITCHES: Table<str, KillSwitch> = Table::new("app.consent.kill-switches");

struct Analytics;

impl App for Analytics {
    fn router() -> Router {
        let parties = Auth::MEMBER | Auth::USER | Auth::CLEANROOM;
        Router::new()
            .get("/contracts/{id}/datasets", parties, list_datasets)
            .get("/contracts/{id}/datasets/{name}", parties, get_dataset)
            .put("/contracts/{id}/datasets/{name}", Auth::MEMBER, put_dataset)
            .post("/contracts/{id}/datasets/{name}/consent/{switch}", Auth::MEMBER, dataset_consent)
            .get("/contracts/{id}/queries", Auth::MEMBER | Auth::USER, list_queries)
            .get("/contracts/{id}/queries/{qid}", parties, get_query)
            .put("/contracts/{id}/queries/{qid}", Auth::MEMBER, put_query)
            .post("/contracts/{id}/queries/{qid}/{ballot}", Auth::MEMBER, vote)
            .post("/contracts/{id}/queries/{qid}/runs", Auth::CLEANROOM, run)
            .post("/contracts/{id}/runs/{run_id}/complete", Auth::CLEANROOM, complete)
            .get("/contracts/{id}/runs", Auth::MEMBER | Auth::USER, list_runs)
            .get("/contracts/{id}/runs/{run_id}", parties, get_run)
    }
}

fn key(contract: &str, name: &str) -> String {
    format!("{contract}/{name}")
}

fn check_name(kind: &str, name: &str) -> Result<()> {
    if !rules::valid_identifier(name) {
        return Err(Error::bad_request(
            format!("Invalid{kind}Name"),
            format!("{} names are 1-64 characters of A-Z a-z 0-9 _, not starting with a digit", kind.to_lowercase()),
        ));
    }
    Ok(())
}

fn check_label(what: &str, v: &str) -> Result<()> {
    if v.is_empty() || v.len() > 128 || !v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(Error::bad_request("InvalidRequest", format!("`{what}` is 1-128 characters of A-Z a-z 0-9 - _ .")));
    }
    Ok(())
}

fn version_of(v: &cgs_plugin::TxId) -> String {
    v.to_string()
}

/// The contract, with the caller a party to it; writes also need a member collaborator.
fn contract(req: &Request) -> Result<(String, Contract)> {
    let id = req.param("id")?.to_string();
    let c = authorize(&CONTRACTS, &id, &req.caller)?.value;
    Ok((id, c))
}

fn writable(req: &Request) -> Result<(String, Contract)> {
    let (id, c) = contract(req)?;
    if c.state == State::Revoked {
        return Err(Error::not_allowed_in_state("ContractRevoked", format!("contract `{id}` is revoked")));
    }
    Ok((id, c))
}

// ===== datasets =====

fn dataset_view(d: &Dataset, version: &cgs_plugin::TxId) -> serde_json::Value {
    let mut v = serde_json::to_value(d).unwrap_or_default();
    v["version"] = version_of(version).into();
    v
}

fn list_datasets(req: &Request) -> Result<Response> {
    let (id, _) = contract(req)?;
    let prefix = format!("{id}/");
    let end = format!("{id}0");
    let all = DATASETS.range(Some(prefix.as_str()), Some(end.as_str()), MAX_LIST, false)?;
    let value: Vec<serde_json::Value> = all.iter().map(|(_, d)| dataset_view(&d.value, &d.version)).collect();
    Response::ok(&serde_json::json!({"value": value, "next_link": null}))
}

fn get_dataset(req: &Request) -> Result<Response> {
    let (id, _) = contract(req)?;
    let name = req.param("name")?;
    let d = DATASETS.get_versioned(&key(&id, name))?.ok_or_else(|| dataset_not_found(&id, name))?;
    Response::ok(&dataset_view(&d.value, &d.version))
}

fn dataset_not_found(id: &str, name: &str) -> Error {
    Error::not_found("DatasetNotFound", format!("contract `{id}` has no dataset `{name}`"))
}

fn put_dataset(req: &Request) -> Result<Response> {
    let (id, _) = writable(req)?;
    let name = req.param("name")?;
    check_name("Dataset", name)?;
    let body: PutDataset = req.json()?;
    let bad = |m: String| Error::bad_request("InvalidDataset", m);
    if body.schema.is_empty() || body.schema.len() > MAX_COLUMNS {
        return Err(bad(format!("`schema` lists 1 to {MAX_COLUMNS} columns")));
    }
    let mut seen = std::collections::BTreeSet::new();
    for c in &body.schema {
        check_name("Column", &c.name)?;
        if !seen.insert(c.name.to_ascii_lowercase()) {
            return Err(bad(format!("column `{}` is listed twice", c.name)));
        }
        if !rules::TYPES.contains(&c.kind.as_str()) {
            return Err(bad(format!("column `{}` has type `{}`; types: {}", c.name, c.kind, rules::TYPES.join(", "))));
        }
    }
    let b = &body.budget;
    if !(b.epsilon.is_finite() && b.epsilon > 0.0 && b.epsilon <= 1000.0 && (1..=8760).contains(&b.period_hours)) {
        return Err(bad("`budget` is {\"epsilon\": more than 0, at most 1000, \"period_hours\": 1 to 8760}".into()));
    }
    if body.location.is_empty() || body.location.len() > MAX_TEXT || body.description.len() > MAX_TEXT {
        return Err(bad(format!("`location` is 1 to {MAX_TEXT} bytes, `description` at most {MAX_TEXT}")));
    }
    if !matches!(body.format.as_str(), "csv" | "parquet") {
        return Err(bad(format!("`format` is csv or parquet, not `{}`", body.format)));
    }
    check_label("key_secret", &body.key_secret)?;
    let min_group_size = match (body.aggregate_only, body.min_group_size) {
        (true, Some(0)) | (false, Some(_)) => {
            return Err(bad("`min_group_size` (at least 1) goes with `aggregate_only: true`".into()));
        }
        (true, n) => n.unwrap_or(1),
        (false, None) => 0,
    };
    let k = key(&id, name);
    let existing = DATASETS.get_versioned(&k)?;
    let consent = match (&existing, &body.version) {
        (Some(cur), Some(v)) => {
            if cur.value.owner != req.caller.id {
                return Err(Error::forbidden(
                    "NotDatasetOwner",
                    format!("dataset `{name}` belongs to member {}: only its owner changes it", cur.value.owner),
                ));
            }
            if cgs_plugin::parse_version(v)? != cur.version {
                return Err(Error::precondition_failed(
                    "PreconditionFailed",
                    format!(
                        "dataset `{name}` is at version {}, not {v}; read it again and reapply your change",
                        cur.version
                    ),
                ));
            }
            cur.value.consent
        }
        (Some(_), None) => {
            return Err(Error::conflict(
                "DatasetAlreadyExists",
                format!("dataset `{name}` exists: send the `version` you read to change it"),
            ));
        }
        (None, Some(_)) => return Err(dataset_not_found(&id, name)),
        (None, None) => {
            // Names match without regard to case in queries (the engine folds them).
            let prefix = format!("{id}/");
            let end = format!("{id}0");
            let all = DATASETS.range(Some(prefix.as_str()), Some(end.as_str()), MAX_LIST, false)?;
            if let Some((_, other)) = all.iter().find(|(_, d)| d.value.name.eq_ignore_ascii_case(name)) {
                return Err(Error::conflict(
                    "DatasetAlreadyExists",
                    format!(
                        "dataset `{}` exists; names differing only in case would name one table in SQL",
                        other.value.name
                    ),
                ));
            }
            true
        }
    };
    let d = Dataset {
        name: name.to_string(),
        owner: req.caller.id.clone(),
        description: body.description,
        schema: body.schema,
        aggregate_only: body.aggregate_only,
        min_group_size,
        location: body.location,
        format: body.format,
        key_secret: body.key_secret,
        budget: body.budget,
        consent,
        updated_at_ms: context::tx_time_ms(),
    };
    DATASETS.put(&k, &d)?;
    let status = if existing.is_some() { 200 } else { 201 };
    Ok(Response::json(status, &serde_json::json!({"name": name, "owner": d.owner}))?.with_header("cgs-fill-tx", "1"))
}

fn dataset_consent(req: &Request) -> Result<Response> {
    let (id, _) = writable(req)?;
    let name = req.param("name")?;
    let on = match req.param("switch")? {
        "enable" => true,
        "disable" => false,
        s => return Err(Error::not_found("RouteNotFound", format!("no consent switch `{s}`: enable or disable"))),
    };
    let k = key(&id, name);
    let mut d = DATASETS.get(&k)?.ok_or_else(|| dataset_not_found(&id, name))?;
    if d.owner != req.caller.id {
        return Err(Error::forbidden(
            "NotDatasetOwner",
            format!("only dataset `{name}`'s owner ({}) consents to its use", d.owner),
        ));
    }
    d.consent = on;
    d.updated_at_ms = context::tx_time_ms();
    DATASETS.put(&k, &d)?;
    Ok(Response::ok(&serde_json::json!({"name": name, "consent": if on { "enabled" } else { "disabled" }}))?
        .with_header("cgs-fill-tx", "1"))
}

// ===== queries =====

fn query_view(q: &Query, version: &cgs_plugin::TxId) -> serde_json::Value {
    let mut v = serde_json::to_value(q).unwrap_or_default();
    v["version"] = version_of(version).into();
    v
}

fn list_queries(req: &Request) -> Result<Response> {
    let (id, _) = contract(req)?;
    let (prefix, end) = (format!("{id}/"), format!("{id}0"));
    let all = QUERIES.range(Some(prefix.as_str()), Some(end.as_str()), MAX_LIST, false)?;
    let value: Vec<serde_json::Value> = all.iter().map(|(_, q)| query_view(&q.value, &q.version)).collect();
    Response::ok(&serde_json::json!({"value": value, "next_link": null}))
}

fn query_not_found(id: &str, qid: &str) -> Error {
    Error::not_found("QueryNotFound", format!("contract `{id}` has no query `{qid}`"))
}

fn get_query(req: &Request) -> Result<Response> {
    let (id, _) = contract(req)?;
    let qid = req.param("qid")?;
    let q = QUERIES.get_versioned(&key(&id, qid))?.ok_or_else(|| query_not_found(&id, qid))?;
    Response::ok(&query_view(&q.value, &q.version))
}

/// Check `sql` against the contract's datasets as they are now.
fn analyze(
    contract: &str,
    sql: &str,
) -> std::result::Result<(Analysis, Vec<(Dataset, cgs_plugin::TxId)>), rules::Refusal> {
    let lookup = |name: &str| DATASETS.get(&key(contract, name)).ok().flatten().map(|d| d.rules());
    let a = rules::analyze(sql, &lookup)?;
    let mut inputs = Vec::new();
    for name in &a.inputs {
        match DATASETS.get_versioned(&key(contract, name)) {
            Ok(Some(d)) => inputs.push((d.value, d.version)),
            _ => return Err(rules::Refusal { code: "UnknownDataset", message: format!("no dataset `{name}`") }),
        }
    }
    Ok((a, inputs))
}

fn put_query(req: &Request) -> Result<Response> {
    let (id, c) = writable(req)?;
    let qid = req.param("qid")?;
    check_label("query id", qid)?;
    let body: PutQuery = req.json()?;
    if !(body.epsilon.is_finite() && body.epsilon > 0.0 && body.epsilon <= 1000.0) {
        return Err(Error::bad_request(
            "InvalidQuery",
            "`epsilon` (what each run costs every input) is more than 0, at most 1000",
        ));
    }
    let (analysis, inputs) =
        analyze(&id, &body.sql).map_err(|r| Error::bad_request(r.code, format!("query refused: {}", r.message)))?;
    let output_owner = body.output_owner.unwrap_or_else(|| req.caller.id.clone());
    if !c.is_collaborator(&output_owner) {
        return Err(Error::bad_request(
            "InvalidOutputOwner",
            format!("the output's owner {output_owner} is not a collaborator of contract `{id}`"),
        ));
    }
    let k = key(&id, qid);
    let existing = QUERIES.get_versioned(&k)?;
    let revision = existing.as_ref().map_or(1, |cur| cur.value.revision + 1);
    let author = match (&existing, &body.version) {
        (Some(cur), Some(v)) => {
            if cur.value.author != req.caller.id {
                return Err(Error::forbidden(
                    "NotQueryAuthor",
                    format!("query `{qid}` was submitted by member {}: only they edit it", cur.value.author),
                ));
            }
            if cgs_plugin::parse_version(v)? != cur.version {
                return Err(Error::precondition_failed(
                    "PreconditionFailed",
                    format!(
                        "query `{qid}` is at version {}, not {v}; read it again and reapply your change",
                        cur.version
                    ),
                ));
            }
            cur.value.author.clone()
        }
        (Some(_), None) => {
            return Err(Error::conflict(
                "QueryAlreadyExists",
                format!("query `{qid}` exists: send the `version` you read to edit it"),
            ));
        }
        (None, Some(_)) => return Err(query_not_found(&id, qid)),
        (None, None) => req.caller.id.clone(),
    };
    // Approvers come from data ownership, never from the client.
    let mut approvers: Vec<String> = inputs.iter().map(|(d, _)| d.owner.clone()).collect();
    approvers.push(output_owner.clone());
    approvers.sort();
    approvers.dedup();
    let q = Query {
        id: qid.to_string(),
        sql: body.sql,
        analysis,
        output_owner,
        epsilon: body.epsilon,
        approvers: approvers.clone(),
        // Any edit resets the approvals.
        revision,
        ballots: BTreeMap::new(),
        state: QueryState::Pending,
        author,
        updated_at_ms: context::tx_time_ms(),
    };
    QUERIES.put(&k, &q)?;
    let status = if existing.is_some() { 200 } else { 201 };
    Ok(Response::json(
        status,
        &serde_json::json!({"id": qid, "state": q.state, "revision": q.revision, "approvers": approvers}),
    )?
    .with_header("cgs-fill-tx", "1"))
}

fn vote(req: &Request) -> Result<Response> {
    let (id, _) = writable(req)?;
    let qid = req.param("qid")?;
    let approve = match req.param("ballot")? {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(Error::not_found("RouteNotFound", format!("no query action `{other}`: approve or reject")));
        }
    };
    let body: Ballot = req.json()?;
    let k = key(&id, qid);
    let cur = QUERIES.get_versioned(&k)?.ok_or_else(|| query_not_found(&id, qid))?;
    let mut q = cur.value;
    if !q.approvers.contains(&req.caller.id) {
        return Err(Error::forbidden(
            "NotAnApprover",
            format!("query `{qid}` is approved by the owners of its data and output: {}", q.approvers.join(", ")),
        ));
    }
    if body.revision != q.revision {
        return Err(Error::precondition_failed(
            "PreconditionFailed",
            format!("query `{qid}` is at revision {}, not {}: read what you approve", q.revision, body.revision),
        ));
    }
    if q.state != QueryState::Pending {
        return Err(Error::not_allowed_in_state("QueryDecided", format!("query `{qid}` is {:?}", q.state)));
    }
    q.ballots.insert(req.caller.id.clone(), if approve { "approve" } else { "reject" }.into());
    q.state = if !approve {
        QueryState::Rejected
    } else if q.approvers.iter().all(|a| q.ballots.get(a).map(String::as_str) == Some("approve")) {
        QueryState::Approved
    } else {
        QueryState::Pending
    };
    QUERIES.put(&k, &q)?;
    Ok(Response::ok(&serde_json::json!({"id": qid, "state": q.state, "ballots": q.ballots}))?
        .with_header("cgs-fill-tx", "1"))
}

// ===== runs =====

fn log_prefix(contract: &str) -> Vec<u8> {
    let mut k = contract.as_bytes().to_vec();
    k.push(0);
    k
}

fn micro(epsilon: f64) -> u64 {
    // Bounded to (0, 1000] by validation: at most 1e9.
    (epsilon * 1_000_000.0).round() as u64
}

fn period_key(contract: &str, d: &Dataset, now_ms: u64) -> String {
    let period = now_ms / (d.budget.period_hours.max(1) * 3_600_000);
    format!("{contract}/{}/{period}", d.name)
}

/// Why a run is refused: recorded, committed, and answered as the error envelope.
struct Denial {
    status: u16,
    code: &'static str,
    message: String,
}

fn deny(status: u16, code: &'static str, message: impl Into<String>) -> Denial {
    Denial { status, code, message: message.into() }
}

fn caller_label(c: &Caller) -> String {
    match c.kind {
        CallerKind::Cleanroom => format!("session:{}", c.id),
        _ => c.id.clone(),
    }
}

fn run(req: &Request) -> Result<Response> {
    let (id, c) = contract(req)?;
    let qid = req.param("qid")?;
    let body: RunRequest = req.json()?;
    check_label("run_id", &body.run_id)?;
    let q = QUERIES.get_versioned(&key(&id, qid))?.ok_or_else(|| query_not_found(&id, qid))?;
    let rk = key(&id, &body.run_id);
    let now = context::tx_time_ms();
    let datasets: Vec<String> = q.value.analysis.inputs.clone();
    let record = |kind: &str, code: Option<String>, message: Option<String>, epsilon: Option<f64>| Record {
        kind: kind.into(),
        run_id: body.run_id.clone(),
        query_id: qid.to_string(),
        datasets: datasets.clone(),
        caller: caller_label(&req.caller),
        code,
        message,
        epsilon,
        rows: None,
        at_ms: now,
    };
    // The same run id again, from the same session (a retry): the same ticket, nothing deducted
    // twice, once it passes the checks again but the budget it already spent (a kill switch,
    // consent or a rule may have changed since). A run is one session's, once: another session,
    // a completed run or an expired ticket never gets the ticket again.
    let mut outcome = None;
    if let Some(r) = RUNS.get_versioned(&rk)? {
        if r.value.ticket.query_id != qid {
            return Err(Error::conflict(
                "RunIdInUse",
                format!("run `{}` is a run of query `{}`: use a new run id", body.run_id, r.value.ticket.query_id),
            ));
        }
        if r.value.session != req.caller.id {
            return Err(Error::conflict(
                "RunIdInUse",
                format!("run `{}` belongs to another clean-room session: use a new run id", body.run_id),
            ));
        }
        if r.value.state != "Issued" {
            return Err(Error::not_allowed_in_state(
                "RunCompleted",
                format!("run `{}` is completed: use a new run id to run the query again", body.run_id),
            ));
        }
        if now >= r.value.ticket.expires_at_ms {
            return Err(Error::not_allowed_in_state(
                "TicketExpired",
                format!("the ticket of run `{}` expired: use a new run id", body.run_id),
            ));
        }
        match check_run(&id, &c, &q.value, now) {
            Err(d) if d.code != "BudgetExhausted" => outcome = Some(Err(d)),
            _ => {
                let mut v = serde_json::to_value(&r.value.ticket).unwrap_or_default();
                v["tx_id"] = r.value.issued_tx.clone().unwrap_or_else(|| version_of(&r.version)).into();
                return Response::ok(&v);
            }
        }
    }
    let outcome = match outcome {
        Some(denied) => denied,
        None => check_run(&id, &c, &q.value, now),
    };
    match outcome {
        Err(d) => {
            LOG.append(&log_prefix(&id), &record("denial", Some(d.code.into()), Some(d.message.clone()), None))?;
            // Answered as an error, committed as a record: the denial has a receipt.
            Ok(Response::json(
                d.status,
                &serde_json::json!({"error": {"code": d.code, "message": d.message}, "run_id": body.run_id}),
            )?
            .with_header("cgs-fill-tx", "1"))
        }
        Ok(inputs) => {
            for (d, _) in &inputs {
                let pk = period_key(&id, d, now);
                let spent = SPENT.get(&pk)?.unwrap_or(0);
                SPENT.put(&pk, &(spent + micro(q.value.epsilon)))?;
            }
            let ticket = Ticket {
                run_id: body.run_id.clone(),
                contract_id: id.clone(),
                query_id: qid.to_string(),
                query_version: version_of(&q.version),
                query_sha256: hex::encode(Sha256::digest(q.value.analysis.canonical_sql.as_bytes())),
                sql: q.value.analysis.canonical_sql.clone(),
                outputs: q.value.analysis.outputs.clone(),
                output_owner: q.value.output_owner.clone(),
                group_size_column: q.value.analysis.group_size_column.clone(),
                min_group_size: q.value.analysis.min_group_size,
                epsilon: q.value.epsilon,
                datasets: inputs
                    .iter()
                    .map(|(d, v)| TicketDataset {
                        name: d.name.clone(),
                        version: version_of(v),
                        owner: d.owner.clone(),
                        location: d.location.clone(),
                        format: d.format.clone(),
                        key_secret: d.key_secret.clone(),
                        schema: d.schema.clone(),
                        aggregate_only: d.aggregate_only,
                        min_group_size: d.min_group_size,
                    })
                    .collect(),
                issued_at_ms: now,
                expires_at_ms: now + TICKET_TTL_MS,
            };
            RUNS.put(
                &rk,
                &Run {
                    ticket: ticket.clone(),
                    session: req.caller.id.clone(),
                    state: "Issued".into(),
                    completion: None,
                    issued_tx: None,
                },
            )?;
            LOG.append(&log_prefix(&id), &record("run", None, None, Some(q.value.epsilon)))?;
            Ok(Response::json(201, &ticket)?.with_header("cgs-fill-tx", "1"))
        }
    }
}

/// Every check a run passes, in order; the inputs at their current versions.
fn check_run(
    id: &str,
    c: &Contract,
    q: &Query,
    now: u64,
) -> std::result::Result<Vec<(Dataset, cgs_plugin::TxId)>, Denial> {
    let qid = &q.id;
    if q.state != QueryState::Approved {
        let missing: Vec<&String> = q.approvers.iter().filter(|a| !q.ballots.contains_key(*a)).collect();
        return Err(deny(
            405,
            "QueryNotApproved",
            format!("query `{qid}` is {:?}; waiting for: {:?}", q.state, missing),
        ));
    }
    match c.state {
        State::Accepted => {}
        State::Revoked => return Err(deny(405, "ContractRevoked", format!("contract `{id}` is revoked"))),
        _ => return Err(deny(405, "ContractNotAccepted", format!("contract `{id}` is not accepted"))),
    }
    let prefix = format!("{id}/");
    let end = format!("{id}0");
    let switches = KILL_SWITCHES
        .range(Some(prefix.as_str()), Some(end.as_str()), 10_000, false)
        .map_err(|e| deny(503, "Unavailable", e.to_string()))?;
    let off: Vec<String> = switches
        .into_iter()
        .filter(|(_, s)| s.value.disabled)
        .map(|(k, _)| k.strip_prefix(&prefix).unwrap_or(&k).to_string())
        .collect();
    if !off.is_empty() {
        return Err(deny(
            405,
            "ContractDisabled",
            format!("execution of contract `{id}` was disabled by member(s) {}", off.join(", ")),
        ));
    }
    // The rules as they stand now (an owner may have tightened them since the approval).
    let (_, inputs) = analyze(id, &q.analysis.canonical_sql)
        .map_err(|r| deny(405, "QueryNoLongerCompliant", format!("query `{qid}` no longer passes: {}", r.message)))?;
    for (d, _) in &inputs {
        if !d.consent {
            return Err(deny(
                405,
                "DatasetConsentDisabled",
                format!("the owner of dataset `{}` ({}) withdrew consent to its use", d.name, d.owner),
            ));
        }
    }
    for (d, _) in &inputs {
        let spent =
            SPENT.get(&period_key(id, d, now)).map_err(|e| deny(503, "Unavailable", e.to_string()))?.unwrap_or(0);
        let limit = micro(d.budget.epsilon);
        if spent + micro(q.epsilon) > limit {
            return Err(deny(
                429,
                "BudgetExhausted",
                format!(
                    "dataset `{}` has {} of its {} epsilon left in this {}-hour period; the run needs {}",
                    d.name,
                    (limit.saturating_sub(spent)) as f64 / 1e6,
                    d.budget.epsilon,
                    d.budget.period_hours,
                    q.epsilon
                ),
            ));
        }
    }
    Ok(inputs)
}

fn complete(req: &Request) -> Result<Response> {
    let (id, _) = contract(req)?;
    let run_id = req.param("run_id")?;
    let body: Completion = req.json()?;
    let rk = key(&id, run_id);
    let found =
        RUNS.get_versioned(&rk)?.ok_or_else(|| Error::not_found("RunNotFound", format!("no run `{run_id}`")))?;
    let mut r = found.value;
    if r.session != req.caller.id {
        return Err(Error::forbidden("NotTheRunsSession", "only the session that asked for the run completes it"));
    }
    if r.state != "Issued" {
        return Err(Error::not_allowed_in_state("RunCompleted", format!("run `{run_id}` is already completed")));
    }
    let rows =
        serde_json::json!({"rows_out": body.rows_out, "rows_in": body.rows_in, "groups_dropped": body.groups_dropped});
    r.state = "Completed".into();
    r.completion = Some(rows.clone());
    r.issued_tx = Some(version_of(&found.version));
    RUNS.put(&rk, &r)?;
    let rec = Record {
        kind: "completion".into(),
        run_id: run_id.to_string(),
        query_id: r.ticket.query_id.clone(),
        datasets: r.ticket.datasets.iter().map(|d| d.name.clone()).collect(),
        caller: caller_label(&req.caller),
        code: None,
        message: None,
        epsilon: None,
        rows: Some(rows),
        at_ms: context::tx_time_ms(),
    };
    LOG.append(&log_prefix(&id), &rec)?;
    Ok(Response::ok(&serde_json::json!({"run_id": run_id, "state": r.state}))?.with_header("cgs-fill-tx", "1"))
}

fn get_run(req: &Request) -> Result<Response> {
    let (id, _) = contract(req)?;
    let run_id = req.param("run_id")?;
    let r = RUNS
        .get_versioned(&key(&id, run_id))?
        .ok_or_else(|| Error::not_found("RunNotFound", format!("no run `{run_id}`")))?;
    let issued = r.value.issued_tx.clone().unwrap_or_else(|| version_of(&r.version));
    let mut v = serde_json::to_value(&r.value).unwrap_or_default();
    v["version"] = version_of(&r.version).into();
    v["issued_tx"] = issued.into();
    Response::ok(&v)
}

fn list_runs(req: &Request) -> Result<Response> {
    let (id, _) = contract(req)?;
    let dataset = req.query("dataset");
    let query = req.query("query");
    let prefix = log_prefix(&id);
    let mut end = prefix.clone();
    end.extend_from_slice(&[0xff; 13]);
    let all = LOG.range(Some(&prefix), Some(&end), MAX_LIST, true)?;
    let value: Vec<serde_json::Value> = all
        .into_iter()
        .filter(|(_, r)| dataset.is_none_or(|d| r.value.datasets.iter().any(|x| x == d)))
        .filter(|(_, r)| query.is_none_or(|q| r.value.query_id == q))
        .map(|(_, r)| {
            let mut v = serde_json::to_value(&r.value).unwrap_or_default();
            v["tx_id"] = version_of(&r.version).into();
            v
        })
        .collect();
    Response::ok(&serde_json::json!({"value": value, "next_link": null}))
}

cgs_plugin::app_plugin!(Analytics, name = "analytics");
// The routes' request and answer schemas, shown in the service's `GET /openapi.json`.
cgs_plugin::api_schema!("api.json");

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cgs_plugin::{Method, testing};
    use serde_json::{Value, json};

    fn session(id: &str, contract: &str) -> Caller {
        Caller {
            kind: CallerKind::Cleanroom,
            id: id.into(),
            roles: vec![],
            contract_id: Some(contract.into()),
            claims: vec![],
        }
    }

    fn call(method: Method, route: &str, params: &[(&str, &str)], body: Option<Value>, caller: Caller) -> (u16, Value) {
        let mut req = Request::new(method, route, params);
        if let Some(b) = body {
            req = req.with_json(&b);
        }
        match Analytics::router().dispatch(&req.with_caller(caller)) {
            Ok(r) => (r.status, r.body_json().unwrap_or(Value::Null)),
            Err(e) => (e.kind.status(), json!({"error": {"code": e.code, "message": e.message}})),
        }
    }

    fn put_dataset(who: &str, name: &str, body: Value) -> (u16, Value) {
        call(
            Method::Put,
            "/contracts/{id}/datasets/{name}",
            &[("id", "c"), ("name", name)],
            Some(body),
            Caller::member(who),
        )
    }

    fn run(sess: &str, run_id: &str) -> (u16, Value) {
        call(
            Method::Post,
            "/contracts/{id}/queries/{qid}/runs",
            &[("id", "c"), ("qid", "q1")],
            Some(json!({"run_id": run_id})),
            session(sess, "c"),
        )
    }

    fn query() -> Value {
        call(Method::Get, "/contracts/{id}/queries/{qid}", &[("id", "c"), ("qid", "q1")], None, Caller::member("m1")).1
    }

    fn vote(who: &str, ballot: &str, revision: u64) -> (u16, Value) {
        call(
            Method::Post,
            "/contracts/{id}/queries/{qid}/{ballot}",
            &[("id", "c"), ("qid", "q1"), ("ballot", ballot)],
            Some(json!({"revision": revision})),
            Caller::member(who),
        )
    }

    fn code(v: &Value) -> &str {
        v["error"]["code"].as_str().unwrap_or("")
    }

    fn setup() {
        testing::reset();
        testing::set_tx_time_ms(1_000_000);
        let c = Contract {
            state: State::Accepted,
            data: json!({}),
            collaborators: None,
            users: vec![],
            created_by: "m1".into(),
            updated_by: "m1".into(),
            updated_at_ms: 0,
            proposal_id: None,
            accepted_at_ms: None,
            revoked_by: None,
        };
        CONTRACTS.put("c", &c).unwrap();
        let sales = json!({
            "schema": [
                {"name": "customer_id", "type": "int", "join": true, "aggregate": false},
                {"name": "region", "type": "text", "output": true},
                {"name": "amount", "type": "float"},
            ],
            "aggregate_only": true, "min_group_size": 2,
            "location": "file:///data/sales.csv.enc", "key_secret": "sales-key",
            "budget": {"epsilon": 1.0, "period_hours": 24},
        });
        assert_eq!(put_dataset("m1", "sales", sales).0, 201);
        let customers = json!({
            "schema": [
                {"name": "id", "type": "int", "join": true},
                {"name": "segment", "type": "text", "output": true},
                {"name": "email", "type": "text", "aggregate": false},
            ],
            "location": "file:///data/customers.csv.enc", "key_secret": "customers-key",
            "budget": {"epsilon": 5.0, "period_hours": 24},
        });
        assert_eq!(put_dataset("m2", "customers", customers).0, 201);
    }

    const SQL: &str = "SELECT c.segment, COUNT(*) AS n, SUM(s.amount) AS total FROM sales s JOIN customers c ON s.customer_id = c.id GROUP BY c.segment";

    #[test]
    fn datasets_belong_to_their_owner() {
        setup();
        let (s, v) = put_dataset(
            "m1",
            "sales",
            json!({"schema": [{"name": "x", "type": "int"}], "location": "l", "key_secret": "k", "budget": {"epsilon": 1.0, "period_hours": 1}}),
        );
        assert_eq!((s, code(&v)), (409, "DatasetAlreadyExists"));
        // A name differing only in case would be the same table in SQL.
        let (s, v) = put_dataset(
            "m2",
            "SALES",
            json!({"schema": [{"name": "x", "type": "int"}], "location": "l", "key_secret": "k", "budget": {"epsilon": 1.0, "period_hours": 1}}),
        );
        assert_eq!((s, code(&v)), (409, "DatasetAlreadyExists"), "{v}");
        let d = call(
            Method::Get,
            "/contracts/{id}/datasets/{name}",
            &[("id", "c"), ("name", "sales")],
            None,
            Caller::member("m2"),
        )
        .1;
        let mut change = json!({"version": d["version"], "schema": [{"name": "x", "type": "int"}], "location": "l", "key_secret": "k", "budget": {"epsilon": 1.0, "period_hours": 1}});
        let (s, v) = put_dataset("m2", "sales", change.clone());
        assert_eq!((s, code(&v)), (403, "NotDatasetOwner"), "{v}");
        change["version"] = json!("1.1");
        let (s, v) = put_dataset("m1", "sales", change);
        assert_eq!((s, code(&v)), (412, "PreconditionFailed"), "{v}");
        for bad in [
            json!({"schema": [], "location": "l", "key_secret": "k", "budget": {"epsilon": 1.0, "period_hours": 1}}),
            json!({"schema": [{"name": "x", "type": "blob"}], "location": "l", "key_secret": "k", "budget": {"epsilon": 1.0, "period_hours": 1}}),
            json!({"schema": [{"name": "x", "type": "int"}], "location": "l", "key_secret": "k", "budget": {"epsilon": -1.0, "period_hours": 1}}),
            json!({"schema": [{"name": "x", "type": "int"}, {"name": "X", "type": "int"}], "location": "l", "key_secret": "k", "budget": {"epsilon": 1.0, "period_hours": 1}}),
        ] {
            assert_eq!(put_dataset("m1", "other", bad.clone()).0, 400, "{bad}");
        }
        let (s, v) = put_dataset("m1", "bad name", json!({}));
        assert_eq!((s, code(&v)), (400, "InvalidDatasetName"));
    }

    #[test]
    fn queries_runs_budgets_and_denials() {
        setup();
        // A rule broken at submission: refused with the column and the rule.
        let (s, v) = call(
            Method::Put,
            "/contracts/{id}/queries/{qid}",
            &[("id", "c"), ("qid", "q1")],
            Some(json!({"sql": "SELECT email FROM customers", "epsilon": 0.4})),
            Caller::member("m3"),
        );
        assert_eq!((s, code(&v)), (400, "ColumnNotAllowedInOutput"), "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("`customers.email`"), "{v}");
        // A compliant one: approvers derived from ownership (m1, m2) and the output (m3).
        let (s, v) = call(
            Method::Put,
            "/contracts/{id}/queries/{qid}",
            &[("id", "c"), ("qid", "q1")],
            Some(json!({"sql": SQL, "epsilon": 0.4})),
            Caller::member("m3"),
        );
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["approvers"], json!(["m1", "m2", "m3"]));
        // Before approval: a denial, recorded.
        let (s, v) = run("s1", "r0");
        assert_eq!((s, code(&v)), (405, "QueryNotApproved"), "{v}");
        let revision = query()["revision"].as_u64().unwrap();
        assert_eq!(code(&vote("m4", "approve", revision).1), "NotAnApprover");
        assert_eq!(code(&vote("m1", "approve", revision + 1).1), "PreconditionFailed");
        for m in ["m1", "m2"] {
            let (_, v) = vote(m, "approve", revision);
            assert_eq!(v["state"], "Pending", "{v}");
        }
        assert_eq!(vote("m3", "approve", revision).1["state"], "Approved");
        // A run: a ticket with the checked SQL, the group-size rule and the dataset versions.
        let (s, t) = run("s1", "r1");
        assert_eq!(s, 201, "{t}");
        assert_eq!(t["group_size_column"], "n");
        assert_eq!(t["min_group_size"], 2);
        assert_eq!(t["datasets"].as_array().unwrap().len(), 2);
        assert!(t["sql"].as_str().unwrap().starts_with("SELECT c.segment"));
        assert_eq!(t["expires_at_ms"], 1_000_000 + TICKET_TTL_MS);
        // The same run id: the same ticket, nothing deducted twice.
        let (s, again) = run("s1", "r1");
        assert_eq!((s, &again["query_sha256"]), (200, &t["query_sha256"]));
        assert_eq!(SPENT.get(&format!("c/sales/{}", 1_000_000 / 86_400_000)).unwrap(), Some(400_000));
        assert_eq!(run("s1", "r2").0, 201);
        // 0.8 of sales' 1.0 spent: the next run would exceed it.
        let (s, v) = run("s1", "r3");
        assert_eq!((s, code(&v)), (429, "BudgetExhausted"), "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("dataset `sales` has 0.2 of its 1 epsilon left"),
            "{v}"
        );
        let consent = |who: &str, sw: &str| {
            call(
                Method::Post,
                "/contracts/{id}/datasets/{name}/consent/{switch}",
                &[("id", "c"), ("name", "customers"), ("switch", sw)],
                None,
                Caller::member(who),
            )
        };
        // A retry of r1 with the budget spent still gets its ticket (it spent its share)...
        assert_eq!(run("s1", "r1").0, 200);
        // ...but is checked again otherwise: the dataset's owner withdrew consent.
        assert_eq!(consent("m2", "disable").0, 200);
        let (s, v) = run("s1", "r1");
        assert_eq!((s, code(&v)), (405, "DatasetConsentDisabled"), "a retry is checked again: {v}");
        assert_eq!(consent("m2", "enable").0, 200);
        // The next period has a fresh budget.
        testing::set_tx_time_ms(1_000_000 + 86_400_000);
        assert_eq!(run("s1", "r4").0, 201);
        // A kill switch stops the next run.
        KILL_SWITCHES.put("c/m2", &KillSwitch { disabled: true }).unwrap();
        let (s, v) = run("s1", "r5");
        assert_eq!((s, code(&v)), (405, "ContractDisabled"), "{v}");
        KILL_SWITCHES.put("c/m2", &KillSwitch { disabled: false }).unwrap();
        // A dataset owner's consent stops it too.
        assert_eq!(code(&consent("m1", "disable").1), "NotDatasetOwner");
        assert_eq!(consent("m2", "disable").0, 200);
        assert_eq!(code(&run("s1", "r6").1), "DatasetConsentDisabled");
        assert_eq!(consent("m2", "enable").0, 200);
        // Only the run's session completes it, once.
        let complete = |sess: &str| {
            call(
                Method::Post,
                "/contracts/{id}/runs/{run_id}/complete",
                &[("id", "c"), ("run_id", "r1")],
                Some(json!({"rows_out": 3, "rows_in": 40, "groups_dropped": 1})),
                session(sess, "c"),
            )
        };
        assert_eq!(code(&complete("s2").1), "NotTheRunsSession");
        // Another session never gets the run's ticket (it would run it again, unrecorded).
        let (s, v) = run("s2", "r1");
        assert_eq!((s, code(&v)), (409, "RunIdInUse"), "{v}");
        // A day later the ticket has expired: not even its session gets it again.
        let (s, v) = run("s1", "r1");
        assert_eq!((s, code(&v)), (405, "TicketExpired"), "{v}");
        let get_r1 = || {
            call(
                Method::Get,
                "/contracts/{id}/runs/{run_id}",
                &[("id", "c"), ("run_id", "r1")],
                None,
                Caller::member("m1"),
            )
            .1
        };
        let issued = get_r1()["issued_tx"].clone();
        assert!(issued.is_string(), "{issued}");
        assert_eq!(complete("s1").0, 200);
        assert_eq!(code(&complete("s1").1), "RunCompleted");
        // Nor the session itself, once it completed the run.
        let (s, v) = run("s1", "r1");
        assert_eq!((s, code(&v)), (405, "RunCompleted"), "{v}");
        let one = get_r1();
        assert_eq!(one["issued_tx"], issued, "after completion, the ticket's transaction is kept");
        assert_eq!(one["state"], "Completed");
        // A session of another contract is not a party.
        let (s, v) = call(
            Method::Post,
            "/contracts/{id}/queries/{qid}/runs",
            &[("id", "c"), ("qid", "q1")],
            Some(json!({"run_id": "x"})),
            session("s9", "other"),
        );
        assert_eq!((s, code(&v)), (403, "NotAContractParty"));
        // The log: every run, denial and completion, per dataset.
        let log = call(Method::Get, "/contracts/{id}/runs", &[("id", "c")], None, Caller::member("m1")).1;
        let kinds: Vec<&str> = log["value"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["completion", "denial", "denial", "run", "denial", "denial", "run", "run", "denial"],
            "newest first"
        );
        // Any edit resets the approvals.
        let v = query();
        let (s, _) = call(
            Method::Put,
            "/contracts/{id}/queries/{qid}",
            &[("id", "c"), ("qid", "q1")],
            Some(json!({"version": v["version"], "sql": SQL, "epsilon": 0.1})),
            Caller::member("m3"),
        );
        assert_eq!(s, 200);
        assert_eq!((query()["state"].clone(), query()["ballots"].clone()), (json!("Pending"), json!({})));
        assert_eq!(code(&run("s1", "r7").1), "QueryNotApproved");
    }
}
