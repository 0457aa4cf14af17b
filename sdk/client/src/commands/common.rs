//! Helpers shared by the command groups: the client and member named by the global options,
//! requests, output, and `JSON|@FILE`, path and key arguments.

use std::future::Future;
use std::path::Path;

use cgs_client::{ApiResponse, Client, ClientError, Member};
use serde_json::Value;

use super::{CliError, Result};
use crate::Cli;

/// A client of the service at `--url`, trusting `--ca`.
pub(crate) fn client(cli: &Cli) -> Result<Client> {
    let ca = cli.ca.as_ref().ok_or_else(|| {
        CliError::usage("--ca (or CGS_CA) is required: the service certificate to trust, e.g. sandbox/service-cert.pem")
    })?;
    Ok(Client::new(&cli.url, &read(ca)?)?)
}

/// The member of `--key` on [`client`].
pub(crate) fn member(cli: &Cli) -> Result<Member> {
    let path = cli
        .key
        .as_ref()
        .ok_or_else(|| CliError::usage("--key (or CGS_KEY) is required: the member's private key file"))?;
    let pem = read_to_string(path)?;
    Ok(Member::new(client(cli)?, &pem)?)
}

/// Run `f` to completion on a new runtime.
pub(crate) fn block_on<F: Future>(f: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    Ok(rt.block_on(f))
}

/// The JSON body of a 2xx answer; an error envelope becomes [`CliError::Client`].
pub(crate) fn ok_json(r: std::result::Result<ApiResponse, ClientError>) -> Result<Value> {
    Ok(r?.ok_json()?)
}

/// `method path` as the member (with its bearer token) with an optional JSON body: the answer.
pub(crate) fn authed(m: &Member, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    ok_json(block_on(m.authed(method, path, body.map(|b| b.to_string().into_bytes())))?)
}

/// Propose `actions` (`[{"name","args"}]`): the answer (`proposal_id`, `state`).
pub(crate) fn propose(m: &Member, actions: Value) -> Result<Value> {
    ok_json(block_on(m.propose(actions))?)
}

/// Propose one action and print the proposal id and state.
pub(crate) fn propose_action(cli: &Cli, m: &Member, name: &str, args: Value) -> Result {
    let v = propose(m, serde_json::json!([{"name": name, "args": args}]))?;
    show_proposal(cli, &v);
    Ok(())
}

/// Vote on a proposal and print its state.
pub(crate) fn vote_on(cli: &Cli, m: &Member, id: &str, vote: &str) -> Result {
    let approve = match vote {
        "approve" => true,
        "reject" => false,
        other => return Err(CliError::usage(format!("vote must be `approve` or `reject`, not `{other}`"))),
    };
    observe_checkpoint(cli, &m.client, false)?;
    let v = ok_json(block_on(m.vote(id, approve))?)?;
    show_state(cli, id, &v);
    Ok(())
}

/// Before a member acts on what the service shows (a vote): check that the service's ledger
/// extends the checkpoint the CLI kept for it, and keep the newer one
/// ([`cgs_client::checkpoints`]; `reset`: keep the current one unchecked). Refuses if the
/// history was rewritten; says so when nothing could be checked or kept. The note seen, if any.
pub(crate) fn observe_checkpoint(cli: &Cli, c: &Client, reset: bool) -> Result<Option<String>> {
    let Some(state) = cgs_client::checkpoints::state_dir() else {
        eprintln!(
            "note: no state directory (CGS_STATE_DIR, XDG_STATE_HOME or HOME): the service's ledger is not checked \
             against a checkpoint kept of it"
        );
        return Ok(None);
    };
    let Some(ca) = cli.ca.as_ref() else { return Ok(None) };
    let path = cgs_client::checkpoints::kept_path(&state, &read_to_string(ca)?)?;
    let seen = block_on(cgs_client::checkpoints::observe(c, &path, reset))??;
    if seen.observed == cgs_client::checkpoints::Observed::NoneYet {
        eprintln!("note: the service has signed no checkpoint yet: nothing to check its ledger against");
    }
    if let Some(why) = &seen.not_kept {
        eprintln!("warning: {why} (the ledger was checked; the next check starts from the older one)");
    }
    Ok(seen.note)
}

/// Print an answer: pretty JSON with `--json`, else through `text`.
pub(crate) fn show(cli: &Cli, v: &Value, text: impl FnOnce(&Value) -> String) {
    if cli.json {
        println!("{}", pretty(v));
    } else {
        println!("{}", text(v));
    }
}

/// Print a new proposal's id and state.
pub(crate) fn show_proposal(cli: &Cli, v: &Value) {
    show(cli, v, |v| {
        format!("proposal {} is {}", v["proposal_id"].as_str().unwrap_or("?"), v["state"].as_str().unwrap_or("?"))
    });
}

/// Print the state of proposal `id` after a ballot or a withdrawal.
pub(crate) fn show_state(cli: &Cli, id: &str, v: &Value) {
    show(cli, v, |v| format!("proposal {id} is {}", v["state"].as_str().unwrap_or("?")));
}

/// Pretty JSON.
pub(crate) fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// The items of a list answer (`{"value":[…]}`), one `line` each.
pub(crate) fn lines(v: &Value, line: impl FnMut(&Value) -> String) -> Vec<String> {
    v["value"].as_array().map(|a| a.iter().map(line).collect()).unwrap_or_default()
}

/// A JSON value as text: strings bare, `null` and `""` as `-`.
pub(crate) fn plain(v: &Value) -> String {
    match v {
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A JSON array as `a, b, c` (`-` when empty or absent).
pub(crate) fn plain_list(v: &Value) -> String {
    match v.as_array().filter(|a| !a.is_empty()) {
        Some(a) => a.iter().map(plain).collect::<Vec<_>>().join(", "),
        None => "-".into(),
    }
}

pub(crate) use cgs_core::contract::percent_encode as encode;

/// `/app/contracts/{id}{rest}`.
pub(crate) fn contract_path(id: &str, rest: &str) -> String {
    format!("/app/contracts/{}{rest}", encode(id))
}

/// `path?query` (just `path` without a query).
pub(crate) fn with_query(path: String, query: &[String]) -> String {
    if query.is_empty() { path } else { format!("{path}?{}", query.join("&")) }
}

/// A `JSON|@FILE` argument of `flag` (`@-`: stdin).
pub(crate) fn json_arg(flag: &'static str, arg: &str) -> Result<Value> {
    let (text, from) = match arg.strip_prefix('@') {
        Some("-") => {
            let mut t = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut t).map_err(CliError::Stdin)?;
            (t, "stdin".to_string())
        }
        Some(path) => (read_to_string(Path::new(path))?, path.to_string()),
        None => return serde_json::from_str(arg).map_err(|source| CliError::JsonArg { flag, source }),
    };
    serde_json::from_str(&text).map_err(|source| CliError::NotJson { what: from, source })
}

/// A node's verifier key (`origin+keyid+base64`), or a file holding one.
pub(crate) fn read_key(k: &str) -> Result<cgs_core::note::VerifierKey> {
    let text = match std::fs::read_to_string(k) {
        Ok(t) => t.trim().to_string(),
        Err(_) => k.trim().to_string(),
    };
    cgs_core::note::VerifierKey::parse(&text).map_err(CliError::NodeKey)
}

/// Read a file.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| CliError::Read { path: path.to_path_buf(), source })
}

/// Read a text file.
pub(crate) fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| CliError::Read { path: path.to_path_buf(), source })
}

/// Write a file.
pub(crate) fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result {
    std::fs::write(path, bytes).map_err(|source| CliError::Write { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_keeps_unreserved_bytes_only() {
        assert_eq!(encode("a-Z_0.~"), "a-Z_0.~");
        assert_eq!(encode("x y/z|é"), "x%20y%2Fz%7C%C3%A9");
    }

    #[test]
    fn paths_and_queries() {
        assert_eq!(contract_path("c 1", "/events"), "/app/contracts/c%201/events");
        assert_eq!(with_query("/p".into(), &[]), "/p");
        assert_eq!(with_query("/p".into(), &["a=1".into(), "b=2".into()]), "/p?a=1&b=2");
    }

    #[test]
    fn plain_values() {
        use serde_json::json;
        assert_eq!(plain(&json!("")), "-");
        assert_eq!(plain(&json!(null)), "-");
        assert_eq!(plain(&json!("x")), "x");
        assert_eq!(plain(&json!(3)), "3");
        assert_eq!(plain_list(&json!([])), "-");
        assert_eq!(plain_list(&json!(["a", 1, null])), "a, 1, -");
        assert_eq!(lines(&json!({"value": [1, 2]}), plain), ["1", "2"]);
        assert!(lines(&json!({}), plain).is_empty());
    }

    #[test]
    fn json_arg_messages() {
        assert_eq!(json_arg("--data", r#"{"a":1}"#).unwrap(), serde_json::json!({"a": 1}));
        let e = json_arg("--data", "nope").unwrap_err().to_string();
        assert!(e.starts_with("--data is not JSON (or @FILE): expected ident"), "{e}");
        let e = json_arg("--data", "@/nonexistent/x.json").unwrap_err().to_string();
        assert!(e.starts_with("cannot read /nonexistent/x.json: "), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.json");
        std::fs::write(&f, "{").unwrap();
        let e = json_arg("--data", &format!("@{}", f.display())).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{} is not JSON: EOF", f.display())), "{e}");
    }

    #[test]
    fn node_key_message() {
        let e = read_key("not-a-key").unwrap_err().to_string();
        assert!(e.ends_with(" (expected origin+keyid+base64, see GET /node/identity)"), "{e}");
    }
}
