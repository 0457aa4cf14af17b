//! The sandbox serves plugin routes over HTTPS and stops cleanly.

use cgs_e2e::{Sandbox, code};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_serves_plugin_routes_over_https() {
    let mut sb = Sandbox::start(&[]).await.unwrap();
    let c = &sb.client;

    let health = c.get("/node/health").await.unwrap().ok_json().unwrap();
    assert_eq!(health["status"], "ok");

    // The ISV example plugin (sdk/plugin/example), built by the build, through HTTPS.
    let r = c.put_json("/app/greetings/alice", &json!({"text": "hello from an ISV plugin"})).await.unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let tx = r.header("x-cgs-tx-id").expect("writes carry x-cgs-tx-id").to_string();
    assert!(tx.parse::<cgs_core::TxId>().is_ok(), "{tx}");
    let g = c.get("/app/greetings/alice").await.unwrap().ok_json().unwrap();
    assert_eq!(g["text"], "hello from an ISV plugin");
    let r = c.get("/app/greetings/bob").await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (404, "GreetingNotFound"));

    // The service plugins are loaded and routed.
    // The service plugins are loaded and routed (the collaboration test covers them in depth).
    let isv = sb.member("isv");
    let body = json!({"data": {"purpose": "joint analytics"}}).to_string().into_bytes();
    let r = isv.authed("PUT", "/app/contracts/collab-1", Some(body)).await.unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let list = isv.authed("GET", "/app/contracts", None).await.unwrap().ok_json().unwrap();
    assert_eq!(list["value"][0]["id"], "collab-1");
    let r = isv.authed("POST", "/app/contracts/collab-1/events", Some(b"{}".to_vec())).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (405, "ContractNotAccepted"));
    let consent =
        isv.authed("GET", "/app/contracts/collab-1/consent/execution", None).await.unwrap().ok_json().unwrap();
    assert_eq!(
        (consent["status"].as_str(), consent["reason"]["code"].as_str()),
        (Some("disabled"), Some("ContractNotAccepted"))
    );

    // `--json` answers and errors are JSON: a script branches on the service's code.
    let key = sb.data.join("members").join("isv.key");
    let (ok, out, err) = sb.cli(Some(&key), &["--json", "proposal", "list"]);
    assert!(ok, "{err}");
    assert!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["value"].is_array(), "{out}");
    let (ok, out, err) = sb.cli(Some(&key), &["--json", "proposal", "show", "no-such-proposal"]);
    assert!(!ok && out.is_empty(), "{out}");
    let e: serde_json::Value = serde_json::from_str(err.trim()).unwrap_or_else(|_| panic!("a JSON error: {err}"));
    assert_eq!(
        (e["error"]["status"].as_u64(), e["error"]["code"].as_str()),
        (Some(404), Some("ProposalNotFound")),
        "{e}"
    );
    let (ok, _, err) = sb.cli(None, &["--json", "proposal", "list"]);
    assert!(!ok);
    let e: serde_json::Value = serde_json::from_str(err.trim()).unwrap_or_else(|_| panic!("a JSON error: {err}"));
    assert_eq!(e["error"]["code"], "Usage", "no --key: {e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("--key"), "{e}");

    // `cgs node list`: the one node, trusted, a voter and primary, at the address it serves on
    // (anyone may ask).
    let (ok, out, err) = sb.cli(None, &["node", "list"]);
    assert!(ok, "{err}");
    let addr = sb.url.trim_start_matches("https://");
    assert_eq!(out.trim_end(), format!("1    Trusted  Voter    primary  {addr}"));

    // TLS: the certificate is pinned; a client trusting another certificate cannot connect.
    let other = tempfile::tempdir().unwrap();
    let other_id = cgs_host_identity(other.path()).await;
    let stranger = cgs_client::Client::new(&sb.url, other_id.as_bytes()).unwrap();
    assert!(stranger.get("/node/health").await.is_err(), "a client pinning another service certificate must fail");

    // SIGTERM stops the node cleanly.
    let status = sb.terminate().unwrap();
    assert!(status.success(), "cgs-host exited with {status}");
}

/// The service certificate of another service, created by the real binary (a sandbox started
/// and stopped in `dir`).
async fn cgs_host_identity(dir: &std::path::Path) -> String {
    let mut other = Sandbox::start_in(&dir.join("data"), &[]).await.unwrap();
    let cert = std::fs::read_to_string(&other.ca).unwrap();
    assert!(other.terminate().unwrap().success());
    cert
}

/// A first sandbox start that fails after it began creating the service (here: the port is in
/// use) moves what it made aside (deleting nothing), says so in words, and the same command then
/// works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_start_does_not_poison_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(&cgs_e2e::binaries().host)
        .args(["sandbox", "--log", "warn", "--listen", &addr, "--plugins"])
        .arg(cgs_e2e::plugins_dir())
        .arg("--dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr) && err.contains("was moved to"), "{err}");
    assert!(!data.exists(), "the failed start moved what it made aside");
    let aside: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("data.failed-"))
        .collect();
    assert_eq!(aside.len(), 1, "nothing is deleted: {aside:?}");
    drop(taken);
    let mut sb = Sandbox::start_in(&data, &[]).await.unwrap();
    assert_eq!(sb.client.get("/gov/service").await.unwrap().ok_json().unwrap()["status"], "Open");
    assert!(sb.terminate().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_service_and_its_state() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut sb = Sandbox::start_in(&data, &[]).await.unwrap();
    let cert = std::fs::read(&sb.ca).unwrap();
    let key = sb.verifier_key().await.unwrap();
    let r = sb.client.put_json("/app/greetings/carol", &json!({"text": "still here"})).await.unwrap();
    assert_eq!(r.status, 201);
    let tx = r.header("x-cgs-tx-id").unwrap().to_string();
    assert!(sb.terminate().unwrap().success());

    let sb = Sandbox::start_in(&data, &[]).await.unwrap();
    assert_eq!(std::fs::read(&sb.ca).unwrap(), cert, "the service certificate survives a restart");
    assert_eq!(sb.verifier_key().await.unwrap(), key, "so does the checkpoint key");
    let g = sb.client.get("/app/greetings/carol").await.unwrap().ok_json().unwrap();
    assert_eq!(g["text"], "still here", "state survives a restart");
    let status = sb.client.get(&format!("/node/tx/{tx}")).await.unwrap().ok_json().unwrap();
    assert_eq!(status["status"], "Committed");
}

/// The dev loop (`sandbox --plugins DIR --watch`): a component dropped into DIR is proposed and
/// voted in by the sandbox members (recorded in the ledger like any change) and its routes
/// answer; a file that is not a plugin is reported and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_loop_installs_a_changed_plugin_by_vote() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(cgs_e2e::plugins_dir()).unwrap().flatten() {
        if e.file_name() != "greetings.wasm" {
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
    let mut sb = Sandbox::start_with_plugins(&tmp.path().join("data"), &dir, &["--watch"]).await.unwrap();
    let before = sb.client.get("/app/greetings/carol").await.unwrap();
    assert_eq!(before.status, 404, "no greetings plugin yet");

    std::fs::copy(cgs_e2e::plugins_dir().join("greetings.wasm"), dir.join("greetings.wasm")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let line = loop {
        if let Some(l) = sb.printed().into_iter().find(|l| l.starts_with("reload: greetings")) {
            break l;
        }
        assert!(std::time::Instant::now() < deadline, "no reload line: {:?}", sb.printed());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(line.contains("installed by a vote of the sandbox members (proposal "), "{line}");
    let r = sb.client.put_json("/app/greetings/carol", &json!({"text": "reloaded"})).await.unwrap();
    assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));

    // Governance did it: an accepted set_plugin proposed by the sandbox's first member.
    let isv = sb.member("isv");
    let list = isv.authed("GET", "/gov/proposals", None).await.unwrap().ok_json().unwrap();
    let greetings = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["actions"][0]["name"] == "set_plugin" && p["actions"][0]["args"]["name"] == "greetings")
        .unwrap_or_else(|| panic!("{list}"))
        .clone();
    assert_eq!((&greetings["state"], greetings["proposer_id"].as_str()), (&json!("Accepted"), Some(isv.id().as_str())));

    // Not a plugin: reported, nothing changes, the service keeps serving.
    std::fs::write(dir.join("broken.wasm"), b"not wasm").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !sb.printed().iter().any(|l| l.starts_with("reload: broken.wasm: not a CGS plugin component")) {
        assert!(std::time::Instant::now() < deadline, "no reload line for broken.wasm: {:?}", sb.printed());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let g = sb.client.get("/app/greetings/carol").await.unwrap().ok_json().unwrap();
    assert_eq!(g["text"], "reloaded");
    assert!(sb.terminate().unwrap().success());
}

/// Quiet, structured logs: by default a sandbox logs only CGS's own lines (no openraft, wasmtime
/// or hyper chatter); `--log-format json` makes every line a JSON object; a request's lines carry
/// the id the node gave it (the answer's `x-request-id`) and the client's own, if usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_quiet_structured_and_carry_the_request_id() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("stderr.log");
    let mut args: Vec<std::ffi::OsString> = vec!["sandbox".into(), "--dir".into(), data.clone().into()];
    args.extend(["--listen", "127.0.0.1:0", "--log-format", "json", "--plugins"].map(Into::into));
    args.push(cgs_e2e::plugins_dir().into());
    let file = std::fs::File::create(&log).unwrap();
    let mut sb = Sandbox::spawn_logging_to(&data, &args, file.into()).await.unwrap();

    // The node names each request; a client's own id is logged beside it, never instead of it.
    let r = sb.client.request("GET", "/app/chaos/trap", None, &[("x-request-id", "trace-me-42")]).await.unwrap();
    assert_eq!(r.status, 500);
    let trap_id = r.header("x-request-id").unwrap().to_string();
    assert!(trap_id.len() == 16 && trap_id.bytes().all(|b| b.is_ascii_hexdigit()), "{trap_id}");
    let odd = sb.client.request("GET", "/node/health", None, &[("x-request-id", "zz yy\"q")]).await.unwrap();
    assert_ne!(odd.header("x-request-id"), Some("zz yy\"q"));
    assert!(sb.terminate().unwrap().success());

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l:?} in\n{text}")))
        .collect();
    for l in &lines {
        let target = l["target"].as_str().unwrap_or_default();
        assert!(target.starts_with("cgs"), "only CGS's own lines by default: {l}");
    }
    assert!(lines.len() <= 20, "a start, its decisions and warnings only: {} lines\n{text}", lines.len());
    let trap = lines
        .iter()
        .find(|l| l["message"] == "plugin call failed")
        .unwrap_or_else(|| panic!("the trap is logged: {text}"));
    assert_eq!(trap["level"], "WARN");
    assert_eq!(trap["span"]["request_id"], trap_id.as_str(), "{trap}");
    assert_eq!(trap["span"]["client_request_id"], "trace-me-42", "{trap}");
    assert!(!text.contains("zz yy"), "an unusable client id is not logged: {text}");
    assert!(lines.iter().any(|l| l["message"] == "proposal decided"), "the opening vote is logged: {text}");
}

/// `--config FILE`: every flag of `sandbox` and `start` from TOML, relative paths from the
/// file's directory, a flag and an environment variable beating the file, a flag beating a file
/// setting it conflicts with; `config check` names every mistake with its line and exits 1, says
/// where each value comes from, and passes the generated examples; a start refuses a bad file, or
/// an empty directory without genesis, before it writes anything; a restart leaves the file's
/// genesis out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_sets_the_flags_and_loses_to_them() {
    let host = &cgs_e2e::binaries().host;
    let tmp = tempfile::tempdir().unwrap();
    let run_env = |args: &[&std::ffi::OsStr], env: &[(&str, &str)]| {
        let out = std::process::Command::new(host).args(args).envs(env.iter().copied()).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let run = |args: &[&std::ffi::OsStr]| run_env(args, &[]);
    let os = |s: &'static str| -> &std::ffi::OsStr { s.as_ref() };

    // The examples list every setting, and check as printed.
    for command in ["sandbox", "start"] {
        let example = tmp.path().join(format!("{command}-example.toml"));
        let (status, text, _) = run(&[os("config"), os("example"), command.as_ref()]);
        assert_eq!(status, Some(0));
        for key in ["# dir = ", "# listen = ", "# plugin-fuel = ", "# max-connections = ", "# log-format = "] {
            assert!(text.contains(key), "{key} in\n{text}");
        }
        std::fs::write(&example, &text).unwrap();
        let (status, out, err) = run(&[os("config"), os("check"), example.as_os_str(), os("--for"), command.as_ref()]);
        if command == "sandbox" {
            assert_eq!(status, Some(0), "{out}{err}");
            assert!(out.contains("plugin-fuel") && out.contains("(default)"), "{out}");
        } else {
            // `start` has no default data directory or address: the check says what to set.
            assert_eq!(status, Some(1), "{out}{err}");
            assert!(err.contains("--dir") && err.contains("set it in the file"), "{err}");
        }
    }

    // Every mistake at once, each with its line and what to do.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "listen = \"127.0.0.1:0\"\nplugin-fuel = \"lots\"\nlisen = 3\nwatch = 1\nlog-format = \"xml\"\n\
         plugin_fuel = 7\nlog = \"cgs_host=loud\"\n[x]\ny = 1\n",
    )
    .unwrap();
    let (status, _, err) = run(&[os("config"), os("check"), bad.as_os_str(), os("--for"), os("sandbox")]);
    assert_eq!(status, Some(1), "{err}");
    for said in [
        "7 mistakes",
        "line 2: `plugin-fuel`: invalid value 'lots'",
        "line 3: `lisen` is not a setting of `cgs-host sandbox` (did you mean `listen`?)",
        "line 4: `watch`: is a switch",
        "line 5: `log-format`: invalid value 'xml' [possible values: text, json]",
        "line 6: `plugin_fuel` sets `plugin-fuel` a second time",
        "line 7: `log`: invalid value 'cgs_host=loud'",
        "line 8: `x` is not a setting",
    ] {
        assert!(err.contains(said), "{said:?} in {err}");
    }
    let (status, _, err) = run(&[os("sandbox"), os("--config"), bad.as_os_str()]);
    assert_eq!(status, Some(2), "a start refuses the same file before anything starts: {err}");
    assert!(err.contains("7 mistakes"), "{err}");
    let not_toml = tmp.path().join("not.toml");
    std::fs::write(&not_toml, "listen = \n").unwrap();
    let (status, _, err) = run(&[os("config"), os("check"), not_toml.as_os_str()]);
    assert_eq!(status, Some(1));
    assert!(err.contains("not valid TOML") && err.contains("line 1"), "{err}");

    // `start` from a file: `dir` and `listen` (required) come from it; an empty directory
    // without genesis is refused before anything is written.
    let start = tmp.path().join("start.toml");
    std::fs::write(&start, "dir = \"empty\"\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let (status, _, err) = run(&[os("start"), os("--config"), start.as_os_str()]);
    assert_eq!(status, Some(1), "{err}");
    assert!(err.contains("holds no service") && err.contains("genesis"), "{err}");
    assert!(!tmp.path().join("empty").exists(), "nothing was written");

    // A sandbox from a file: `dir` relative to the file; `listen` overridden by the flag (the
    // file's port 1 cannot be bound); `log` overridden by the environment (the file's `off` would
    // print nothing); `workspace` left out because `--plugins` was given; `max-nonces` and
    // `log-format` from the file.
    let conf_dir = tmp.path().join("conf");
    std::fs::create_dir(&conf_dir).unwrap();
    let conf = conf_dir.join("cgs.toml");
    std::fs::write(
        &conf,
        "dir = \"data\"\nlisten = \"127.0.0.1:1\"\nworkspace = \"/nonexistent\"\nlog = \"off\"\nlog-format = \"json\"\nmax_nonces = 1\n",
    )
    .unwrap();
    let data = conf_dir.join("data");
    let log = tmp.path().join("stderr.log");
    let mut args: Vec<std::ffi::OsString> =
        vec!["sandbox".into(), "--config".into(), conf.clone().into(), "--listen".into(), "127.0.0.1:0".into()];
    args.extend(["--plugins".into(), cgs_e2e::plugins_dir().into()]);
    let mut sb = Sandbox::spawn_with_env(
        &data,
        &args,
        std::fs::File::create(&log).unwrap().into(),
        &[("CGS_LOG", "warn,cgs_host=info")],
    )
    .await
    .unwrap();
    assert!(data.join("service-cert.pem").exists(), "the data directory is relative to the file");
    let first = sb.client.get("/cleanroom/nonce?contract_id=c1").await.unwrap();
    assert_eq!(first.status, 200);
    let second = sb.client.get("/cleanroom/nonce?contract_id=c1").await.unwrap();
    assert_eq!((second.status, code(&second).as_str()), (503, "ServiceBusy"), "max_nonces = 1 from the file");
    assert!(sb.terminate().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("the config file's `workspace` is not used: `--plugins` was given"), "{text}");
    let serving = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "serving");
    assert!(serving.is_some(), "the environment's log filter beat the file's `off`, in the file's JSON format: {text}");

    // `config check` says where each value comes from.
    std::fs::write(
        &conf,
        format!(
            "dir = \"data\"\nlisten = \"127.0.0.1:0\"\nplugins = {:?}\n",
            cgs_e2e::plugins_dir().display().to_string()
        ),
    )
    .unwrap();
    let (status, out, err) =
        run_env(&[os("config"), os("check"), conf.as_os_str(), os("--for"), os("sandbox")], &[("CGS_LOG", "warn")]);
    assert_eq!(status, Some(0), "{out}{err}");
    let line = |key: &str| {
        out.lines().find(|l| l.trim_start().starts_with(&format!("{key} "))).unwrap_or_default().to_string()
    };
    assert!(line("dir").contains(&data.display().to_string()) && line("dir").ends_with("(file)"), "{out}");
    assert!(line("log").contains("= warn") && line("log").ends_with("(environment)"), "{out}");
    assert!(line("plugin-fuel").ends_with("(default)"), "{out}");

    // A site's `start` file keeps its genesis: on a restart it is left out, saying so.
    let restart = conf_dir.join("node.toml");
    std::fs::write(
        &restart,
        "dir = \"data\"\nlisten = \"127.0.0.1:0\"\ngenesis = \"genesis.json\"\nplugins = \"plugins\"\n",
    )
    .unwrap();
    let (status, out, err) = run(&[os("config"), os("check"), restart.as_os_str()]);
    assert_eq!(status, Some(0), "{out}{err}");
    assert!(out.contains("already holds a service: the config file's `genesis` and `plugins`"), "{out}");
}

/// A node told to stop (SIGTERM) the moment it prints its URL stops cleanly: its handlers are in
/// place before anyone can learn where it listens. (They used to be registered by a task not yet
/// run at that moment; CI once saw a sandbox end "signal 15" right after its first answer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_as_soon_as_the_url_is_printed_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut args: Vec<std::ffi::OsString> = vec!["sandbox".into(), "--dir".into(), data.clone().into()];
    args.extend(["--listen", "127.0.0.1:0", "--log", "warn", "--plugins"].map(Into::into));
    args.push(cgs_e2e::plugins_dir().into());
    for round in 0..3 {
        let launched = cgs_e2e::Launched::new(&args, std::process::Stdio::inherit(), &[]).unwrap();
        assert!(launched.url(std::time::Duration::from_secs(300)).is_some(), "round {round}: no URL");
        let sent = std::process::Command::new("kill").args(["-TERM", &launched.pid().to_string()]).status().unwrap();
        assert!(sent.success());
        let status = launched.wait_exit(std::time::Duration::from_secs(30)).expect("stopped within 30 s");
        assert!(status.success(), "round {round}: {status}");
    }
}
