//! Support for end-to-end tests: build the real binaries and plugins, start `cgs-host` processes
//! on loopback, and talk to them through `cgs-client`.

// Test support: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use cgs_build::{BuildRequest, Selection};

/// The source checkout.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Paths of the `cgs-host` and `cgs` executables, built (or found fresh) once per test binary.
pub struct Binaries {
    /// The service.
    pub host: PathBuf,
    /// The CLI.
    pub cli: PathBuf,
}

/// Build the binaries with the same profile and features as the test run (a no-op when
/// `cargo test --workspace` already built them) and return their paths.
pub fn binaries() -> &'static Binaries {
    static BINS: OnceLock<Binaries> = OnceLock::new();
    BINS.get_or_init(|| {
        let out = Command::new(cargo())
            .current_dir(workspace())
            .args(["build", "-p", "cgs-host", "-p", "cgs-client", "--bins", "--message-format=json-render-diagnostics"])
            // `cargo bench` compiles this crate without debug assertions: run a release service then.
            .args((!cfg!(debug_assertions)).then_some("--release"))
            .stderr(Stdio::piped())
            .output()
            .expect("run cargo build");
        assert!(out.status.success(), "building the binaries failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let mut host = None;
        let mut cli = None;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            let Some(exe) = v.get("executable").and_then(|e| e.as_str()) else { continue };
            match v.pointer("/target/name").and_then(|n| n.as_str()) {
                Some("cgs-host") => host = Some(PathBuf::from(exe)),
                Some("cgs") => cli = Some(PathBuf::from(exe)),
                _ => {}
            }
        }
        Binaries { host: host.expect("cgs-host executable"), cli: cli.expect("cgs executable") }
    })
}

/// The `cgs-sql-cleanroom` executable (examples/sql-cleanroom), built once per test binary that
/// asks for it: the others never wait for DataFusion.
pub fn cleanroom_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(cargo())
            .current_dir(workspace())
            .args(["build", "-p", "cgs-sql-cleanroom", "--bins", "--message-format=json-render-diagnostics"])
            .args((!cfg!(debug_assertions)).then_some("--release"))
            .stderr(Stdio::piped())
            .output()
            .expect("run cargo build");
        assert!(out.status.success(), "building the clean room failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.pointer("/target/name").and_then(|n| n.as_str()) == Some("cgs-sql-cleanroom"))
            .find_map(|v| v.get("executable").and_then(|e| e.as_str()).map(PathBuf::from))
            .expect("cgs-sql-cleanroom executable")
    })
}

/// A directory holding the given plugins, built reproducibly once per test binary.
pub fn plugins_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let req = BuildRequest {
            workspace: workspace(),
            selection: Selection::Named(
                ["constitution", "contracts", "consent", "audit", "chaos", "greetings"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
            out_dir: Some(dir.path().to_path_buf()),
            quiet: true,
        };
        cgs_build::build(&req).unwrap_or_else(|e| panic!("building plugins failed: {e}"));
        dir
    })
    .path()
}

/// A `cgs-host` process started but not serving yet (a joining node waits for members).
pub struct Launched {
    child: Child,
    url: std::sync::mpsc::Receiver<String>,
    printed: Arc<Mutex<Vec<String>>>,
}

impl Launched {
    /// Start `cgs-host` with `args`.
    pub fn new(args: &[std::ffi::OsString], stderr: Stdio, env: &[(&str, &str)]) -> Result<Launched> {
        let bins = binaries();
        let mut child = Command::new(&bins.host)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("spawn cgs-host")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let printed = Arc::new(Mutex::new(Vec::new()));
        let keep = printed.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.trim().strip_prefix("URL:") {
                    let _ = tx.send(url.trim().to_string());
                }
                keep.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        Ok(Launched { child, url: rx, printed })
    }

    /// Whether the process has exited, and how.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The URL it prints, once it has (at most `timeout`).
    pub fn url(&self, timeout: Duration) -> Option<String> {
        self.url.recv_timeout(timeout).ok()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait for the process to end (at most `timeout`), killing it then.
    pub fn wait_exit(mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// Wait until it prints its URL and `/node/health` answers; `data` holds its service
    /// certificate.
    pub async fn ready(mut self, data: &Path) -> Result<Sandbox> {
        // Generous: under CI, a start shares ~1.1 cores with other tests' nodes and a browser
        // (it once took over 120 s); a hung start still fails.
        // A start that fails ends the process: say so at once, with what it printed.
        let deadline = Instant::now() + Duration::from_secs(300);
        let url = loop {
            match self.url.recv_timeout(Duration::from_millis(200)) {
                Ok(u) => break u,
                Err(_) if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    bail!("cgs-host did not print its URL within 300 s");
                }
                Err(_) => {
                    if let Some(status) = self.exited() {
                        let printed = self.printed.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
                        bail!("cgs-host exited ({status}) before serving:\n{printed}");
                    }
                }
            }
        };
        let ca = data.join("service-cert.pem");
        let client = cgs_client::Client::new(&url, &std::fs::read(&ca)?)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match client.get("/node/health").await {
                Ok(r) if r.status == 200 => break,
                _ if Instant::now() > deadline => bail!("{url}/node/health did not answer 200 within 30 s"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        Ok(Sandbox { child: self.child, url, ca, data: data.to_path_buf(), _tmp: None, client, printed: self.printed })
    }
}

/// Propose `actions` as the first of `members` and have every member approve until the
/// constitution decides: the final state (`Accepted`, `Rejected`, …).
pub async fn pass(members: &[&cgs_client::Member], actions: serde_json::Value) -> Result<String> {
    let r = members.first().ok_or_else(|| anyhow!("no members"))?.propose(actions).await?.ok_json()?;
    let id = r["proposal_id"].as_str().ok_or_else(|| anyhow!("no proposal id: {r}"))?.to_string();
    let mut state = r["state"].as_str().unwrap_or_default().to_string();
    for m in members {
        if state != "Open" {
            break;
        }
        state = m.vote(&id, true).await?.ok_json()?["state"].as_str().unwrap_or_default().to_string();
    }
    Ok(state)
}

/// `cgs-host join` arguments for a node in `dir` with these ports, joining `target`.
pub fn join_args(dir: &std::path::Path, listen: u16, peer: u16, target: &Sandbox) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["join".into(), "--dir".into(), dir.into()];
    args.extend(["--log", "warn"].map(Into::into));
    args.extend([format!("--listen=127.0.0.1:{listen}"), format!("--peer-listen=127.0.0.1:{peer}")].map(Into::into));
    args.extend(["--target".into(), target.url.clone().into(), "--service-cert".into(), target.ca.clone().into()]);
    args
}

/// Run `cgs-host start --keys-in-memory` on `dir`, which must refuse: what it said.
pub fn start_refused(dir: &Path) -> String {
    let out = Command::new(&binaries().host)
        .args(["start", "--listen", "127.0.0.1:0", "--keys-in-memory", "--dir"])
        .arg(dir)
        .output()
        .expect("run cgs-host");
    assert!(!out.status.success(), "cgs-host start on {} did not refuse", dir.display());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A free loopback port (bound, then released: a node binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// A cluster of `nodes` `cgs-host` processes under `dir`: a sandbox (`n1`) with a peer listener
/// whose members trust joining nodes (`--auto-trust`), and nodes `n2…` joining it. Returns once
/// every node serves.
pub async fn start_cluster(dir: &Path, nodes: usize, extra: &[&str]) -> Result<Vec<Sandbox>> {
    let n1_dir = dir.join("n1");
    let mut args: Vec<std::ffi::OsString> = vec!["sandbox".into(), "--dir".into(), n1_dir.clone().into()];
    args.extend(["--listen", "127.0.0.1:0", "--log", "warn", "--auto-trust", "--plugins"].map(Into::into));
    args.push(plugins_dir().into());
    args.push(format!("--peer-listen=127.0.0.1:{}", free_port()).into());
    args.extend(extra.iter().map(Into::into));
    let mut out = vec![Launched::new(&args, Stdio::inherit(), &[])?.ready(&n1_dir).await?];
    for i in 2..=nodes {
        let d = dir.join(format!("n{i}"));
        let mut args: Vec<std::ffi::OsString> = vec!["join".into(), "--dir".into(), d.clone().into()];
        args.extend(["--listen", "127.0.0.1:0", "--log", "warn"].map(Into::into));
        args.push(format!("--peer-listen=127.0.0.1:{}", free_port()).into());
        args.push(format!("--target={}", out[0].url).into());
        args.extend(["--service-cert".into(), out[0].ca.clone().into()]);
        args.extend(extra.iter().map(Into::into));
        out.push(Launched::new(&args, Stdio::inherit(), &[])?.ready(&d).await?);
    }
    Ok(out)
}

/// A running `cgs-host sandbox` process.
pub struct Sandbox {
    child: Child,
    /// Its URL.
    pub url: String,
    /// The service certificate path.
    pub ca: PathBuf,
    /// The data directory.
    pub data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// A client pinned to the service certificate.
    pub client: cgs_client::Client,
    printed: Arc<Mutex<Vec<String>>>,
}

impl Sandbox {
    /// Start a sandbox with the test plugins and extra flags in a fresh data directory; returns
    /// once `/node/health` answers.
    pub async fn start(extra: &[&str]) -> Result<Sandbox> {
        let tmp = tempfile::tempdir()?;
        let mut sb = Self::start_in(&tmp.path().join("data"), extra).await?;
        sb._tmp = Some(tmp);
        Ok(sb)
    }

    /// Start (or restart) a sandbox on the data directory `data`.
    pub async fn start_in(data: &Path, extra: &[&str]) -> Result<Sandbox> {
        Self::start_with_plugins(data, plugins_dir(), extra).await
    }

    /// Start (or restart) a sandbox on `data` serving the components in `plugins`.
    pub async fn start_with_plugins(data: &Path, plugins: &Path, extra: &[&str]) -> Result<Sandbox> {
        let mut args: Vec<std::ffi::OsString> = vec!["sandbox".into(), "--dir".into(), data.into()];
        args.extend(["--listen", "127.0.0.1:0", "--log", "warn", "--plugins"].map(Into::into));
        args.push(plugins.into());
        args.extend(extra.iter().map(Into::into));
        Self::spawn(data, &args).await
    }

    /// Start `cgs-host` with `args` (which must make it listen on 127.0.0.1:0 and use `data`).
    pub async fn spawn(data: &Path, args: &[std::ffi::OsString]) -> Result<Sandbox> {
        Self::spawn_logging_to(data, args, Stdio::inherit()).await
    }

    /// [`Sandbox::spawn`] with the process's stderr (its log) sent to `stderr`.
    pub async fn spawn_logging_to(data: &Path, args: &[std::ffi::OsString], stderr: Stdio) -> Result<Sandbox> {
        Self::spawn_with_env(data, args, stderr, &[]).await
    }

    /// [`Sandbox::spawn_logging_to`] with environment variables set for the process.
    pub async fn spawn_with_env(
        data: &Path,
        args: &[std::ffi::OsString],
        stderr: Stdio,
        env: &[(&str, &str)],
    ) -> Result<Sandbox> {
        Launched::new(args, stderr, env)?.ready(data).await
    }

    /// The lines the process printed on stdout so far.
    pub fn printed(&self) -> Vec<String> {
        self.printed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the process has exited by itself, and how.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The process id of the `cgs-host` process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill the process without warning (SIGKILL) and wait for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A sandbox member (`isv`, `data-provider`, `code-provider`) acting through the client.
    pub fn member(&self, name: &str) -> cgs_client::Member {
        let pem = std::fs::read_to_string(self.data.join("members").join(format!("{name}.key"))).unwrap();
        cgs_client::Member::new(self.client.clone(), &pem).unwrap()
    }

    /// Run the `cgs` CLI against this service with `key` (a key file); returns (success, stdout,
    /// stderr).
    pub fn cli(&self, key: Option<&Path>, args: &[&str]) -> (bool, String, String) {
        let mut cmd = Command::new(&binaries().cli);
        cmd.env("CGS_URL", &self.url)
            .env("CGS_CA", &self.ca)
            .env("CGS_STATE_DIR", self.data.join("cli-state"))
            .env_remove("CGS_KEY")
            .current_dir(workspace())
            .args(args);
        if let Some(k) = key {
            cmd.env("CGS_KEY", k);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The node's checkpoint verifier key, from `GET /node/identity`.
    pub async fn verifier_key(&self) -> Result<String> {
        let id = self.client.get("/node/identity").await?.ok_json()?;
        Ok(id["verifier_key"].as_str().ok_or_else(|| anyhow!("no verifier_key"))?.to_string())
    }

    /// Send SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("cgs-host did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer of an `/app` route recorded by a test ([`record_answer`]): the service's URL,
/// method, path, status, body.
type Answer = (String, String, String, u16, Vec<u8>);
static ANSWERS: Mutex<Vec<Answer>> = Mutex::new(Vec::new());

/// Record an answer of the service at `url` for [`check_answers_against_openapi`]. [`call`],
/// [`ok`] and [`bearer`] record theirs.
pub fn record_answer(url: &str, method: &str, path: &str, r: &cgs_client::ApiResponse) {
    if path.starts_with("/app/") && (200..300).contains(&r.status) {
        ANSWERS.lock().unwrap_or_else(|p| p.into_inner()).push((
            url.to_string(),
            method.to_string(),
            path.to_string(),
            r.status,
            r.body.to_vec(),
        ));
    }
}

/// The `/openapi.json` path template `path` (without its query) is served by: same segment
/// count, literals equal, the most literals wins.
fn template_of<'a>(templates: impl Iterator<Item = &'a String>, path: &str) -> Option<&'a String> {
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.split('/').collect();
    templates
        .filter_map(|t| {
            let ts: Vec<&str> = t.split('/').collect();
            if ts.len() != segs.len() {
                return None;
            }
            let mut literals = 0;
            for (a, b) in ts.iter().zip(&segs) {
                if a.starts_with('{') {
                    continue;
                }
                if a != b {
                    return None;
                }
                literals += 1;
            }
            Some((literals, t))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, t)| t)
}

/// Check every answer recorded so far from `client`'s service against the success schema the service's `/openapi.json`
/// gives for its method, route template and status (Python's `jsonschema`, Draft 2020-12): the
/// plugins' own descriptions (`cgs-plugin-api`) must say what they really answer. Returns the
/// operations (`METHOD /template`) checked, or `None` (saying so) where `jsonschema` is missing
/// outside CI.
pub async fn check_answers_against_openapi(client: &cgs_client::Client) -> Option<std::collections::BTreeSet<String>> {
    let probe = Command::new("python3").args(["-c", "import jsonschema"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(std::env::var_os("CGS_CI").is_none(), "CGS_CI is set but python3 jsonschema is missing");
        eprintln!(
            "SKIPPED: checking answers against their schemas needs python3 with `jsonschema` (.ci/run installs it)"
        );
        return None;
    }
    let doc = client.get("/openapi.json").await.unwrap().ok_json().unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let answers: Vec<Answer> =
        ANSWERS.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|a| a.0 == client.url()).cloned().collect();
    let mut cases = Vec::new();
    let mut checked = std::collections::BTreeSet::new();
    for (_, method, path, status, body) in &answers {
        let template =
            template_of(paths.keys(), path).unwrap_or_else(|| panic!("{method} {path}: not in /openapi.json"));
        let op = &paths[template][method.to_lowercase()];
        let schema = &op["responses"][status.to_string()]["content"]["application/json"]["schema"];
        assert!(!schema.is_null(), "{method} {path} answered {status}, which /openapi.json does not describe: {op}");
        let instance: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
        cases.push(
            serde_json::json!({"what": format!("{method} {path} ({status})"), "schema": schema, "instance": instance}),
        );
        checked.insert(format!("{method} {template}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cases.json");
    std::fs::write(&file, serde_json::to_vec(&cases).unwrap()).unwrap();
    let script = "import json, sys\nfrom jsonschema import Draft202012Validator\n\
        for c in json.load(open(sys.argv[1])):\n\
        \x20   for e in Draft202012Validator(c['schema']).iter_errors(c['instance']):\n\
        \x20       print(c['what'] + ': ' + '/'.join(map(str, e.absolute_path)) + ': ' + e.message)\n";
    let out = Command::new("python3").args(["-c", script]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let errors = String::from_utf8_lossy(&out.stdout);
    assert!(errors.trim().is_empty(), "answers that do not match their described schema:\n{errors}");
    Some(checked)
}

/// The error code of a response, or a description of why there is none.
pub fn code(r: &cgs_client::ApiResponse) -> String {
    r.error().map(|e| e.error.code).unwrap_or_else(|| format!("<status {} without envelope>", r.status))
}

/// Copy a source tree without build outputs (`target`), VCS data (`.git`) or sandboxes, as a
/// member's own clone would be.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if matches!(name.as_str(), "target" | ".git" | "sandbox") {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let ty = entry.file_type().unwrap();
        if ty.is_dir() {
            copy_tree(&src, &dst);
        } else if ty.is_file() {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// `method path` as member `m`, with an optional JSON body.
pub async fn call(
    m: &cgs_client::Member,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> cgs_client::ApiResponse {
    let r = m.authed(method, path, body.map(|b| b.to_string().into_bytes())).await.unwrap();
    record_answer(m.client.url(), method, path, &r);
    r
}

/// [`call`], which must succeed (2xx); its JSON answer (`null` without a body).
pub async fn ok(
    m: &cgs_client::Member,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let r = call(m, method, path, body).await;
    assert!(r.status < 300, "{method} {path}: {} {}", r.status, String::from_utf8_lossy(&r.body));
    r.json().unwrap_or(serde_json::Value::Null)
}

/// `method path` with a bearer token (a user's JWT or a clean-room session token).
pub async fn bearer(
    client: &cgs_client::Client,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> cgs_client::ApiResponse {
    let auth = format!("Bearer {token}");
    let r = client
        .request(method, path, body.map(|b| b.to_string().into_bytes()), &[("authorization", auth.as_str())])
        .await
        .unwrap();
    record_answer(client.url(), method, path, &r);
    r
}

/// Open a clean-room session for `contract` with virtual evidence of `host_data`, bound to the
/// X25519 key `pk` (a fresh nonce asked for that contract).
pub async fn open_session(
    client: &cgs_client::Client,
    contract: &str,
    host_data: &str,
    pk: &[u8],
) -> cgs_client::ApiResponse {
    let r = client.get(&format!("/cleanroom/nonce?contract_id={contract}")).await.unwrap();
    let nonce = r.ok_json().unwrap()["nonce"].as_str().unwrap().to_string();
    session_with_nonce(client, contract, host_data, pk, &nonce).await
}

/// [`open_session`] with a given nonce: evidence whose `report_data` is SHA-256(pk ‖ nonce).
pub async fn session_with_nonce(
    client: &cgs_client::Client,
    contract: &str,
    host_data: &str,
    pk: &[u8],
    nonce: &str,
) -> cgs_client::ApiResponse {
    use base64::Engine as _;
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(pk);
    h.update(nonce.as_bytes());
    let report_data = format!("{}{}", hex::encode(h.finalize()), "00".repeat(32));
    let evidence = serde_json::json!({"kind": "virtual", "measurement": "22".repeat(48), "host_data": host_data, "report_data": report_data});
    let body = serde_json::json!({"evidence": evidence, "public_key": base64::engine::general_purpose::STANDARD.encode(pk), "nonce": nonce});
    client.post_json(&format!("/app/contracts/{contract}/cleanroom/session"), &body).await.unwrap()
}

/// `note` (a signed checkpoint) with its line `i` (0 origin, 1 size, 2 root) replaced by `line`,
/// its signature left as it was: what a rewritten or a stale ledger would show in its place.
pub fn note_with_line(note: &str, i: usize, line: &str) -> String {
    let mut lines: Vec<&str> = note.split('\n').collect();
    lines[i] = line;
    lines.join("\n")
}
