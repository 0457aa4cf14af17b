//! A client for the `analytics` plugin (docs/analytics.md): the descriptors of datasets and
//! queries, their CRUD, ballots, and run tickets — typed, over the plugin's routes under
//! `/app/contracts/{id}/…`.
//!
//! ```no_run
//! # async fn demo(member: &cgs_client::Member) -> Result<(), cgs_client::ClientError> {
//! use cgs_client::analytics::{Analytics, Budget, Column, DatasetDescriptor, QueryDescriptor};
//! let a = Analytics::new(member);
//! let sales = DatasetDescriptor {
//!     description: "card sales".into(),
//!     schema: vec![Column::new("region", "text").output(), Column::new("amount", "float")],
//!     aggregate_only: true,
//!     min_group_size: Some(10),
//!     location: "s3://fabrikam/sales.csv.enc".into(),
//!     format: "csv".into(),
//!     key_secret: "sales-key".into(),
//!     budget: Budget { epsilon: 1.0, period_hours: 24 },
//! };
//! a.put_dataset("demo", "sales", &sales, None).await?;
//! let q = QueryDescriptor::new("SELECT region, COUNT(*), SUM(amount) FROM sales GROUP BY region", 0.1);
//! let submitted = a.put_query("demo", "by-region", &q, None).await?;
//! println!("approvers: {:?}", submitted.approvers);
//! # Ok(()) }
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use cgs_core::contract::percent_encode as urlencode;

use crate::{ApiResponse, Client, ClientError, Member};

/// One column of a dataset's schema with its analysis rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Its name (an identifier).
    pub name: String,
    /// `int`, `float`, `text`, `bool` or `date`.
    #[serde(rename = "type")]
    pub kind: String,
    /// May appear un-aggregated in the output (and WHERE, GROUP BY, ORDER BY).
    #[serde(default)]
    pub output: bool,
    /// May appear inside an aggregate.
    #[serde(default = "yes")]
    pub aggregate: bool,
    /// May be a join key.
    #[serde(default)]
    pub join: bool,
}

fn yes() -> bool {
    true
}

impl Column {
    /// A column that may only be aggregated (the defaults).
    pub fn new(name: &str, kind: &str) -> Self {
        Self { name: name.into(), kind: kind.into(), output: false, aggregate: true, join: false }
    }
    /// Allowed in the output.
    pub fn output(mut self) -> Self {
        self.output = true;
        self
    }
    /// Allowed as a join key.
    pub fn join(mut self) -> Self {
        self.join = true;
        self
    }
    /// Not to be aggregated either.
    pub fn no_aggregate(mut self) -> Self {
        self.aggregate = false;
        self
    }
}

/// A privacy budget: `epsilon` per period of `period_hours`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Epsilon per period.
    pub epsilon: f64,
    /// Hours per period.
    pub period_hours: u64,
}

/// What an owner registers (`PUT /app/contracts/{id}/datasets/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetDescriptor {
    /// What it is.
    #[serde(default)]
    pub description: String,
    /// Columns and rules.
    pub schema: Vec<Column>,
    /// Queries must aggregate and output COUNT(*).
    #[serde(default)]
    pub aggregate_only: bool,
    /// The smallest group a clean room may output (with `aggregate_only`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_group_size: Option<u64>,
    /// Where the encrypted file is.
    pub location: String,
    /// `csv` (the default) or `parquet`.
    #[serde(default = "csv")]
    pub format: String,
    /// The contract secret holding its key.
    pub key_secret: String,
    /// The privacy budget.
    pub budget: Budget,
}

fn csv() -> String {
    "csv".into()
}

/// A dataset as the service keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Its name.
    pub name: String,
    /// The member who owns it.
    pub owner: String,
    /// The owner's consent to runs.
    pub consent: bool,
    /// Its version (tx id), to send back with a change.
    pub version: String,
    /// The rest of the descriptor.
    #[serde(flatten)]
    pub descriptor: DatasetDescriptor,
}

/// What an author submits (`PUT /app/contracts/{id}/queries/{qid}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryDescriptor {
    /// The SQL.
    pub sql: String,
    /// What each run costs every input.
    pub epsilon: f64,
    /// The member the output is for (default: the author).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_owner: Option<String>,
}

impl QueryDescriptor {
    /// A query for the author's own output.
    pub fn new(sql: &str, epsilon: f64) -> Self {
        Self { sql: sql.into(), epsilon, output_owner: None }
    }
}

/// The answer to a submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submitted {
    /// The query id.
    pub id: String,
    /// `Pending`.
    pub state: String,
    /// The revision to approve.
    pub revision: u64,
    /// Derived from data ownership: the owners of every input and the output's owner.
    pub approvers: Vec<String>,
}

/// A query as the service keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query {
    /// Its id.
    pub id: String,
    /// The SQL as submitted.
    pub sql: String,
    /// What the checker found: inputs, canonical SQL, outputs, group size.
    pub analysis: Value,
    /// The output's owner.
    pub output_owner: String,
    /// Epsilon per run.
    pub epsilon: f64,
    /// Who approves.
    pub approvers: Vec<String>,
    /// The revision ballots name.
    pub revision: u64,
    /// Ballots on this revision.
    pub ballots: std::collections::BTreeMap<String, String>,
    /// `Pending`, `Approved`, `Rejected`.
    pub state: String,
    /// Who submitted it.
    pub author: String,
    /// Its version (tx id), to send back with an edit.
    pub version: String,
}

/// What a clean room gets to run a query once (see docs/analytics.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    /// The idempotent run id.
    pub run_id: String,
    /// The contract.
    pub contract_id: String,
    /// The query.
    pub query_id: String,
    /// SHA-256 of `sql`.
    pub query_sha256: String,
    /// The checked, canonical SQL to run.
    pub sql: String,
    /// Output columns.
    pub outputs: Vec<String>,
    /// Who the output is for.
    pub output_owner: String,
    /// The output column holding COUNT(*), if groups must be dropped.
    #[serde(default)]
    pub group_size_column: Option<String>,
    /// Drop groups smaller than this.
    pub min_group_size: u64,
    /// The inputs (name, version, location, format, key_secret, schema).
    pub datasets: Vec<Value>,
    /// Until when it is valid.
    pub expires_at_ms: u64,
    /// The transaction that issued it (its receipt proves the ticket).
    #[serde(default)]
    pub tx_id: Option<String>,
}

fn path(contract: &str, rest: &str) -> String {
    format!("/app/contracts/{}{rest}", urlencode(contract))
}

fn json<T: serde::de::DeserializeOwned>(r: ApiResponse) -> Result<T, ClientError> {
    let v = r.ok_json()?;
    serde_json::from_value(v.clone())
        .map_err(|e| ClientError::Protocol { status: 200, detail: format!("unexpected answer ({e}): {v}") })
}

fn body(v: &impl Serialize) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(v).unwrap_or_default())
}

/// The analytics plugin, as a member uses it.
#[derive(Clone, Copy)]
pub struct Analytics<'a> {
    member: &'a Member,
}

impl<'a> Analytics<'a> {
    /// For `member`.
    pub fn new(member: &'a Member) -> Self {
        Self { member }
    }

    /// Register a dataset (`version: None`) or change yours (the version you read).
    pub async fn put_dataset(
        &self,
        contract: &str,
        name: &str,
        d: &DatasetDescriptor,
        version: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut v = serde_json::to_value(d).unwrap_or_default();
        if let Some(ver) = version {
            v["version"] = ver.into();
        }
        self.member.authed("PUT", &path(contract, &format!("/datasets/{}", urlencode(name))), body(&v)).await?.ok_json()
    }

    /// One dataset.
    pub async fn dataset(&self, contract: &str, name: &str) -> Result<Dataset, ClientError> {
        json(self.member.authed("GET", &path(contract, &format!("/datasets/{}", urlencode(name))), None).await?)
    }

    /// The contract's datasets.
    pub async fn datasets(&self, contract: &str) -> Result<Vec<Dataset>, ClientError> {
        let v: Value = json(self.member.authed("GET", &path(contract, "/datasets"), None).await?)?;
        serde_json::from_value(v["value"].clone())
            .map_err(|e| ClientError::Protocol { status: 200, detail: format!("unexpected answer: {e}") })
    }

    /// The owner's consent to runs over a dataset.
    pub async fn set_consent(&self, contract: &str, name: &str, on: bool) -> Result<Value, ClientError> {
        let sw = if on { "enable" } else { "disable" };
        self.member
            .authed("POST", &path(contract, &format!("/datasets/{}/consent/{sw}", urlencode(name))), None)
            .await?
            .ok_json()
    }

    /// Submit a query (`version: None`) or edit yours (the version you read): checked against
    /// the inputs' rules; the answer names the derived approvers.
    pub async fn put_query(
        &self,
        contract: &str,
        id: &str,
        q: &QueryDescriptor,
        version: Option<&str>,
    ) -> Result<Submitted, ClientError> {
        let mut v = serde_json::to_value(q).unwrap_or_default();
        if let Some(ver) = version {
            v["version"] = ver.into();
        }
        json(self.member.authed("PUT", &path(contract, &format!("/queries/{}", urlencode(id))), body(&v)).await?)
    }

    /// One query.
    pub async fn query(&self, contract: &str, id: &str) -> Result<Query, ClientError> {
        json(self.member.authed("GET", &path(contract, &format!("/queries/{}", urlencode(id))), None).await?)
    }

    /// The contract's queries.
    pub async fn queries(&self, contract: &str) -> Result<Vec<Query>, ClientError> {
        let v: Value = json(self.member.authed("GET", &path(contract, "/queries"), None).await?)?;
        serde_json::from_value(v["value"].clone())
            .map_err(|e| ClientError::Protocol { status: 200, detail: format!("unexpected answer: {e}") })
    }

    /// Approve or reject `revision` of a query (you must be one of its approvers).
    pub async fn vote(&self, contract: &str, id: &str, revision: u64, approve: bool) -> Result<Value, ClientError> {
        let ballot = if approve { "approve" } else { "reject" };
        let b = serde_json::json!({"revision": revision});
        self.member
            .authed("POST", &path(contract, &format!("/queries/{}/{ballot}", urlencode(id))), body(&b))
            .await?
            .ok_json()
    }

    /// Runs, denials and completions, newest first, optionally of one dataset or query.
    pub async fn runs(
        &self,
        contract: &str,
        dataset: Option<&str>,
        query: Option<&str>,
    ) -> Result<Vec<Value>, ClientError> {
        let mut q = Vec::new();
        if let Some(d) = dataset {
            q.push(format!("dataset={}", urlencode(d)));
        }
        if let Some(x) = query {
            q.push(format!("query={}", urlencode(x)));
        }
        let p =
            if q.is_empty() { path(contract, "/runs") } else { format!("{}?{}", path(contract, "/runs"), q.join("&")) };
        let v: Value = json(self.member.authed("GET", &p, None).await?)?;
        Ok(v["value"].as_array().cloned().unwrap_or_default())
    }
}

/// Ask for a run ticket as a clean-room session (`token`): the ticket, or the service's refusal
/// (a denial's envelope carries the `tx_id` of its record).
pub async fn request_run(
    client: &Client,
    token: &str,
    contract: &str,
    query: &str,
    run_id: &str,
) -> Result<Ticket, ClientError> {
    let auth = format!("Bearer {token}");
    let b = serde_json::json!({"run_id": run_id});
    let r = client
        .request(
            "POST",
            &path(contract, &format!("/queries/{}/runs", urlencode(query))),
            body(&b),
            &[("authorization", auth.as_str())],
        )
        .await?;
    json(r)
}

/// Record a run's completion as the session that ran it.
pub async fn complete_run(
    client: &Client,
    token: &str,
    contract: &str,
    run_id: &str,
    rows_out: u64,
    rows_in: Option<u64>,
    groups_dropped: Option<u64>,
) -> Result<Value, ClientError> {
    let auth = format!("Bearer {token}");
    let b = serde_json::json!({"rows_out": rows_out, "rows_in": rows_in, "groups_dropped": groups_dropped});
    client
        .request(
            "POST",
            &path(contract, &format!("/runs/{}/complete", urlencode(run_id))),
            body(&b),
            &[("authorization", auth.as_str())],
        )
        .await?
        .ok_json()
}
