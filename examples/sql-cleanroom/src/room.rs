//! One run, end to end, every call over HTTPS to CGS (docs/analytics.md, "The SQL clean room").

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cgs_client::analytics::{self, Ticket};
use cgs_client::{Client, ClientError};
use cgs_core::contract::percent_encode;
use hpke::{Deserializable as _, Kem as _, Serializable as _};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::engine::{self, ColumnSpec, Input};
use crate::sealed::{self, Key};

type Kem = hpke::kem::X25519HkdfSha256;

/// What the clean room is asked to do.
pub struct RunConfig {
    /// The service, with its pinned certificate.
    pub client: Client,
    /// The contract.
    pub contract: String,
    /// The approved query.
    pub query: String,
    /// The idempotent run id.
    pub run_id: String,
    /// The clean room's `host_data` for virtual evidence (64 hex digits).
    pub host_data: String,
    /// The contract secret holding the output's key; it must have been put by the output owner.
    pub output_key_secret: String,
    /// Where to write the sealed output.
    pub output: PathBuf,
}

/// What a run did, printed as JSON.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The run.
    pub run_id: String,
    /// The transaction that issued the ticket.
    pub ticket_tx_id: Option<String>,
    /// SHA-256 of the SQL that ran.
    pub query_sha256: String,
    /// Per input: dataset, version, rows and the RecordAccess event's transaction.
    pub inputs: Vec<Value>,
    /// Rows read.
    pub rows_in: u64,
    /// Rows written.
    pub rows_out: u64,
    /// Groups dropped below the minimum size.
    pub groups_dropped: u64,
    /// The sealed output.
    pub output: String,
    /// SHA-256 of the sealed output file.
    pub output_sha256: String,
    /// The RecordExecution event's transaction.
    pub execution_event_tx_id: Option<String>,
    /// The completion's transaction.
    pub completion_tx_id: Option<String>,
}

/// A clean-room session: its token and its HPKE key.
pub struct Session {
    client: Client,
    contract: String,
    token: String,
    sk: <Kem as hpke::Kem>::PrivateKey,
}

fn api(e: ClientError, what: &str) -> anyhow::Error {
    anyhow!("{what}: {e}")
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Session {
    /// Open a session of `contract` with a fresh X25519 key bound into the evidence's
    /// `report_data` (SHA-256(public key ‖ nonce) ‖ 0³²). The evidence is virtual: CGS admits
    /// it only where the service was created to accept it (the sandbox), and says so in the
    /// session's tokens. On SEV-SNP hardware, the same `report_data` goes into a report from
    /// `/dev/sev-guest` (not built in this example; docs/analytics.md).
    pub async fn open(client: &Client, contract: &str, host_data: &str) -> Result<Self> {
        let (sk, pk) = Kem::gen_keypair(&mut rand::rngs::OsRng);
        let pk = pk.to_bytes().to_vec();
        let path = format!("/cleanroom/nonce?contract_id={}", percent_encode(contract));
        let n = client.get(&path).await.and_then(|r| r.ok_json()).map_err(|e| api(e, "asking for a nonce"))?;
        let nonce = n["nonce"].as_str().ok_or_else(|| anyhow!("the nonce answer has no nonce: {n}"))?;
        let mut h = Sha256::new();
        h.update(&pk);
        h.update(nonce.as_bytes());
        let report_data = format!("{}{}", hex::encode(h.finalize()), "00".repeat(32));
        let evidence = json!({"kind": "virtual", "measurement": "22".repeat(48), "host_data": host_data, "report_data": report_data});
        let body = json!({"evidence": evidence, "public_key": B64.encode(&pk), "nonce": nonce});
        let s = client
            .post_json(&format!("/app/contracts/{}/cleanroom/session", percent_encode(contract)), &body)
            .await
            .and_then(|r| r.ok_json())
            .map_err(|e| api(e, "opening the clean-room session"))?;
        let token = s["token"].as_str().ok_or_else(|| anyhow!("the session answer has no token: {s}"))?.to_string();
        Ok(Self { client: client.clone(), contract: contract.into(), token, sk })
    }

    /// The session's bearer token.
    pub fn token(&self) -> &str {
        &self.token
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, ClientError> {
        let auth = format!("Bearer {}", self.token);
        self.client
            .request(method, path, body.map(|b| b.to_string().into_bytes()), &[("authorization", auth.as_str())])
            .await?
            .ok_json()
    }

    /// Release a contract secret sealed to this session's key, and open it. Returns the value
    /// and who put it.
    pub async fn secret(&self, name: &str) -> Result<(Vec<u8>, String)> {
        let c = percent_encode(&self.contract);
        let path = format!("/app/contracts/{c}/secrets/{}/release", percent_encode(name));
        let r = self.call("POST", &path, None).await.map_err(|e| api(e, &format!("releasing secret `{name}`")))?;
        let field = |k: &str| -> Result<Vec<u8>> {
            B64.decode(r[k].as_str().ok_or_else(|| anyhow!("the release of `{name}` has no `{k}`"))?)
                .with_context(|| format!("the release's `{k}` is not base64"))
        };
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&field("enc")?)
            .map_err(|e| anyhow!("the release's `enc` is not an X25519 key: {e}"))?;
        let aad = format!("{}/{name}", self.contract);
        let plain = hpke::single_shot_open::<hpke::aead::ChaCha20Poly1305, hpke::kdf::HkdfSha256, Kem>(
            &hpke::OpModeR::Base,
            &self.sk,
            &enc,
            b"cgs-secret-release-v1",
            &field("ciphertext")?,
            aad.as_bytes(),
        )
        .map_err(|e| anyhow!("secret `{name}` does not open with this session's key: {e}"))?;
        let set_by = r["set_by"].as_str().unwrap_or_default().to_string();
        Ok((plain, set_by))
    }

    /// Record an audit event of this run (`scope=analytics`, `id=<run id>`): its transaction.
    pub async fn event(&self, run_id: &str, data: Value) -> Result<Option<String>> {
        let path = format!(
            "/app/contracts/{}/events?scope=analytics&id={}",
            percent_encode(&self.contract),
            percent_encode(run_id)
        );
        let v = self.call("POST", &path, Some(data)).await.map_err(|e| api(e, "recording an audit event"))?;
        Ok(v["tx_id"].as_str().map(str::to_string))
    }

    /// A file key held in secret `name`, which must have been put by `owner`.
    async fn key(&self, name: &str, owner: &str, of: &str) -> Result<Key> {
        let (value, set_by) = self.secret(name).await?;
        if set_by != owner {
            bail!(
                "secret `{name}` (the key of {of}) was put by {set_by}, not by {owner}: only the owner's key is used"
            );
        }
        Key::parse(std::str::from_utf8(&value).context("the key is not text")?)
            .with_context(|| format!("secret `{name}` (the key of {of})"))
    }
}

/// A dataset's file location: `file://` URLs (absolute) or plain paths.
fn local_path(location: &str) -> Result<PathBuf> {
    if let Some(p) = location.strip_prefix("file://") {
        return Ok(PathBuf::from(p));
    }
    if location.contains("://") {
        bail!(
            "this clean room reads local files only (`file:///…`); `{location}` needs an object store client (docs/analytics.md)"
        );
    }
    Ok(PathBuf::from(location))
}

/// Check that a ticket is the one asked for and is what it says.
pub fn check_ticket(t: &Ticket, contract: &str, query: &str, run_id: &str) -> Result<()> {
    if t.run_id != run_id || t.query_id != query {
        bail!("the ticket is for run `{}` of query `{}`, not run `{run_id}` of `{query}`", t.run_id, t.query_id);
    }
    if t.contract_id != contract {
        bail!("the ticket is for contract `{}`, not `{contract}`", t.contract_id);
    }
    let digest = hex::encode(Sha256::digest(t.sql.as_bytes()));
    if digest != t.query_sha256 {
        bail!("the ticket's SQL does not hash to its query_sha256");
    }
    if t.expires_at_ms <= now_ms() {
        bail!("the ticket expired at {} ms; ask for a new run id", t.expires_at_ms);
    }
    Ok(())
}

/// One run: session, ticket, keys, inputs, SQL, output, events, completion.
pub async fn run(cfg: &RunConfig) -> Result<Report> {
    let s = Session::open(&cfg.client, &cfg.contract, &cfg.host_data).await?;
    let ticket = analytics::request_run(&cfg.client, s.token(), &cfg.contract, &cfg.query, &cfg.run_id)
        .await
        .map_err(|e| api(e, "asking for a run ticket"))?;
    check_ticket(&ticket, &cfg.contract, &cfg.query, &cfg.run_id)?;
    // Every key first: a run that cannot write its output for its owner reads nothing.
    let out_key = s.key(&cfg.output_key_secret, &ticket.output_owner, "the output").await?;

    // The inputs: each key from its owner, each file opened as that dataset of this contract.
    let mut inputs = Vec::new();
    let mut access = Vec::new();
    for d in &ticket.datasets {
        let text = |k: &str| {
            d[k].as_str().map(str::to_string).ok_or_else(|| anyhow!("the ticket's dataset has no `{k}`: {d}"))
        };
        let (name, owner, location) = (text("name")?, text("owner")?, text("location")?);
        let format = d["format"].as_str().unwrap_or("csv");
        if format != "csv" {
            bail!("dataset `{name}` is `{format}`; this clean room reads CSV");
        }
        let schema: Vec<ColumnSpec> = serde_json::from_value(d["schema"].clone()).context("the ticket's schema")?;
        let key = s.key(&text("key_secret")?, &owner, &format!("dataset `{name}`")).await?;
        let path = local_path(&location)?;
        let sealed_file =
            std::fs::read(&path).with_context(|| format!("reading dataset `{name}` at {}", path.display()))?;
        let csv = sealed::open(&key, &sealed::dataset_label(&cfg.contract, &name), &sealed_file)
            .with_context(|| format!("dataset `{name}` ({})", path.display()))?;
        access.push((name.clone(), d["version"].clone(), hex::encode(Sha256::digest(&sealed_file))));
        inputs.push(Input { name, schema, csv });
    }
    let outcome = engine::run(
        &engine::Job {
            sql: &ticket.sql,
            outputs: &ticket.outputs,
            group_size_column: ticket.group_size_column.as_deref(),
            min_group_size: ticket.min_group_size,
        },
        inputs,
    )
    .await?;

    // RecordAccess per input, once the data was read and the query ran.
    let mut input_report = Vec::new();
    for (name, version, digest) in access {
        let tx = s
            .event(
                &cfg.run_id,
                json!({"type": "RecordAccess", "run_id": cfg.run_id, "dataset": name, "version": version, "file_sha256": digest}),
            )
            .await?;
        input_report.push(json!({"dataset": name, "version": version, "event_tx_id": tx}));
    }

    // The output, sealed with the output owner's key.
    let sealed_out = sealed::seal(&out_key, &sealed::output_label(&cfg.contract, &cfg.run_id), &outcome.csv)?;
    write_atomically(&cfg.output, &sealed_out)?;
    let output_sha256 = hex::encode(Sha256::digest(&sealed_out));
    let exec_tx = s
        .event(
            &cfg.run_id,
            json!({"type": "RecordExecution", "run_id": cfg.run_id, "query_id": cfg.query, "query_sha256": ticket.query_sha256,
                   "ticket_tx_id": ticket.tx_id, "rows_in": outcome.rows_in, "rows_out": outcome.rows_out,
                   "groups_dropped": outcome.groups_dropped, "output_sha256": output_sha256}),
        )
        .await?;
    let done = analytics::complete_run(
        &cfg.client,
        s.token(),
        &cfg.contract,
        &cfg.run_id,
        outcome.rows_out,
        Some(outcome.rows_in),
        Some(outcome.groups_dropped),
    )
    .await
    .map_err(|e| api(e, "recording the run's completion"))?;
    Ok(Report {
        run_id: cfg.run_id.clone(),
        ticket_tx_id: ticket.tx_id.clone(),
        query_sha256: ticket.query_sha256.clone(),
        inputs: input_report,
        rows_in: outcome.rows_in,
        rows_out: outcome.rows_out,
        groups_dropped: outcome.groups_dropped,
        output: cfg.output.display().to_string(),
        output_sha256,
        execution_event_tx_id: exec_tx,
        completion_tx_id: done["tx_id"].as_str().map(str::to_string),
    })
}

/// Write `bytes` to `path` through a temporary file in the same directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("output")));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
