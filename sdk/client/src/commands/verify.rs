//! `cgs verify`: check what a service is and runs before trusting it.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::common::{block_on, client, ok_json, show};
use super::plugin::{build_into, scratch_dir, workspace};
use super::{CliError, Result};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub(crate) enum VerifyCommand {
    /// Check a service before trusting it: its evidence (measurement, host_data), that the
    /// evidence is bound to the node key, that the node key signs the plugin set, that the TLS
    /// certificate is the one in the attestation, and that every active plugin matches a local
    /// reproducible rebuild. Prints a verdict per check; exits non-zero if any fails.
    Service {
        /// Expected launch measurement (96 hex digits).
        #[arg(long)]
        measurement: String,
        /// Expected host_data (64 hex digits).
        #[arg(long)]
        host_data: String,
        /// Accept virtual (insecure, development) evidence.
        #[arg(long)]
        allow_virtual: bool,
        /// The source checkout to rebuild the plugins from (default: this one).
        #[arg(long)]
        workspace: Option<PathBuf>,
    },
}

pub(crate) fn run(cli: &Cli, command: &VerifyCommand) -> Result {
    match command {
        VerifyCommand::Service { measurement, host_data, allow_virtual, workspace: ws } => {
            service(cli, measurement, host_data, *allow_virtual, ws.as_deref())
        }
    }
}

/// `cgs verify service`: every check with its verdict.
fn service(cli: &Cli, measurement: &str, host_data: &str, allow_virtual: bool, ws: Option<&Path>) -> Result {
    let c = client(cli)?;
    let doc = ok_json(block_on(c.get("/node/attestation"))?)?;
    let mut checks: Vec<(String, bool, String)> = Vec::new();
    let mut check = |name: &str, ok: bool, detail: String| checks.push((name.to_string(), ok, detail));

    // 1. Evidence: verified by cgs-attestation (SEV-SNP: AMD chain from pinned roots, policy).
    let ev = &doc["evidence"];
    let kind = ev["kind"].as_str().unwrap_or("?").to_string();
    let policy = cgs_attestation::VerifyPolicy { allow_virtual, ..Default::default() };
    let verified = cgs_attestation::Evidence::from_json(ev.to_string().as_bytes())
        .map_err(|e| e.to_string())
        .and_then(|e| cgs_attestation::verify(&e, &policy, std::time::SystemTime::now()).map_err(|e| e.to_string()));
    let claims = match &verified {
        Ok(v) if v.insecure() => {
            check("evidence", true, "virtual evidence: INSECURE, accepted because of --allow-virtual".into());
            Some(v.claims.clone())
        }
        Ok(v) => {
            check("evidence", true, "SEV-SNP report verified from the pinned AMD roots".into());
            Some(v.claims.clone())
        }
        Err(e) if kind == "virtual" && !allow_virtual => {
            check("evidence", false, format!("{e}; pass --allow-virtual to accept virtual (INSECURE) evidence"));
            cgs_attestation::Evidence::from_json(ev.to_string().as_bytes())
                .ok()
                .and_then(|e| e.check_shape().ok().flatten())
        }
        Err(e) => {
            check("evidence", false, e.clone());
            None
        }
    };
    let got_m = claims.as_ref().map(|c| hex::encode(c.measurement)).unwrap_or_default();
    let want_m = measurement.to_ascii_lowercase();
    check(
        "measurement",
        got_m == want_m,
        if got_m == want_m { got_m.clone() } else { format!("the service reports {got_m}, expected {want_m}") },
    );
    let got_h = claims.as_ref().map(|c| hex::encode(c.host_data)).unwrap_or_default();
    let want_h = host_data.to_ascii_lowercase();
    check(
        "host_data",
        got_h == want_h,
        if got_h == want_h { got_h.clone() } else { format!("the service reports {got_h}, expected {want_h}") },
    );

    // 2. The node key signs the document, and the evidence is bound to that key.
    match cgs_core::node_attestation::verify_signature(&doc) {
        Ok(key) => {
            check("plugin set signature", true, "signed by the node key".into());
            let want = hex::encode(cgs_core::node_attestation::report_data_for(key.as_bytes()));
            let got = claims.as_ref().map(|c| hex::encode(c.report_data)).unwrap_or_default();
            check(
                "node key binding",
                got == want,
                if got == want {
                    "report_data = SHA-256(node public key)".into()
                } else {
                    "report_data does not bind the node key".into()
                },
            );
        }
        Err(e) => {
            check("plugin set signature", false, e);
            check("node key binding", false, "no valid node key".into());
        }
    }

    // 3. TLS: the certificate pinned for this connection is the one the node attests.
    let pinned = cli.ca.as_ref().map(std::fs::read_to_string).transpose()?;
    let norm = |s: &str| s.split_whitespace().collect::<String>();
    let tls_ok = pinned.as_deref().map(norm) == doc["service_cert"].as_str().map(norm);
    check(
        "TLS certificate",
        tls_ok,
        if tls_ok {
            "the pinned service certificate is the attested one".into()
        } else {
            "the pinned certificate differs from the attested one".into()
        },
    );

    // 4. Plugins: rebuild every active plugin and the constitution locally.
    let mut attested: Vec<(String, String)> = Vec::new();
    for p in doc["plugins"].as_array().into_iter().flatten().chain(std::iter::once(&doc["constitution"])) {
        if let (Some(n), Some(h)) = (p["name"].as_str(), p["blake3"].as_str()) {
            attested.push((n.to_string(), h.to_string()));
        }
    }
    let ws = workspace(ws)?;
    let out = scratch_dir(&ws)?;
    let built = build_into(ws, attested.iter().map(|(n, _)| n.clone()).collect(), &out, true);
    let _ = std::fs::remove_dir_all(&out);
    match built {
        Ok(built) => {
            for (name, hash) in &attested {
                let local =
                    built.iter().find(|b| b.measurement.info.name == *name).map(|b| b.measurement.blake3.to_hex());
                match local {
                    Some(l) if l == *hash => check(&format!("plugin {name}"), true, format!("MATCH {hash}")),
                    Some(l) => check(
                        &format!("plugin {name}"),
                        false,
                        format!("MISMATCH: the service runs {hash}, the local rebuild is {l}"),
                    ),
                    None => check(&format!("plugin {name}"), false, "not in this checkout".into()),
                }
            }
        }
        Err(e) => check("plugins", false, format!("could not rebuild the plugins: {e}")),
    }

    let failed = checks.iter().filter(|(_, ok, _)| !ok).count();
    let v = serde_json::json!({
        "ok": failed == 0,
        "insecure": kind == "virtual",
        "checks": checks.iter().map(|(n, ok, d)| serde_json::json!({"check": n, "ok": ok, "detail": d})).collect::<Vec<_>>(),
    });
    show(cli, &v, |_| {
        let mut s: Vec<String> =
            checks.iter().map(|(n, ok, d)| format!("{} {n}: {d}", if *ok { "PASS" } else { "FAIL" })).collect();
        s.push(if failed == 0 {
            format!(
                "verdict: the service is what you expect{}",
                if kind == "virtual" { " (INSECURE: virtual evidence)" } else { "" }
            )
        } else {
            format!("verdict: {failed} check(s) failed")
        });
        s.join("\n")
    });
    if failed == 0 { Ok(()) } else { Err(CliError::ChecksFailed(failed)) }
}
