//! HTTPS load generator for the `/app` plugin routes of a real `cgs-host sandbox`.
//!
//! Scenario "consent": `GET /app/contracts/bench/consent/execution`; scenario "events":
//! `POST /app/contracts/bench/events?scope=bench`. Each connection is one tokio task holding one
//! persistent HTTP/1.1 keep-alive connection over TLS 1.3 (service certificate pinned) and sending
//! requests back to back. After a warm-up, per-request latencies are recorded and summarised in a
//! markdown table.
//!
//! ```text
//! cargo bench -p cgs-e2e --bench app_load -- [--duration SECS] [--warmup SECS]
//!     [--conns-consent N] [--conns-events N] [--only consent|events]
//! ```
//! The same settings can come from the environment: `APP_LOAD_DURATION`, `APP_LOAD_WARMUP`,
//! `APP_LOAD_CONNS_CONSENT`, `APP_LOAD_CONNS_EVENTS`, `APP_LOAD_ONLY` (arguments win).

// A bench: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use serde_json::json;

#[path = "common/load.rs"]
mod load;
use load::{Target, Window, Workload, report, run_scenario};

const CONTRACT: &str = "bench";
const MEMBERS: [&str; 3] = ["isv", "data-provider", "code-provider"];

#[derive(Debug, Clone)]
struct Settings {
    duration: Duration,
    warmup: Duration,
    conns_consent: usize,
    conns_events: usize,
    only: Option<String>,
    /// Offered load (req/s over all connections) of the paced consent run; 0 skips it.
    consent_rate: f64,
}

fn secs(s: &str, what: &str) -> Result<Duration> {
    let v: f64 = s.trim().parse().with_context(|| format!("{what}: `{s}` is not a number of seconds"))?;
    if !v.is_finite() || v < 0.0 {
        bail!("{what}: `{s}` is not a non-negative number of seconds");
    }
    Ok(Duration::from_secs_f64(v))
}

fn count(s: &str, what: &str) -> Result<usize> {
    let v: usize = s.trim().parse().with_context(|| format!("{what}: `{s}` is not a count"))?;
    if v == 0 {
        bail!("{what}: needs at least one connection");
    }
    Ok(v)
}

impl Settings {
    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "duration" => self.duration = secs(value, "--duration")?,
            "warmup" => self.warmup = secs(value, "--warmup")?,
            "conns-consent" => self.conns_consent = count(value, "--conns-consent")?,
            "conns-events" => self.conns_events = count(value, "--conns-events")?,
            "only" => match value {
                "consent" | "consent-paced" | "events" => self.only = Some(value.to_string()),
                _ => bail!("--only: expected `consent`, `consent-paced` or `events`, got `{value}`"),
            },
            "consent-rate" => {
                self.consent_rate = value.trim().parse().with_context(|| format!("--consent-rate: `{value}`"))?
            }
            _ => bail!("unknown option --{key}"),
        }
        Ok(())
    }

    fn from_env_and_args() -> Result<Settings> {
        let mut s = Settings {
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            conns_consent: 64,
            conns_events: 256,
            only: None,
            consent_rate: 15_000.0,
        };
        for key in ["duration", "warmup", "conns-consent", "conns-events", "only", "consent-rate"] {
            let var = format!("APP_LOAD_{}", key.replace('-', "_").to_uppercase());
            if let Ok(v) = std::env::var(&var) {
                s.set(key, &v).with_context(|| format!("environment variable {var}"))?;
            }
        }
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            // `cargo bench` passes `--bench` (and a filter when given one) to harness-less benches.
            if arg == "--bench" || !arg.starts_with("--") {
                continue;
            }
            let opt = &arg[2..];
            if opt == "help" {
                println!(
                    "app_load [--duration SECS] [--warmup SECS] [--conns-consent N] [--conns-events N] \
                     [--only consent|consent-paced|events] [--consent-rate REQ_PER_S]"
                );
                std::process::exit(0);
            }
            match opt.split_once('=') {
                Some((k, v)) => s.set(k, v)?,
                None => {
                    let v = args.next().ok_or_else(|| anyhow!("--{opt} needs a value"))?;
                    s.set(opt, &v)?;
                }
            }
        }
        Ok(s)
    }
}

/// Create the `bench` contract and get it accepted. Best effort: the plugin may be mid-rewrite.
async fn setup(sb: &cgs_e2e::Sandbox, isv: &cgs_client::Member) {
    let path = format!("/app/contracts/{CONTRACT}");
    let body = json!({"data": {"purpose": "load test", "created_by": "app_load bench"}});
    match isv.authed("PUT", &path, Some(body.to_string().into_bytes())).await {
        Ok(r) if (200..300).contains(&r.status) => eprintln!("setup: PUT {path} → {}", r.status),
        Ok(r) => eprintln!("WARNING setup: PUT {path} → {}: {}", r.status, String::from_utf8_lossy(&r.body)),
        Err(e) => eprintln!("WARNING setup: PUT {path} failed: {e}"),
    }
    let version = match isv.authed("GET", &path, None).await.map(|r| r.ok_json()) {
        Ok(Ok(v)) => v["version"].as_str().map(str::to_string),
        Ok(Err(e)) | Err(e) => {
            eprintln!("WARNING setup: GET {path} failed: {e}");
            None
        }
    };
    let proposal = match &version {
        None => {
            eprintln!("WARNING setup: no contract version; not proposing it");
            None
        }
        Some(version) => {
            let actions =
                json!([{"name": "contracts.set_contract", "args": {"contract_id": CONTRACT, "version": version}}]);
            match isv.propose(actions).await.map(|r| r.ok_json()) {
                Ok(Ok(p)) => {
                    let id = p["proposal_id"].as_str().map(str::to_string);
                    let state = p["state"].as_str().unwrap_or("?").to_string();
                    eprintln!("setup: proposal {} for version {version}: {state}", id.as_deref().unwrap_or("?"));
                    id.map(|id| (id, state))
                }
                Ok(Err(e)) | Err(e) => {
                    eprintln!("WARNING setup: proposing contracts.set_contract failed: {e}");
                    None
                }
            }
        }
    };
    if let Some((id, mut state)) = proposal {
        for name in MEMBERS {
            if state != "Open" {
                break;
            }
            match sb.member(name).vote(&id, true).await.map(|r| r.ok_json()) {
                Ok(Ok(v)) => {
                    state = v["state"].as_str().unwrap_or("?").to_string();
                    eprintln!("setup: {name} approved → {state}");
                }
                Ok(Err(e)) | Err(e) => eprintln!("WARNING setup: {name}'s ballot failed: {e}"),
            }
        }
        if state != "Accepted" {
            eprintln!("WARNING setup: proposal {id} ended {state}, not Accepted");
        }
    }
    match isv.authed("GET", &format!("{path}/consent/execution"), None).await {
        Ok(r) => eprintln!("setup: consent/execution → {} {}", r.status, String::from_utf8_lossy(&r.body)),
        Err(e) => eprintln!("WARNING setup: reading consent/execution failed: {e}"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let settings = Settings::from_env_and_args()?;
    eprintln!("app_load: {settings:?}");
    eprintln!("starting the sandbox (builds cgs-host and the plugins first; may take minutes)...");
    let sb = cgs_e2e::Sandbox::start(&[]).await?;
    eprintln!("sandbox at {}", sb.url);
    let isv = sb.member("isv");
    let token = isv.token().await.context("member login")?;
    setup(&sb, &isv).await;

    let target = [Target::new(&sb.url, Some(&std::fs::read(&sb.ca)?))?];
    let target = &target[..];
    let window = Window { warmup: settings.warmup, duration: settings.duration };
    let authorization = Some(format!("Bearer {token}"));
    let want = |name: &str| settings.only.as_deref().is_none_or(|o| o == name);
    let mut outcomes = Vec::new();
    if want("consent") {
        let work = Workload {
            name: "consent".into(),
            method: hyper::Method::GET,
            path: format!("/app/contracts/{CONTRACT}/consent/execution"),
            body: None,
            authorization: authorization.clone(),
        };
        outcomes.push(run_scenario(target, work, settings.conns_consent, &window, None).await);
    }
    if want("consent-paced") && settings.consent_rate > 0.0 {
        let work = Workload {
            name: "consent-paced".into(),
            method: hyper::Method::GET,
            path: format!("/app/contracts/{CONTRACT}/consent/execution"),
            body: None,
            authorization: authorization.clone(),
        };
        outcomes.push(run_scenario(target, work, settings.conns_consent, &window, Some(settings.consent_rate)).await);
    }
    if want("events") {
        let body = json!({"step": "bench", "rows": 42, "ok": true}).to_string();
        let work = Workload {
            name: "events".into(),
            method: hyper::Method::POST,
            path: format!("/app/contracts/{CONTRACT}/events?scope=bench"),
            body: Some(Bytes::from(body)),
            authorization,
        };
        outcomes.push(run_scenario(target, work, settings.conns_events, &window, None).await);
    }
    report(&mut outcomes);
    drop(sb);
    Ok(())
}
