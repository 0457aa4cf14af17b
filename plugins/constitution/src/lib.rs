//! The default constitution: who decides, and the core governance actions.
//!
//! **Voting.** Voters are the *active* members without the `operator` role. A proposal needs, for
//! each of its actions, the approvals its threshold requires — unanimity of voters unless a
//! `set_action_threshold` proposal set a number (e.g. 2 of 3) — and the strictest action decides.
//! It is rejected as soon as the threshold can no longer be reached, and at the first reject if
//! it touches a contract, a clean-room policy or a deployment spec. Proposals made only of
//! `consent.disable_logging` / `consent.disable_telemetry` need no votes: any member may
//! withdraw that consent.
//!
//! **Core actions** write the governance tables (`gov.*`), which only the constitution may write
//! and only while applying an accepted proposal. The host adds checks it alone can make (a
//! plugin blob is a component of the right world, name and version) before these run.

use cgs_plugin::{
    Action, ActionInfo, Ballot, Constitution, Error, Member, MemberStatus, Outcome, Proposal, Resolution, Result,
    Table, Vote,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The core actions and their arguments.
const CORE_ACTIONS: &[(&str, &str)] = &[
    (
        "set_member",
        "add a member: {\"public_key\": PEM Ed25519, \"member_data\": {\"name\",\"tenant\",\"roles\":[..]}}",
    ),
    ("remove_member", "remove a member: {\"member_id\"}"),
    ("set_member_data", "replace a member's data: {\"member_id\", \"member_data\": {..}}"),
    (
        "set_plugin",
        "install or upgrade an app plugin: {\"name\", \"version\", \"blake3\"} (uploaded with PUT /gov/blobs)",
    ),
    ("remove_plugin", "remove an app plugin: {\"name\"}"),
    ("set_constitution", "replace the constitution: {\"name\", \"version\", \"blake3\"}"),
    ("set_action_threshold", "approvals an action needs: {\"action\", \"required\": n} (0 = unanimity again)"),
    (
        "set_jwt_issuer",
        "trust a JWT issuer: {\"issuer\", \"audience\", \"jwks\": {keys:[..]}} or {\"issuer\", \"audience\", \"jwks_url\"}",
    ),
    ("remove_jwt_issuer", "stop trusting a JWT issuer: {\"issuer\"}"),
    ("set_user_identity", "register a user of a trusted issuer: {\"issuer\", \"subject\", \"data\"?}"),
    ("remove_user_identity", "unregister a user: {\"issuer\", \"subject\"}"),
    ("add_node_measurement", "allow a host launch measurement: {\"measurement\": 96 hex}"),
    ("remove_node_measurement", "disallow a host launch measurement: {\"measurement\"}"),
    ("add_node_host_data", "allow a host_data value: {\"host_data\": 64 hex}"),
    ("remove_node_host_data", "disallow a host_data value: {\"host_data\"}"),
    (
        "set_node_min_tcb",
        "minimum TCB per generation: {\"generation\": Milan|Genoa|Turin, \"tcb\": {\"bootloader\",\"tee\",\"snp\",\"microcode\"}}",
    ),
    ("transition_service_to_open", "open the service: {}"),
    (
        "transition_node_to_trusted",
        "trust a node that joined (it becomes a learner, then a voter once caught up): {\"node_id\": n}",
    ),
    (
        "remove_node",
        "retire a node: it leaves the quorum, is never accepted again, and the ledger is re-keyed: {\"node_id\": n}",
    ),
    (
        "trigger_ledger_rekey",
        "re-key the ledger: a new secret, sealed to every trusted node, for everything written from then on: {}",
    ),
    ("set_recovery_threshold", "recovery shares needed: {\"threshold\": n ≥ 1}"),
];

/// Actions a single reject rejects.
const VETO_ACTIONS: &[&str] = &[
    "contracts.set_contract",
    "contracts.set_deployment_spec",
    "contracts.set_cleanroom_policy",
    "contracts.revoke_contract",
];

/// Actions that need no votes.
const NO_VOTE_ACTIONS: &[&str] = &["consent.disable_logging", "consent.disable_telemetry"];

/// A member record in `gov.members` (the host reads the same type).
pub use cgs_core::gov::MemberRecord;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PluginRef {
    name: String,
    version: String,
    blake3: String,
}

static MEMBERS: Table<str, MemberRecord> = Table::new("gov.members");
static PLUGINS: Table<str, Value> = Table::new("gov.plugins");
static CONSTITUTION: Table<str, Value> = Table::new("gov.constitution");
static THRESHOLDS: Table<str, u32> = Table::new("gov.thresholds");
static JWT_ISSUERS: Table<str, Value> = Table::new("gov.jwt_issuers");
static USERS: Table<str, Value> = Table::new("gov.user_identities");
static MEASUREMENTS: Table<str, Value> = Table::new("gov.node_measurements");
static HOST_DATA: Table<str, Value> = Table::new("gov.node_host_data");
static MIN_TCB: Table<str, Value> = Table::new("gov.node_min_tcb");
static SERVICE: Table<str, Value> = Table::new("gov.service");
static RECOVERY: Table<str, Value> = Table::new("gov.recovery");
static NODES: Table<str, Value> = Table::new("gov.nodes");

fn bad(code: &str, message: impl Into<String>) -> Error {
    Error::bad_request(code, message)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The member id and the base64 of the raw key of an Ed25519 SPKI PEM
/// (`-----BEGIN PUBLIC KEY-----`), parsed with cgs-core as the host parses genesis members' keys.
pub fn member_from_pem(pem: &str) -> Result<(String, String)> {
    use base64::Engine as _;
    if !pem.contains("-----BEGIN PUBLIC KEY-----") {
        return Err(bad(
            "InvalidPublicKey",
            "`public_key` must be a PEM Ed25519 public key (-----BEGIN PUBLIC KEY-----)",
        ));
    }
    let key = cgs_core::gov::verifying_key_from_pem(pem)
        .map_err(|e| bad("InvalidPublicKey", format!("`public_key` is {e}")))?;
    Ok((cgs_core::gov::member_id(&key), base64::engine::general_purpose::STANDARD.encode(key.as_bytes())))
}

fn obj(v: &Value, what: &str) -> Result<()> {
    if v.is_object() { Ok(()) } else { Err(bad("InvalidActionArgs", format!("`{what}` must be a JSON object"))) }
}

fn str_arg<'a>(args: &'a Value, name: &str) -> Result<&'a str> {
    args.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("InvalidActionArgs", format!("`{name}` (a non-empty string) is required")))
}

fn parse(action: &Action) -> Result<Value> {
    let v: Value = action.args()?;
    obj(&v, "args")?;
    Ok(v)
}

fn check_plugin_ref(args: &Value) -> Result<PluginRef> {
    let r: PluginRef = serde_json::from_value(args.clone())
        .map_err(|e| bad("InvalidActionArgs", format!("expected {{\"name\",\"version\",\"blake3\"}}: {e}")))?;
    if !is_hex(&r.blake3, 64) {
        return Err(bad("InvalidActionArgs", "`blake3` must be 64 lowercase hex digits"));
    }
    Ok(r)
}

/// The key of a user identity: hex of the blinded `issuer|subject`, so that the ledger files do
/// not name users (the record's value is encrypted; the host looks users up the same way).
fn user_key(issuer: &str, subject: &str) -> String {
    let blinded = cgs_plugin::blind(format!("{issuer}|{subject}").as_bytes());
    blinded.iter().map(|b| format!("{b:02x}")).collect()
}

/// Validate (and with `apply`, carry out) a core action.
fn run(action: &Action, apply: bool) -> Result<()> {
    let args = parse(action)?;
    match action.name.as_str() {
        "set_member" => {
            let (id, public_key) = member_from_pem(str_arg(&args, "public_key")?)?;
            let data = args.get("member_data").cloned().unwrap_or(Value::Object(Default::default()));
            obj(&data, "member_data")?;
            if MEMBERS.contains(&id)? {
                return Err(Error::conflict("MemberExists", format!("member {id} already exists")));
            }
            if apply {
                MEMBERS.put(&id, &MemberRecord { public_key, status: "Accepted".into(), data })?;
            }
        }
        "remove_member" | "set_member_data" => {
            let id = str_arg(&args, "member_id")?;
            let mut m =
                MEMBERS.get(id)?.ok_or_else(|| Error::not_found("MemberNotFound", format!("no member {id}")))?;
            if action.name == "remove_member" {
                let active =
                    MEMBERS.all(100_000)?.into_iter().filter(|(k, v)| k != id && v.value.status == "Active").count();
                if active == 0 {
                    return Err(Error::not_allowed_in_state(
                        "LastActiveMember",
                        "the last active member cannot be removed",
                    ));
                }
                if apply {
                    MEMBERS.delete(id)?;
                }
            } else {
                let data = args.get("member_data").cloned().unwrap_or(Value::Null);
                obj(&data, "member_data")?;
                if apply {
                    m.data = data;
                    MEMBERS.put(id, &m)?;
                }
            }
        }
        "set_plugin" => {
            let r = check_plugin_ref(&args)?;
            if apply {
                PLUGINS.put(
                    &r.name,
                    &serde_json::json!({"version": r.version, "blake3": r.blake3, "world": "app-plugin"}),
                )?;
            }
        }
        "remove_plugin" => {
            let name = str_arg(&args, "name")?;
            if !PLUGINS.contains(name)? {
                return Err(Error::not_found("PluginNotFound", format!("no plugin `{name}` is installed")));
            }
            if apply {
                PLUGINS.delete(name)?;
            }
        }
        "set_constitution" => {
            let r = check_plugin_ref(&args)?;
            if apply {
                CONSTITUTION
                    .put("current", &serde_json::json!({"name": r.name, "version": r.version, "blake3": r.blake3}))?;
            }
        }
        "set_action_threshold" => {
            let name = str_arg(&args, "action")?;
            let required = args
                .get("required")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("InvalidActionArgs", "`required` must be a number"))?;
            let required = u32::try_from(required).map_err(|_| bad("InvalidActionArgs", "`required` is too large"))?;
            if apply {
                if required == 0 {
                    THRESHOLDS.delete(name)?;
                } else {
                    THRESHOLDS.put(name, &required)?;
                }
            }
        }
        "set_jwt_issuer" => {
            let issuer = str_arg(&args, "issuer")?;
            // Without an audience, any token the issuer minted for any other application would
            // be accepted here.
            if !args.get("audience").and_then(Value::as_str).is_some_and(|a| !a.is_empty() && a.len() <= 512) {
                return Err(bad(
                    "InvalidActionArgs",
                    "set_jwt_issuer needs `audience`: the `aud` this service's tokens carry (1-512 chars); \
                     without it a token minted for any other application of the issuer would be accepted",
                ));
            }
            match (args.get("jwks"), args.get("jwks_url")) {
                (Some(j), None) if j.get("keys").is_some_and(Value::is_array) => {}
                (None, Some(u)) if u.as_str().is_some_and(|u| u.starts_with("https://")) => {}
                _ => {
                    return Err(bad(
                        "InvalidActionArgs",
                        "give either `jwks` ({\"keys\":[..]}) or `jwks_url` (https://...)",
                    ));
                }
            }
            if apply {
                JWT_ISSUERS.put(issuer, &args)?;
            }
        }
        "remove_jwt_issuer" => {
            let issuer = str_arg(&args, "issuer")?;
            if !JWT_ISSUERS.contains(issuer)? {
                return Err(Error::not_found("IssuerNotFound", format!("issuer `{issuer}` is not trusted")));
            }
            if apply {
                JWT_ISSUERS.delete(issuer)?;
            }
        }
        "set_user_identity" => {
            let (issuer, subject) = (str_arg(&args, "issuer")?, str_arg(&args, "subject")?);
            // An issuer trusted by an earlier action of the same proposal counts (when applying,
            // that action has already written it).
            let same_proposal = cgs_plugin::context::proposal_actions().iter().any(|a| {
                a.name == "set_jwt_issuer"
                    && serde_json::from_str::<Value>(&a.args).is_ok_and(|v| v["issuer"].as_str() == Some(issuer))
            });
            if !JWT_ISSUERS.contains(issuer)? && (!same_proposal || apply) {
                return Err(Error::not_found(
                    "IssuerNotFound",
                    format!("issuer `{issuer}` is not trusted; propose set_jwt_issuer first"),
                ));
            }
            if apply {
                USERS.put(&user_key(issuer, subject), &args)?;
            }
        }
        "remove_user_identity" => {
            let key = user_key(str_arg(&args, "issuer")?, str_arg(&args, "subject")?);
            if !USERS.contains(&key)? {
                return Err(Error::not_found("UserNotFound", "no such user identity"));
            }
            if apply {
                USERS.delete(&key)?;
            }
        }
        "add_node_measurement" | "remove_node_measurement" => {
            let m = str_arg(&args, "measurement")?;
            if !is_hex(m, 96) {
                return Err(bad("InvalidActionArgs", "`measurement` must be 96 lowercase hex digits (48 bytes)"));
            }
            if apply {
                if action.name.starts_with("add") {
                    MEASUREMENTS.put(m, &Value::Bool(true))?
                } else {
                    MEASUREMENTS.delete(m).map(|_| ())?
                }
            }
        }
        "add_node_host_data" | "remove_node_host_data" => {
            let h = str_arg(&args, "host_data")?;
            if !is_hex(h, 64) {
                return Err(bad("InvalidActionArgs", "`host_data` must be 64 lowercase hex digits (32 bytes)"));
            }
            if apply {
                if action.name.starts_with("add") {
                    HOST_DATA.put(h, &Value::Bool(true))?
                } else {
                    HOST_DATA.delete(h).map(|_| ())?
                }
            }
        }
        "set_node_min_tcb" => {
            let generation = str_arg(&args, "generation")?;
            if !["Milan", "Genoa", "Turin"].contains(&generation) {
                return Err(bad("InvalidActionArgs", "`generation` must be Milan, Genoa or Turin"));
            }
            let tcb = args.get("tcb").ok_or_else(|| bad("InvalidActionArgs", "`tcb` is required"))?;
            for f in ["bootloader", "tee", "snp", "microcode"] {
                if tcb.get(f).and_then(Value::as_u64).is_none_or(|v| v > 255) {
                    return Err(bad("InvalidActionArgs", format!("`tcb.{f}` must be a number 0-255")));
                }
            }
            // Turin adds the FMC's SPL; earlier generations have none.
            match tcb.get("fmc") {
                None => {}
                Some(v) if generation == "Turin" && v.as_u64().is_some_and(|v| v <= 255) => {}
                Some(_) if generation == "Turin" => {
                    return Err(bad("InvalidActionArgs", "`tcb.fmc` must be a number 0-255"));
                }
                Some(_) => return Err(bad("InvalidActionArgs", "`tcb.fmc` exists on Turin only")),
            }
            if apply {
                MIN_TCB.put(generation, tcb)?;
            }
        }
        "transition_node_to_trusted" | "remove_node" => {
            // The host checks that the node exists and may make this change.
            let id = args
                .get("node_id")
                .and_then(Value::as_u64)
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad("InvalidActionArgs", "`node_id` (a node id ≥ 1) is required"))?;
            if apply {
                let status = if action.name == "remove_node" { "Retired" } else { "Trusted" };
                NODES.put(
                    &id.to_string(),
                    &serde_json::json!({"status": status, "at_ms": cgs_plugin::context::tx_time_ms()}),
                )?;
            }
        }
        "transition_service_to_open" => {
            let status =
                SERVICE.get("status")?.and_then(|s| s.get("status").and_then(Value::as_str).map(str::to_string));
            if status.as_deref() == Some("Open") {
                return Err(Error::not_allowed_in_state("ServiceAlreadyOpen", "the service is already open"));
            }
            if apply {
                SERVICE.put(
                    "status",
                    &serde_json::json!({"status": "Open", "opened_at_ms": cgs_plugin::context::tx_time_ms()}),
                )?;
            }
        }
        "trigger_ledger_rekey" => {
            // The host makes the new secret and seals it to every trusted node, in this
            // transaction; there is nothing to choose.
            if !(args.is_null() || args.as_object().is_some_and(|o| o.is_empty())) {
                return Err(bad("InvalidActionArgs", "`trigger_ledger_rekey` takes no arguments: {}"));
            }
        }
        "set_recovery_threshold" => {
            let t = args.get("threshold").and_then(Value::as_u64).filter(|t| (1..=255).contains(t));
            let t = t.ok_or_else(|| bad("InvalidActionArgs", "`threshold` must be 1-255"))?;
            if apply {
                RECOVERY.put("threshold", &serde_json::json!({"threshold": t}))?;
            }
        }
        other => return Err(Error::unknown_action(other)),
    }
    Ok(())
}

/// Whether a member votes under this constitution.
pub fn is_voter(m: &Member) -> bool {
    m.status == MemberStatus::Active && !m.roles.iter().any(|r| r == "operator")
}

/// The decision, given each action's required approvals (`None`: unanimity).
pub fn decide(actions: &[(String, Option<u32>)], ballots: &[Ballot], members: &[Member]) -> Resolution {
    if !actions.is_empty() && actions.iter().all(|(a, _)| NO_VOTE_ACTIONS.contains(&a.as_str())) {
        return Resolution { outcome: Outcome::Accepted, reason: "withdrawing consent needs no votes".into() };
    }
    let voters: Vec<&Member> = members.iter().filter(|m| is_voter(m)).collect();
    let vote_of = |id: &str| ballots.iter().rev().find(|b| b.member_id == id).map(|b| b.vote);
    let approvals = voters.iter().filter(|m| vote_of(&m.id) == Some(Vote::Approve)).count();
    let rejects: Vec<&&Member> = voters.iter().filter(|m| vote_of(&m.id) == Some(Vote::Reject)).collect();
    if let Some(m) = rejects.first()
        && actions.iter().any(|(a, _)| VETO_ACTIONS.contains(&a.as_str()))
    {
        return Resolution {
            outcome: Outcome::Rejected,
            reason: format!("member {} rejected a contract, policy or deployment-spec change", m.id),
        };
    }
    if voters.is_empty() {
        return Resolution { outcome: Outcome::Open, reason: "there are no active voting members".into() };
    }
    let required = actions
        .iter()
        .map(|(_, t)| t.map_or(voters.len(), |t| (t as usize).min(voters.len())))
        .max()
        .unwrap_or(voters.len());
    if approvals >= required {
        return Resolution {
            outcome: Outcome::Accepted,
            reason: format!("{approvals} of {} voting members approved; {required} required", voters.len()),
        };
    }
    if voters.len() - rejects.len() < required {
        return Resolution {
            outcome: Outcome::Rejected,
            reason: format!(
                "{} of {} voting members rejected; {required} approvals can no longer be reached",
                rejects.len(),
                voters.len()
            ),
        };
    }
    Resolution {
        outcome: Outcome::Open,
        reason: format!("{approvals} of {} voting members approved; {required} required", voters.len()),
    }
}

struct DefaultConstitution;

impl Constitution for DefaultConstitution {
    fn resolve(proposal: &Proposal, ballots: &[Ballot], members: &[Member]) -> Resolution {
        let actions: Vec<(String, Option<u32>)> =
            proposal.actions.iter().map(|a| (a.name.clone(), THRESHOLDS.get(&a.name).ok().flatten())).collect();
        decide(&actions, ballots, members)
    }

    fn actions() -> Vec<ActionInfo> {
        CORE_ACTIONS.iter().map(|(n, d)| ActionInfo::new(*n, *d)).collect()
    }

    fn validate_action(action: &Action) -> Result<()> {
        run(action, false)
    }

    fn apply_action(action: &Action) -> Result<()> {
        run(action, true)
    }
}

cgs_plugin_gov::constitution_plugin!(DefaultConstitution, name = "constitution");

#[cfg(test)]
mod tests {
    use super::*;
    use cgs_plugin::testing;

    fn member(id: &str, active: bool, operator: bool) -> Member {
        Member {
            id: id.into(),
            status: if active { MemberStatus::Active } else { MemberStatus::Accepted },
            roles: if operator { vec!["operator".into()] } else { vec![] },
            data: "{}".into(),
        }
    }

    fn ballot(id: &str, vote: Vote) -> Ballot {
        Ballot { member_id: id.into(), vote }
    }

    fn acts(names: &[&str]) -> Vec<(String, Option<u32>)> {
        names.iter().map(|n| (n.to_string(), None)).collect()
    }

    #[test]
    fn unanimity_of_active_non_operators() {
        let members = vec![
            member("a", true, false),
            member("b", true, false),
            member("c", false, false),
            member("op", true, true),
        ];
        let a = acts(&["set_member"]);
        assert_eq!(decide(&a, &[], &members).outcome, Outcome::Open);
        assert_eq!(decide(&a, &[ballot("a", Vote::Approve)], &members).outcome, Outcome::Open);
        let r = decide(&a, &[ballot("a", Vote::Approve), ballot("b", Vote::Approve)], &members);
        assert_eq!(r.outcome, Outcome::Accepted, "inactive and operator members do not count");
        // Under unanimity one reject makes acceptance impossible.
        assert_eq!(decide(&a, &[ballot("b", Vote::Reject)], &members).outcome, Outcome::Rejected);
        assert_eq!(
            decide(&a, &[ballot("op", Vote::Reject), ballot("c", Vote::Reject)], &members).outcome,
            Outcome::Open
        );
        assert_eq!(decide(&a, &[], &[]).outcome, Outcome::Open);
    }

    #[test]
    fn thresholds_vetoes_and_free_actions() {
        let members: Vec<Member> = ["a", "b", "c"].iter().map(|m| member(m, true, false)).collect();
        // 2 of 3.
        let two = vec![("set_member".to_string(), Some(2))];
        assert_eq!(decide(&two, &[ballot("a", Vote::Approve)], &members).outcome, Outcome::Open);
        assert_eq!(
            decide(&two, &[ballot("a", Vote::Approve), ballot("b", Vote::Approve)], &members).outcome,
            Outcome::Accepted
        );
        assert_eq!(
            decide(&two, &[ballot("a", Vote::Reject)], &members).outcome,
            Outcome::Open,
            "2 of 3 is still reachable"
        );
        assert_eq!(
            decide(&two, &[ballot("a", Vote::Reject), ballot("b", Vote::Reject)], &members).outcome,
            Outcome::Rejected
        );
        // The strictest action decides.
        let mixed = vec![("set_member".to_string(), Some(2)), ("set_plugin".to_string(), None)];
        assert_eq!(
            decide(&mixed, &[ballot("a", Vote::Approve), ballot("b", Vote::Approve)], &members).outcome,
            Outcome::Open
        );
        // Vetoes.
        let c = acts(&["contracts.set_contract"]);
        let veto = decide(&c, &[ballot("a", Vote::Approve), ballot("c", Vote::Reject)], &members);
        assert_eq!(veto.outcome, Outcome::Rejected);
        assert!(veto.reason.contains('c'));
        let c2 = vec![("contracts.set_contract".to_string(), Some(1))];
        assert_eq!(
            decide(&c2, &[ballot("c", Vote::Reject)], &members).outcome,
            Outcome::Rejected,
            "veto even below the threshold"
        );
        // Withdrawing consent needs no votes; enabling does.
        assert_eq!(decide(&acts(&["consent.disable_logging"]), &[], &members).outcome, Outcome::Accepted);
        assert_eq!(
            decide(&acts(&["consent.disable_logging", "consent.disable_telemetry"]), &[], &members).outcome,
            Outcome::Accepted
        );
        assert_eq!(decide(&acts(&["consent.enable_logging"]), &[], &members).outcome, Outcome::Open);
        assert_eq!(decide(&acts(&["consent.disable_logging", "set_member"]), &[], &members).outcome, Outcome::Open);
    }

    const PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";

    fn action(name: &str, args: Value) -> Action {
        Action { name: name.into(), args: args.to_string() }
    }

    #[test]
    fn core_actions_validate_and_apply() {
        testing::reset();
        testing::set_gov_writable(true);
        let set = action("set_member", serde_json::json!({"public_key": PEM, "member_data": {"name": "dp"}}));
        DefaultConstitution::validate_action(&set).unwrap();
        DefaultConstitution::apply_action(&set).unwrap();
        let (id, _) = member_from_pem(PEM).unwrap();
        assert_eq!(MEMBERS.get(&id).unwrap().unwrap().status, "Accepted");
        assert_eq!(DefaultConstitution::validate_action(&set).unwrap_err().code, "MemberExists");
        // Bad inputs are 400s naming what is wrong.
        for (name, args, code) in [
            ("set_member", serde_json::json!({"public_key": "x"}), "InvalidPublicKey"),
            (
                "set_member",
                serde_json::json!({"public_key": "-----BEGIN PUBLIC KEY-----\nbm9wZQ==\n-----END PUBLIC KEY-----\n"}),
                "InvalidPublicKey",
            ),
            ("set_member", serde_json::json!({}), "InvalidActionArgs"),
            ("set_plugin", serde_json::json!({"name": "p", "version": "1", "blake3": "xyz"}), "InvalidActionArgs"),
            ("add_node_measurement", serde_json::json!({"measurement": "ab"}), "InvalidActionArgs"),
            ("set_node_min_tcb", serde_json::json!({"generation": "Zen", "tcb": {}}), "InvalidActionArgs"),
            ("set_recovery_threshold", serde_json::json!({"threshold": 0}), "InvalidActionArgs"),
            ("set_user_identity", serde_json::json!({"issuer": "https://i", "subject": "s"}), "IssuerNotFound"),
            ("nope", serde_json::json!({}), "UnknownAction"),
        ] {
            assert_eq!(DefaultConstitution::validate_action(&action(name, args)).unwrap_err().code, code, "{name}");
        }
        assert_eq!(
            DefaultConstitution::validate_action(&Action { name: "set_member".into(), args: "not json".into() })
                .unwrap_err()
                .code,
            "InvalidActionArgs"
        );
        // The last active member cannot be removed.
        let mut m = MEMBERS.get(&id).unwrap().unwrap();
        m.status = "Active".into();
        MEMBERS.put(&id, &m).unwrap();
        assert_eq!(
            DefaultConstitution::validate_action(&action("remove_member", serde_json::json!({"member_id": id})))
                .unwrap_err()
                .code,
            "LastActiveMember"
        );
        // Opening twice is refused.
        let open = action("transition_service_to_open", serde_json::json!({}));
        DefaultConstitution::apply_action(&open).unwrap();
        assert_eq!(DefaultConstitution::validate_action(&open).unwrap_err().code, "ServiceAlreadyOpen");
    }
}
