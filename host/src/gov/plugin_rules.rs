//! What a `set_plugin` may change, decided without wasm: the pure rules of upgrades.
//!
//! * Versions only go up (semver precedence), unless members vote a rollback: the action carries
//!   `"rollback": "<why>"`.
//! * A version is never reused with other bytes, and proposing the bytes that already run is
//!   refused (nothing would change).
//! * A core plugin — one of [`CORE_PLUGINS`] as the service was created with it (`"core": true`
//!   in `gov.plugins`) — is
//!   replaced by name only with `"replace_core": true`, so that members see a replacement, not an
//!   upgrade by its authors.
//! * A plugin may not take the constitution's name.

/// The service's own app plugins: created with the service (genesis marks them `core`).
pub const CORE_PLUGINS: &[&str] = &["contracts", "consent", "audit"];

/// The plugin that runs now under the proposed name.
#[derive(Debug, Clone, Copy)]
pub struct Active<'a> {
    /// Its version.
    pub version: &'a str,
    /// Its measurement (hex).
    pub blake3: &'a str,
    /// The service was created with it.
    pub core: bool,
}

/// What a `set_plugin` proposes.
#[derive(Debug, Clone, Copy)]
pub struct Proposed<'a> {
    /// Plugin name.
    pub name: &'a str,
    /// Version.
    pub version: &'a str,
    /// Measurement (hex).
    pub blake3: &'a str,
    /// `"rollback": "<why>"`: a voted downgrade.
    pub rollback: Option<&'a str>,
    /// `"replace_core": true`.
    pub replace_core: bool,
}

/// Longest rollback reason (bytes).
pub const MAX_REASON: usize = 1024;

/// Why a `set_plugin` is refused: an error code and a sentence.
pub type Refusal = (&'static str, String);

/// Check `p` against what runs now under its name (`active`) and the constitution's name.
pub fn check(active: Option<Active<'_>>, p: &Proposed<'_>, constitution: Option<&str>) -> Result<(), Refusal> {
    let new = semver::Version::parse(p.version).map_err(|e| {
        ("InvalidPluginVersion", format!("`{}` is not a semantic version (MAJOR.MINOR.PATCH): {e}", p.version))
    })?;
    if constitution == Some(p.name) {
        return Err((
            "PluginNameTaken",
            format!("`{}` is the constitution's name; an app plugin needs another", p.name),
        ));
    }
    if let Some(why) = p.rollback
        && (why.trim().is_empty() || why.len() > MAX_REASON)
    {
        return Err(("InvalidActionArgs", format!("`rollback` is the reason for it: 1-{MAX_REASON} bytes")));
    }
    let Some(a) = active else {
        if p.rollback.is_some() {
            return Err(("NothingToRollBack", format!("no plugin `{}` runs; propose it without `rollback`", p.name)));
        }
        return Ok(());
    };
    if a.core && !p.replace_core {
        return Err((
            "CorePluginReplacement",
            format!(
                "`{}` is a core plugin (the service was created with it); replacing it by name needs \
                 `\"replace_core\": true` in the action, so that members see a replacement and not an upgrade",
                p.name
            ),
        ));
    }
    if a.blake3 == p.blake3 {
        return Err(("PluginUnchanged", format!("{} {} ({}) already runs", p.name, a.version, a.blake3)));
    }
    // A running version that is not semver (an old ledger) compares below any proper version.
    let old = semver::Version::parse(a.version).ok();
    match old.as_ref().map(|o| new.cmp_precedence(o)) {
        Some(std::cmp::Ordering::Equal) => Err((
            "VersionReused",
            format!(
                "{} {} already runs with other bytes ({}); a version names one build: publish {} with a higher \
                 version",
                p.name, a.version, a.blake3, p.name
            ),
        )),
        Some(std::cmp::Ordering::Less) if p.rollback.is_none() => Err((
            "PluginDowngrade",
            format!(
                "{} {} would replace the newer {}; versions only go up unless members vote a rollback: add \
                 `\"rollback\": \"<why>\"` to the action",
                p.name, p.version, a.version
            ),
        )),
        Some(std::cmp::Ordering::Greater) | None if p.rollback.is_some() => Err((
            "NotARollback",
            format!("{} {} is not older than {}: propose it without `rollback`", p.name, p.version, a.version),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aa";
    const B: &str = "bb";

    fn running(version: &str, core: bool) -> Option<Active<'_>> {
        Some(Active { version, blake3: A, core })
    }

    fn propose<'a>(version: &'a str, blake3: &'a str) -> Proposed<'a> {
        Proposed { name: "notes", version, blake3, rollback: None, replace_core: false }
    }

    fn code(r: Result<(), Refusal>) -> &'static str {
        r.err().map_or("ok", |(c, _)| c)
    }

    #[test]
    fn versions_only_go_up() {
        assert_eq!(code(check(None, &propose("0.1.0", B), None)), "ok", "first install");
        assert_eq!(code(check(running("0.1.0", false), &propose("0.2.0", B), None)), "ok");
        assert_eq!(code(check(running("0.2.0", false), &propose("0.1.1", B), None)), "PluginDowngrade");
        assert_eq!(code(check(running("1.0.0", false), &propose("1.0.0-rc.1", B), None)), "PluginDowngrade");
        assert_eq!(code(check(running("0.2.0", false), &propose("0.2.0", B), None)), "VersionReused");
        assert_eq!(code(check(running("0.2.0", false), &propose("0.2.0+other", B), None)), "VersionReused");
        assert_eq!(code(check(running("0.2.0", false), &propose("0.3.0", A), None)), "PluginUnchanged");
        assert_eq!(code(check(running("0.2.0", false), &propose("two", B), None)), "InvalidPluginVersion");
        assert_eq!(code(check(running("old", false), &propose("0.1.0", B), None)), "ok", "non-semver running");
    }

    #[test]
    fn rollbacks_are_voted_with_a_reason() {
        let mut p = propose("0.1.1", B);
        p.rollback = Some("0.2.0 loses events under load");
        assert_eq!(code(check(running("0.2.0", false), &p, None)), "ok");
        assert_eq!(code(check(running("0.1.0", false), &p, None)), "NotARollback");
        assert_eq!(code(check(None, &p, None)), "NothingToRollBack");
        p.rollback = Some("  ");
        assert_eq!(code(check(running("0.2.0", false), &p, None)), "InvalidActionArgs");
    }

    #[test]
    fn core_plugins_are_replaced_only_on_purpose() {
        let mut p = propose("9.0.0", B);
        p.name = "audit";
        assert_eq!(code(check(running("0.1.0", true), &p, None)), "CorePluginReplacement");
        p.replace_core = true;
        assert_eq!(code(check(running("0.1.0", true), &p, None)), "ok");
        assert_eq!(code(check(None, &propose("0.1.0", B), Some("notes"))), "PluginNameTaken");
    }
}
