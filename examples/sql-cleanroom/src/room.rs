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

/// What the clean room is asked to do (the `run` command's flags).
#[derive(Debug, clap::Args)]
pub struct RunConfig {
    /// The contract.
    #[arg(long)]
    pub contract: String,
    /// The approved query's id.
    #[arg(long)]
    pub query: String,
    /// The run's id: asking again with the same id returns the same ticket.
    #[arg(long)]
    pub run_id: String,
    /// The clean room's host_data (64 hex digits) in its virtual evidence.
    #[arg(long, env = "CGS_HOST_DATA")]
    pub host_data: String,
    /// The contract secret holding the output's key, put by the query's output owner.
    #[arg(long)]
    pub output_key_secret: String,
    /// Where to write the sealed output.
    #[arg(long)]
    pub output: PathBuf,
    /// Read inputs only from inside this directory; relative locations are relative to it
    /// (required: the directory holding the sealed inputs, never the whole machine).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The largest input file read, in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    pub max_input_bytes: u64,
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

/// The file a dataset's `location` names, confined to `data_dir`: a `file://` URL (empty host or
/// `localhost`) or a path, relative ones relative to `data_dir`. It must resolve (symbolic links
/// followed) to a regular file inside `data_dir`, of at most `max` bytes.
pub fn input_path(location: &str, data_dir: &Path, max: u64) -> Result<PathBuf> {
    let raw = match location.strip_prefix("file://") {
        Some(rest) => {
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                bail!("`{location}`: a file URL names this machine (`file:///path` or `file://localhost/path`)");
            }
            path
        }
        None if location.contains("://") => bail!(
            "this clean room reads local files only (`file:///…` or a path); `{location}` needs an object store client (docs/analytics.md)"
        ),
        None => location,
    };
    if raw.contains('%') {
        bail!("`{location}`: percent-encoded locations are not read; name the file plainly");
    }
    let root = data_dir.canonicalize().with_context(|| format!("the data directory {}", data_dir.display()))?;
    let path = root.join(raw);
    let real = path.canonicalize().with_context(|| format!("the input file {}", path.display()))?;
    if !real.starts_with(&root) {
        bail!("`{location}` is outside the data directory {} (--data-dir): not read", root.display());
    }
    let meta = std::fs::metadata(&real)?;
    if !meta.is_file() {
        bail!("`{location}` is not a regular file: not read");
    }
    if meta.len() > max {
        bail!("`{location}` is {} bytes, over the limit of {max} (--max-input-bytes)", meta.len());
    }
    Ok(real)
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

/// One run against the service `client` talks to: session, ticket, keys, inputs, SQL, output,
/// events, completion.
pub async fn run(client: &Client, cfg: &RunConfig) -> Result<Report> {
    let s = Session::open(client, &cfg.contract, &cfg.host_data).await?;
    let ticket = analytics::request_run(client, s.token(), &cfg.contract, &cfg.query, &cfg.run_id)
        .await
        .map_err(|e| api(e, "asking for a run ticket"))?;
    check_ticket(&ticket, &cfg.contract, &cfg.query, &cfg.run_id)?;
    // Every key first: a run that cannot write its output for its owner reads nothing.
    let out_key = s.key(&cfg.output_key_secret, &ticket.output_owner, "the output").await?;

    // The inputs: each key from its owner, each file opened as that dataset of this contract,
    // each access recorded once the file is open (before the query runs, so a failed run that
    // read data leaves its record).
    let mut inputs = Vec::new();
    let mut input_report = Vec::new();
    for d in &ticket.datasets {
        let text = |k: &str| {
            d[k].as_str().map(str::to_string).ok_or_else(|| anyhow!("the ticket's dataset has no `{k}`: {d}"))
        };
        let (name, owner, location) = (text("name")?, text("owner")?, text("location")?);
        let format = d["format"].as_str().unwrap_or("csv");
        if format != "csv" {
            bail!("dataset `{name}` is `{format}`; this clean room reads CSV");
        }
        let aggregate_only = d["aggregate_only"].as_bool().ok_or_else(|| {
            anyhow!("the ticket does not say whether dataset `{name}` is aggregate-only (an older analytics plugin): not run")
        })?;
        let schema: Vec<ColumnSpec> = serde_json::from_value(d["schema"].clone()).context("the ticket's schema")?;
        let key = s.key(&text("key_secret")?, &owner, &format!("dataset `{name}`")).await?;
        let path = input_path(&location, &cfg.data_dir, cfg.max_input_bytes)?;
        let sealed_file =
            std::fs::read(&path).with_context(|| format!("reading dataset `{name}` at {}", path.display()))?;
        let csv = sealed::open(&key, &sealed::dataset_label(&cfg.contract, &name), &sealed_file)
            .with_context(|| format!("dataset `{name}` ({})", path.display()))?;
        let digest = hex::encode(Sha256::digest(&sealed_file));
        let tx = s
            .event(
                &cfg.run_id,
                json!({"type": "RecordAccess", "run_id": cfg.run_id, "dataset": name, "version": d["version"], "file_sha256": digest}),
            )
            .await?;
        input_report.push(json!({"dataset": name, "version": d["version"], "event_tx_id": tx}));
        inputs.push(Input { name, schema, aggregate_only, csv });
    }
    let outcome = engine::run(
        &engine::Job { sql: &ticket.sql, outputs: &ticket.outputs, min_group_size: ticket.min_group_size },
        inputs,
    )
    .await?;

    // The output, sealed with the output owner's key.
    let sealed_out = sealed::seal(&out_key, &sealed::output_label(&cfg.contract, &cfg.run_id), &outcome.csv)?;
    write_atomically(&cfg.output, &sealed_out)?;
    let output_sha256 = hex::encode(Sha256::digest(&sealed_out));
    let exec_tx = s
        .event(
            &cfg.run_id,
            json!({"type": "RecordExecution", "run_id": cfg.run_id, "query_id": cfg.query, "query_sha256": ticket.query_sha256,
                   "ticket_tx_id": ticket.tx_id, "rows_in": outcome.rows_in, "rows_out": outcome.rows_out,
                   "output_sha256": output_sha256}),
        )
        .await?;
    let done = analytics::complete_run(
        client,
        s.token(),
        &cfg.contract,
        &cfg.run_id,
        outcome.rows_out,
        Some(outcome.rows_in),
        // How many groups were dropped is not published: it would tell every party that small
        // groups exist.
        None,
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
        output: cfg.output.display().to_string(),
        output_sha256,
        execution_event_tx_id: exec_tx,
        completion_tx_id: done["tx_id"].as_str().map(str::to_string),
    })
}

/// Write `bytes` to `path` through a fresh temporary file in the same directory, synced, then
/// renamed over it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path).map_err(|e| anyhow!("writing {}: {}", path.display(), e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_read_only_from_the_data_directory() -> Result<()> {
        let root = tempfile::tempdir()?;
        let data = root.path().join("data");
        std::fs::create_dir(&data)?;
        std::fs::write(data.join("sales.csv.enc"), b"x")?;
        std::fs::write(root.path().join("secret.txt"), b"y")?;
        std::fs::create_dir(data.join("dir"))?;
        let ok = |loc: &str| input_path(loc, &data, 10);
        let want = data.canonicalize()?.join("sales.csv.enc");
        assert_eq!(ok("sales.csv.enc")?, want);
        assert_eq!(ok(&format!("file://{}", want.display()))?, want);
        assert_eq!(ok(&format!("file://localhost{}", want.display()))?, want);
        let err = |loc: &str| ok(loc).unwrap_err().to_string();
        assert!(err("../secret.txt").contains("outside the data directory"));
        assert!(err(&format!("file://{}/secret.txt", root.path().display())).contains("outside the data directory"));
        assert!(err("file://other-host/sales.csv.enc").contains("names this machine"));
        assert!(err("s3://bucket/sales.csv.enc").contains("object store"));
        assert!(err("sales%2ecsv.enc").contains("percent-encoded"));
        assert!(err("dir").contains("not a regular file"));
        assert!(format!("{:#}", ok("missing.csv").unwrap_err()).contains("missing.csv"));
        std::fs::write(data.join("big"), [0u8; 11])?;
        assert!(err("big").contains("over the limit of 10"));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(root.path().join("secret.txt"), data.join("link"))?;
            assert!(err("link").contains("outside the data directory"), "a link out is followed, then refused");
        }
        Ok(())
    }
}
