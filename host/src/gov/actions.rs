//! Actions and resolutions: the plugin that owns an action, the host's checks of plugin blobs,
//! validating and applying actions, and asking the constitution to resolve a proposal.

use std::sync::Arc;

use cgs_core::Blake3Hash;
use cgs_core::gov::{ActionBody, Vote};
use cgs_core::plugin::World;

use super::{
    Changes, ErrorKind, FailedAction, Governance, Next, ProposalRecord, Resolution, dispatch, err, member_caller,
    tables,
};
use crate::error::ServiceError;
use crate::runtime::{Caller, GovAction, GovCall, GovMember, GovOutcome, GovReply, Plugin};
use crate::store::{Store as _, Transaction};
use crate::txn::StateTx;

impl Governance {
    /// The plugin that owns an action, and the host's own check of it.
    fn owner(&self, g: &mut StateTx, action: &ActionBody) -> Result<Arc<Plugin>, ServiceError> {
        let registry = self.core.runtime.registry();
        let plugin = match action.name.split_once('.') {
            Some((p, _)) => registry.get(p).cloned().ok_or_else(|| {
                err(ErrorKind::Invalid, "UnknownAction", format!("no plugin `{p}` owns `{}`", action.name))
            })?,
            None => registry
                .constitution()
                .cloned()
                .ok_or_else(|| ServiceError::unavailable("no constitution is installed"))?,
        };
        if !plugin.actions.iter().any(|a| a.name == action.name) {
            return Err(err(
                ErrorKind::Invalid,
                "UnknownAction",
                format!("`{}` is not an action of plugin `{}`", action.name, plugin.info.name),
            ));
        }
        if matches!(action.name.as_str(), "set_plugin" | "set_constitution") {
            self.check_plugin_blob(g, action)?;
        }
        if matches!(action.name.as_str(), "transition_node_to_trusted" | "remove_node") {
            self.check_node_action(g, &action.name, &action.args)?;
        }
        Ok(plugin)
    }

    /// `set_plugin` / `set_constitution`: the blob exists and is a component of the named world,
    /// name and version, that compiles and probes.
    fn check_plugin_blob(&self, g: &mut StateTx, action: &ActionBody) -> Result<(), ServiceError> {
        let get = |k: &str| action.args.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let (name, version, hash) = (get("name"), get("version"), get("blake3"));
        let h: Blake3Hash = hash
            .parse()
            .map_err(|e: cgs_core::ParseIdError| err(ErrorKind::Invalid, "InvalidActionArgs", e.to_string()))?;
        let blob =
            g.tx.get(tables::BLOBS, h.to_hex().as_bytes()).map_err(ServiceError::unavailable)?.ok_or_else(|| {
                err(ErrorKind::Invalid, "BlobNotFound", format!("no blob {hash}; upload it with PUT /gov/blobs first"))
            })?;
        let plugin = self
            .core
            .runtime
            .prepare(&blob.value)
            .map_err(|e| err(ErrorKind::Invalid, "InvalidPlugin", format!("blob {hash}: {e}")))?;
        let want_world = if action.name == "set_constitution" { World::Constitution } else { World::AppPlugin };
        if plugin.info.world != want_world {
            return Err(err(
                ErrorKind::Invalid,
                "InvalidPlugin",
                format!("blob {hash} implements `{}`, `{}` needs `{want_world}`", plugin.info.world, action.name),
            ));
        }
        if plugin.info.name != name || plugin.info.version != version {
            return Err(err(
                ErrorKind::Invalid,
                "InvalidPlugin",
                format!("blob {hash} is {} {}, not {name} {version}", plugin.info.name, plugin.info.version),
            ));
        }
        if action.name == "set_plugin" {
            self.check_plugin_change(g, action, &plugin)?;
        } else if g.get::<serde_json::Value>(tables::PLUGINS, &name)?.is_some() {
            return Err(err(
                ErrorKind::Invalid,
                "PluginNameTaken",
                format!("`{name}` is an app plugin's name; the constitution needs another"),
            ));
        }
        Ok(())
    }

    /// `set_plugin`, against the applied state of this transaction (so, when applied, after the
    /// proposals accepted since it was proposed and the earlier actions of its own proposal):
    /// the upgrade rules ([`super::plugin_rules`]) and no route clash with any other active
    /// plugin or the host. Checked when proposed and again when applied, so what governance
    /// makes active can always be loaded.
    fn check_plugin_change(&self, g: &mut StateTx, action: &ActionBody, plugin: &Plugin) -> Result<(), ServiceError> {
        use super::plugin_rules::{Active, Proposed, check};
        let refuse = |(code, message): (&str, String)| err(ErrorKind::Invalid, code, message);
        let name = plugin.info.name.as_str();
        let active: Vec<(String, serde_json::Value)> = g.scan(tables::PLUGINS)?;
        let current = active.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let constitution: Option<serde_json::Value> = g.get(tables::CONSTITUTION, "current")?;
        let blake3 = plugin.blake3.to_hex();
        let proposed = Proposed {
            name,
            version: &plugin.info.version,
            blake3: &blake3,
            rollback: action.args.get("rollback").and_then(|v| v.as_str()),
            replace_core: action.args.get("replace_core").and_then(|v| v.as_bool()) == Some(true),
        };
        let current = current.map(|v| Active {
            version: v["version"].as_str().unwrap_or_default(),
            blake3: v["blake3"].as_str().unwrap_or_default(),
            core: v["core"] == true,
        });
        check(current, &proposed, constitution.as_ref().and_then(|c| c["name"].as_str())).map_err(refuse)?;

        // Routes: the host's and every other active plugin's, as this transaction sees them.
        let registry = self.core.runtime.registry();
        let mut table = crate::runtime::RouteTable::default();
        for (other, row) in &active {
            if other == name {
                continue;
            }
            let hash: Blake3Hash =
                row["blake3"].as_str().unwrap_or_default().parse().map_err(|_| {
                    ServiceError::unavailable(format!("corrupt {} record of `{other}`", tables::PLUGINS))
                })?;
            let routes = match registry.get(other) {
                Some(p) if p.blake3 == hash => p.routes.clone(),
                // Made active in this transaction or not loaded here: read its routes from its code.
                _ => {
                    let bytes = g.tx.get(tables::BLOBS, hash.to_hex().as_bytes()).map_err(ServiceError::unavailable)?;
                    match bytes.map(|b| self.core.runtime.prepare(&b.value)) {
                        Some(Ok(p)) => p.routes,
                        // It cannot be loaded anyway (the node reports it); nothing to clash with.
                        _ => Vec::new(),
                    }
                }
            };
            table.replace(other, routes);
        }
        table.check(name, &plugin.routes).map_err(|e| {
            err(
                ErrorKind::Invalid,
                "RouteConflict",
                format!("{name} {}: {e}; two plugins cannot serve the same route", plugin.info.version),
            )
        })
    }

    /// `POST /gov/plugins/check`: everything a `set_plugin` (or `set_constitution`) of `bytes`
    /// would meet — its imports and the forbidden ones, the load-time checks (routes, actions,
    /// limits), the upgrade rules and route clashes against the active plugins — without
    /// storing anything. `problems` is empty when it would be accepted as a proposal now.
    pub fn check_plugin(
        &self,
        bytes: &[u8],
        rollback: Option<&str>,
        replace_core: bool,
    ) -> Result<serde_json::Value, ServiceError> {
        let m = cgs_core::plugin::measure(bytes).map_err(|e| err(ErrorKind::Invalid, "NotAPlugin", e.to_string()))?;
        let imports =
            cgs_core::plugin::imports(bytes).map_err(|e| err(ErrorKind::Invalid, "NotAPlugin", e.to_string()))?;
        let forbidden: Vec<&String> = imports.iter().filter(|i| !cgs_core::plugin::import_allowed(i)).collect();
        let mut problems = Vec::new();
        let (mut routes, mut actions) = (Vec::new(), Vec::new());
        match crate::executor::off_executor(|| self.core.runtime.prepare(bytes)) {
            Err(e) => problems.push(serde_json::json!({"code": "InvalidPlugin", "message": e.to_string()})),
            Ok(plugin) => {
                routes = plugin.routes.iter().map(|r| r.describe()).collect();
                actions = plugin.actions.iter().map(|a| serde_json::json!(a)).collect();
                if plugin.info.world == World::AppPlugin {
                    let mut args = serde_json::json!({
                        "name": m.info.name, "version": m.info.version, "blake3": m.blake3.to_hex(),
                    });
                    if let Some(why) = rollback {
                        args["rollback"] = why.into();
                    }
                    if replace_core {
                        args["replace_core"] = true.into();
                    }
                    let action = ActionBody { name: "set_plugin".into(), args };
                    let mut g = self.core.begin()?;
                    if let Err(e) = self.check_plugin_change(&mut g, &action, &plugin) {
                        problems.push(serde_json::json!({"code": e.code, "message": e.message}));
                    }
                }
            }
        }
        Ok(serde_json::json!({
            "name": m.info.name, "version": m.info.version, "world": m.info.world,
            "blake3": m.blake3.to_hex(), "size": bytes.len(),
            "imports": imports, "forbidden_imports": forbidden,
            "routes": routes, "actions": actions,
            "problems": problems, "ok": problems.is_empty(),
        }))
    }

    /// A refusal of action `i` of `actions`, its message naming the action.
    pub(super) fn named(actions: &[ActionBody], (i, mut e): (usize, ServiceError)) -> ServiceError {
        e.message = format!("action {i} `{}`: {}", actions[i].name, e.message);
        e
    }

    pub(super) fn gov_action(a: &ActionBody) -> GovAction {
        GovAction { name: a.name.clone(), args: a.args.to_string() }
    }

    /// Run validate (or apply) of every action; the first refusal is returned with the index of
    /// its action (see [`Self::named`]).
    pub(super) fn run_actions(
        &self,
        g: &mut StateTx,
        actions: &[ActionBody],
        apply: bool,
        caller: &Caller,
        proposal_id: &str,
    ) -> Result<(), (usize, ServiceError)> {
        let all: Vec<GovAction> = actions.iter().map(Self::gov_action).collect();
        let before = if apply { super::nodes::records(g).map_err(|e| (0, e))? } else { Vec::new() };
        for (i, a) in actions.iter().enumerate() {
            self.run_one(g, a, &all, apply, caller, proposal_id).map_err(|e| (i, e))?;
        }
        if apply {
            let made = self.share_ledger_secrets(g, actions, proposal_id, &before)?;
            // Members, their keys, the threshold or the secret versions changed: new shares.
            // A refusal (a threshold above the members) is the last action's.
            self.refresh_recovery_shares(g, made.as_ref(), proposal_id)
                .map_err(|e| (actions.len().saturating_sub(1), e))?;
        }
        Ok(())
    }

    /// Validate (or apply) one action `a` of the proposal whose actions are `all`, in `g`; the
    /// fuel its owner used.
    pub(super) fn run_one(
        &self,
        g: &mut StateTx,
        a: &ActionBody,
        all: &[GovAction],
        apply: bool,
        caller: &Caller,
        proposal_id: &str,
    ) -> Result<u64, ServiceError> {
        if a.name.starts_with("oidc.") {
            crate::cleanroom::oidc::action(g, a, apply, caller)?;
            return Ok(0);
        }
        let plugin = self.owner(g, a)?;
        let ga = Self::gov_action(a);
        let call = if apply { GovCall::Apply(&ga) } else { GovCall::Validate(&ga) };
        let snapshot = self.core.ledger.snapshot().map_err(ServiceError::unavailable)?;
        let tx = std::mem::replace(&mut g.tx, Transaction::new(snapshot));
        let (reply, tx, fuel) =
            self.core.runtime.gov_call(&plugin, call, tx, caller, Some(proposal_id.to_string()), all, g.now_ms);
        g.tx = tx;
        match reply {
            Ok(GovReply::Done) => Ok(fuel),
            Ok(GovReply::Refused { status, code, message }) => {
                Err(ServiceError { kind: ErrorKind::Plugin(status), code, message })
            }
            Ok(GovReply::Resolution { .. }) => Err(ServiceError::unavailable("unexpected resolution")),
            Err(e) => Err(dispatch(e)),
        }
    }

    /// The constitution's verdict on `p` as it stands (its ballots), and the fuel it used.
    pub(super) fn resolve(
        &self,
        g: &mut StateTx,
        p: &ProposalRecord,
        caller: &Caller,
    ) -> Result<(Resolution, u64), ServiceError> {
        let constitution = self
            .core
            .runtime
            .registry()
            .constitution()
            .cloned()
            .ok_or_else(|| ServiceError::unavailable("no constitution is installed"))?;
        let members: Vec<GovMember> = self
            .members(g)?
            .into_iter()
            .map(|(id, m)| GovMember { id, active: m.status == "Active", roles: m.roles(), data: m.data.to_string() })
            .collect();
        let ballots: Vec<(String, bool)> = p.ballots.iter().map(|(m, v)| (m.clone(), *v == Vote::Approve)).collect();
        let actions: Vec<GovAction> = p.actions.iter().map(Self::gov_action).collect();
        let tx = std::mem::replace(
            &mut g.tx,
            Transaction::new(self.core.ledger.snapshot().map_err(ServiceError::unavailable)?),
        );
        let call = GovCall::Resolve {
            id: &p.proposal_id,
            proposer_id: &p.proposer_id,
            actions: &actions,
            created_at_ms: p.created_at_ms,
            ballots: &ballots,
            members: &members,
        };
        let (reply, tx, fuel) = self.core.runtime.gov_call(
            &constitution,
            call,
            tx,
            caller,
            Some(p.proposal_id.clone()),
            &actions,
            g.now_ms,
        );
        g.tx = tx;
        let resolution = match reply.map_err(dispatch)? {
            GovReply::Resolution { outcome: GovOutcome::Open, .. } => Resolution::Open,
            GovReply::Resolution { outcome: GovOutcome::Rejected, reason } => Resolution::Rejected(reason),
            GovReply::Resolution { outcome: GovOutcome::Accepted, reason } => Resolution::Accepted(reason),
            other => return Err(ServiceError::unavailable(format!("the constitution answered {other:?} to resolve"))),
        };
        Ok((resolution, fuel))
    }

    /// Ask the constitution; on acceptance apply every action in this transaction, and record
    /// the new state (`Accepted`, `Rejected`, or `Failed` with nothing of the actions written).
    pub(super) fn resolve_and_apply(
        &self,
        g: &mut StateTx,
        p: &mut ProposalRecord,
        caller: &Caller,
    ) -> Result<(), ServiceError> {
        let (resolution, _) = self.resolve(g, p, caller)?;
        if let Next::Apply { reason } = p.resolve(resolution, g.now_ms) {
            let before = g.tx.clone();
            // Actions apply on behalf of their proposer, whoever cast the deciding ballot.
            let proposer = member_caller(&p.proposer_id);
            let outcome = self.run_actions(g, &p.actions.clone(), true, &proposer, &p.proposal_id.clone());
            if outcome.is_err() {
                g.tx = before; // all or nothing
            }
            let outcome = outcome.map_err(|(index, e)| FailedAction {
                index,
                name: p.actions[index].name.clone(),
                code: e.code,
                message: e.message,
            });
            let changes = p.applied(outcome, reason, g.now_ms);
            self.drop_superseded(g, p, &changes)?;
        }
        Ok(())
    }

    /// After a plugin or the constitution changed, drop open proposals whose actions depend on it
    /// (the meaning of what members voted on changed).
    fn drop_superseded(
        &self,
        g: &mut StateTx,
        accepted: &ProposalRecord,
        changes: &Changes,
    ) -> Result<(), ServiceError> {
        if changes.is_empty() {
            return Ok(());
        }
        for (id, mut other) in g.scan::<ProposalRecord>(tables::PROPOSALS)? {
            if other.supersede(&accepted.proposal_id, changes, g.now_ms) {
                g.put(tables::PROPOSALS, &id, &other)?;
            }
        }
        Ok(())
    }
}
