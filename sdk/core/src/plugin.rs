//! Plugin measurement: what a component is, without running it.
//!
//! A plugin's **measurement** is the BLAKE3 of its exact component bytes. Its name, version and
//! world are declared inside those bytes, in a `cgs-plugin-info` custom section that the guest SDK
//! embeds (`{"name":…,"version":…,"world":…}`), so the label travels with — and is covered by —
//! the hash that members vote on.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Blake3Hash;

/// The name of the custom section holding [`PluginInfo`] JSON.
pub const INFO_SECTION: &str = "cgs-plugin-info";

/// Which WIT world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// `cgs:plugin/app-plugin`: routes under `/app` plus plugin actions.
    AppPlugin,
    /// `cgs:plugin/constitution`: voting rules plus core actions.
    Constitution,
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            World::AppPlugin => "app-plugin",
            World::Constitution => "constitution",
        })
    }
}

/// What a plugin declares about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// The plugin name (`contracts`): lowercase letters, digits and `-`, 1–32 chars.
    pub name: String,
    /// Its version (the plugin crate's version).
    pub version: String,
    /// The world it implements.
    pub world: World,
}

/// A plugin's label plus its measurement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurement {
    /// Name, version and world from the component.
    #[serde(flatten)]
    pub info: PluginInfo,
    /// BLAKE3 of the component bytes.
    pub blake3: Blake3Hash,
    /// Size of the component in bytes.
    pub size: u64,
}

impl fmt::Display for Measurement {
    /// `name version blake3`, the format of `cgs plugin build` / `cgs plugin measure`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.info.name, self.info.version, self.blake3)
    }
}

/// Why bytes are not a usable plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// Not a WebAssembly component (e.g. a core module or garbage).
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// No `cgs-plugin-info` section: not built with the cgs-plugin SDK's export macros.
    #[error(
        "the component has no `cgs-plugin-info` section; build it with cgs_plugin::app_plugin! or constitution_plugin!"
    )]
    MissingInfo,
    /// Two info sections (ambiguous).
    #[error("the component has more than one `cgs-plugin-info` section")]
    DuplicateInfo,
    /// The info section is not valid.
    #[error("invalid `cgs-plugin-info` section: {0}")]
    InvalidInfo(String),
    /// The API description section is not valid.
    #[error("invalid `cgs-plugin-api` section: {0}")]
    InvalidApi(String),
}

/// The custom section describing an app plugin's routes for `GET /openapi.json` (optional):
/// what `cgs_plugin::api_schema!("api.json")` embeds.
pub const API_SECTION: &str = "cgs-plugin-api";

/// Most bytes of the [`API_SECTION`].
pub const MAX_API_BYTES: usize = 64 << 10;

/// One route's description in the [`API_SECTION`], keyed by `"METHOD /template"` (the route as
/// the plugin's router declares it, below `/app`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDoc {
    /// One line on what the route does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The JSON Schema (2020-12) of the request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<serde_json::Value>,
    /// The body may be left out (default: a described body is required).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub request_optional: bool,
    /// The JSON Schema (2020-12) of the success answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<serde_json::Value>,
    /// The success status (default 200), or the list of them (`[201, 200]`: created or
    /// replaced), each answering with `response`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Statuses>,
}

/// One success status or several.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Statuses {
    /// One.
    One(u16),
    /// Several.
    Many(Vec<u16>),
}

impl Statuses {
    /// The statuses.
    pub fn list(&self) -> Vec<u16> {
        match self {
            Statuses::One(s) => vec![*s],
            Statuses::Many(v) => v.clone(),
        }
    }
}

/// Whether `schema` is a self-contained JSON Schema that reads the same inside any OpenAPI 3.1
/// document: an object or a boolean; no `$ref`, `$id`, `$schema`, `$anchor`, `$defs` or other
/// `$` keyword (except `$comment`), which would resolve against the document the host builds or
/// make readers' tools fetch a URL; `type` one of JSON Schema's type names (or a list of them).
fn check_schema(schema: &serde_json::Value) -> Result<(), String> {
    const TYPES: &[&str] = &["null", "boolean", "object", "array", "number", "string", "integer"];
    // A schema's keywords are checked; the names under `properties` are the described object's
    // member names (a member may well be called `type`), and `enum`/`const`/`default`/
    // `examples` hold data, not schemas — where no `$` key may hide either (tools resolve a
    // `$ref` wherever it is). Where a keyword takes a schema, it is an object or a boolean.
    fn is_schema(v: &serde_json::Value) -> bool {
        v.is_object() || v.is_boolean()
    }
    fn data(v: &serde_json::Value, depth: usize) -> Result<(), String> {
        if depth > 32 {
            return Err("is nested more than 32 levels deep".into());
        }
        match v {
            serde_json::Value::Object(map) => {
                if let Some(k) = map.keys().find(|k| k.starts_with('$')) {
                    return Err(format!("holds `{k}` in an example or enum value: tools would resolve it"));
                }
                map.values().try_for_each(|c| data(c, depth + 1))
            }
            serde_json::Value::Array(items) => items.iter().try_for_each(|c| data(c, depth + 1)),
            _ => Ok(()),
        }
    }
    fn walk(v: &serde_json::Value, depth: usize) -> Result<(), String> {
        if depth > 32 {
            return Err("is nested more than 32 levels deep".into());
        }
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map {
                    if k.starts_with('$') && k != "$comment" {
                        return Err(format!(
                            "uses `{k}`: schemas must be self-contained (inline what `$ref`/`$defs` would name)"
                        ));
                    }
                    match k.as_str() {
                        "type" => {
                            let ok = match child {
                                serde_json::Value::String(t) => TYPES.contains(&t.as_str()),
                                serde_json::Value::Array(ts) => {
                                    ts.iter().all(|t| t.as_str().is_some_and(|t| TYPES.contains(&t)))
                                }
                                _ => false,
                            };
                            if !ok {
                                return Err(format!("has `type: {child}`; one of {} (or a list)", TYPES.join(", ")));
                            }
                        }
                        "properties" | "patternProperties" | "dependentSchemas" => match child {
                            serde_json::Value::Object(members) if members.values().all(is_schema) => {
                                for s in members.values() {
                                    walk(s, depth + 1)?;
                                }
                            }
                            _ => return Err(format!("has `{k}` that is not an object of schemas")),
                        },
                        "items"
                        | "additionalProperties"
                        | "additionalItems"
                        | "not"
                        | "if"
                        | "then"
                        | "else"
                        | "contains"
                        | "propertyNames"
                        | "unevaluatedItems"
                        | "unevaluatedProperties" => {
                            if !is_schema(child) {
                                return Err(format!("has `{k}` that is not a schema (an object or a boolean)"));
                            }
                            walk(child, depth + 1)?;
                        }
                        "allOf" | "anyOf" | "oneOf" | "prefixItems" => match child {
                            serde_json::Value::Array(items) if items.iter().all(is_schema) => {
                                walk(child, depth + 1)?;
                            }
                            _ => return Err(format!("has `{k}` that is not a list of schemas")),
                        },
                        "enum" | "const" | "default" | "examples" | "example" => data(child, depth + 1)?,
                        "$comment" => {}
                        _ => walk(child, depth + 1)?,
                    }
                }
                Ok(())
            }
            serde_json::Value::Array(items) => items.iter().try_for_each(|i| walk(i, depth + 1)),
            _ => Ok(()),
        }
    }
    if !schema.is_object() && !schema.is_boolean() {
        return Err("must be a JSON Schema object or a boolean".into());
    }
    walk(schema, 0)
}

/// Read the [`API_SECTION`] of a component: route key → description (empty if the section is
/// absent). Checked: at most one section of at most [`MAX_API_BYTES`], keys `METHOD /path`,
/// schemas that are JSON objects or booleans, a 2xx status, a summary of at most 200 chars.
pub fn read_api(component: &[u8]) -> Result<std::collections::BTreeMap<String, RouteDoc>, PluginError> {
    let bad = |m: String| PluginError::InvalidApi(m);
    let mut found: Option<Vec<u8>> = None;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        if let wasmparser::Payload::CustomSection(reader) =
            payload.map_err(|e| PluginError::NotAComponent(e.to_string()))?
            && reader.name() == API_SECTION
        {
            if found.is_some() {
                return Err(bad("the component has more than one".into()));
            }
            found = Some(reader.data().to_vec());
        }
    }
    let Some(data) = found else { return Ok(Default::default()) };
    if data.len() > MAX_API_BYTES {
        return Err(bad(format!("{} bytes, more than {MAX_API_BYTES}", data.len())));
    }
    let docs: std::collections::BTreeMap<String, RouteDoc> = serde_json::from_slice(&data)
        .map_err(|e| bad(format!("not a map of \"METHOD /path\" to descriptions: {e}")))?;
    for (key, doc) in &docs {
        let ok_key = key.split_once(' ').is_some_and(|(m, p)| {
            ["GET", "PUT", "POST", "PATCH", "DELETE"].contains(&m) && p.starts_with('/') && !p.contains(' ')
        });
        if !ok_key {
            return Err(bad(format!("`{key}` is not `METHOD /path` (GET, PUT, POST, PATCH or DELETE)")));
        }
        if key.starts_with("GET ") && doc.request.is_some() {
            return Err(bad(format!("`{key}`: a GET route has no request body to describe")));
        }
        for (what, schema) in [("request", &doc.request), ("response", &doc.response)] {
            if let Some(s) = schema {
                check_schema(s).map_err(|e| bad(format!("`{key}`: the {what} schema {e}")))?;
            }
        }
        if let Some(st) = &doc.status {
            let list = st.list();
            if list.is_empty() || list.len() > 4 || list.iter().any(|s| !(200..300).contains(s)) {
                return Err(bad(format!("`{key}`: status must be one to four 2xx success statuses")));
            }
        }
        if doc.request_optional && doc.request.is_none() {
            return Err(bad(format!("`{key}`: request_optional without a request schema")));
        }
        if doc.summary.as_ref().is_some_and(|s| s.chars().count() > 200) {
            return Err(bad(format!("`{key}`: the summary is longer than 200 characters")));
        }
    }
    Ok(docs)
}

/// Whether `name` is a valid plugin name.
pub fn is_valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_valid_version(v: &str) -> bool {
    (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
}

/// Read the declared [`PluginInfo`] of a component without instantiating it.
pub fn read_info(component: &[u8]) -> Result<PluginInfo, PluginError> {
    let mut found: Option<Vec<u8>> = None;
    let mut first = true;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        let payload = payload.map_err(|e| PluginError::NotAComponent(e.to_string()))?;
        match payload {
            wasmparser::Payload::Version { encoding, .. } if first => {
                first = false;
                if encoding != wasmparser::Encoding::Component {
                    return Err(PluginError::NotAComponent(
                        "this is a core module; build for wasm32-wasip2 to get a component".into(),
                    ));
                }
            }
            wasmparser::Payload::CustomSection(reader) if reader.name() == INFO_SECTION => {
                if found.is_some() {
                    return Err(PluginError::DuplicateInfo);
                }
                found = Some(reader.data().to_vec());
            }
            _ => {}
        }
    }
    let data = found.ok_or(PluginError::MissingInfo)?;
    let info: PluginInfo = serde_json::from_slice(&data).map_err(|e| PluginError::InvalidInfo(e.to_string()))?;
    if !is_valid_name(&info.name) {
        return Err(PluginError::InvalidInfo(format!(
            "name `{}` must be 1-32 chars of a-z 0-9 - starting with a letter",
            info.name
        )));
    }
    if !is_valid_version(&info.version) {
        return Err(PluginError::InvalidInfo(format!("version `{}` is not a valid version", info.version)));
    }
    Ok(info)
}

/// Whether a plugin may import the interface `name`: the `cgs:plugin` interfaces and a
/// deny-by-default WASI subset (stdio, environment, exit, `wasi:io`, insecure-seed), any 0.2.x.
/// The host refuses to load a component that imports anything else.
pub fn import_allowed(name: &str) -> bool {
    const CGS: &[&str] = &[
        "cgs:plugin/types@0.1.0",
        "cgs:plugin/kv@0.1.0",
        "cgs:plugin/context@0.1.0",
        "cgs:plugin/log@0.1.0",
        "cgs:plugin/cleanroom@0.1.0",
    ];
    const WASI: &[&str] = &[
        "wasi:cli/environment",
        "wasi:cli/exit",
        "wasi:cli/stdin",
        "wasi:cli/stdout",
        "wasi:cli/stderr",
        "wasi:cli/terminal-input",
        "wasi:cli/terminal-output",
        "wasi:cli/terminal-stdin",
        "wasi:cli/terminal-stdout",
        "wasi:cli/terminal-stderr",
        "wasi:io/error",
        "wasi:io/poll",
        "wasi:io/streams",
        "wasi:random/insecure-seed",
    ];
    if CGS.contains(&name) {
        return true;
    }
    match name.split_once("@0.2.") {
        Some((iface, patch)) => WASI.contains(&iface) && !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// The interfaces a component imports (its top-level imports, in order), read without
/// compiling it.
pub fn imports(component: &[u8]) -> Result<Vec<String>, PluginError> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        match payload.map_err(|e| PluginError::NotAComponent(e.to_string()))? {
            wasmparser::Payload::ModuleSection { .. } | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(|e| PluginError::NotAComponent(e.to_string()))?;
                    out.push(import.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Measure a component: its declared info and its BLAKE3 (its `cgs-plugin-api` section, if any,
/// is checked too).
pub fn measure(component: &[u8]) -> Result<Measurement, PluginError> {
    // A malformed route description is found when the plugin is built or measured, not only
    // when a node loads it after a vote.
    read_api(component)?;
    Ok(Measurement { info: read_info(component)?, blake3: Blake3Hash::of(component), size: component.len() as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("contracts"));
        assert!(is_valid_name("a1-b"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("1abc"));
        assert!(!is_valid_name("Contracts"));
        assert!(!is_valid_name("a_b"));
        assert!(!is_valid_name(&"a".repeat(33)));
    }

    #[test]
    fn rejects_non_components() {
        assert!(matches!(read_info(b"not wasm"), Err(PluginError::NotAComponent(_))));
        // A core module header: magic + version 1.
        let core = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        assert!(matches!(read_info(&core), Err(PluginError::NotAComponent(_))));
        // An empty component: no info section.
        let component = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        assert!(matches!(read_info(&component), Err(PluginError::MissingInfo)));
    }

    #[test]
    fn reads_info_from_a_custom_section() {
        let mut c = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        let payload = br#"{"name":"greetings","version":"0.1.0","world":"app-plugin"}"#;
        let mut section = Vec::new();
        section.push(INFO_SECTION.len() as u8);
        section.extend_from_slice(INFO_SECTION.as_bytes());
        section.extend_from_slice(payload);
        c.push(0); // custom section id
        c.push(section.len() as u8); // LEB128, < 128
        c.extend_from_slice(&section);
        let m = measure(&c).unwrap();
        assert_eq!(m.info.name, "greetings");
        assert_eq!(m.info.world, World::AppPlugin);
        assert_eq!(m.to_string(), format!("greetings 0.1.0 {}", Blake3Hash::of(&c)));
        // Twice is ambiguous.
        let mut twice = c.clone();
        twice.push(0);
        twice.push(section.len() as u8);
        twice.extend_from_slice(&section);
        assert!(matches!(read_info(&twice), Err(PluginError::DuplicateInfo)));
    }

    fn with_section(name: &str, payload: &[u8]) -> Vec<u8> {
        let mut c = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        let mut section = vec![name.len() as u8];
        section.extend_from_slice(name.as_bytes());
        section.extend_from_slice(payload);
        c.push(0);
        let mut n = section.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                c.push(b);
                break;
            }
            c.push(b | 0x80);
        }
        c.extend_from_slice(&section);
        c
    }

    #[test]
    fn reads_and_checks_the_api_section() {
        assert!(read_api(&with_section("other", b"x")).unwrap().is_empty(), "optional");
        let good =
            br#"{"PUT /greetings/{name}":{"summary":"Set","request":{"type":"object"},"response":true,"status":201}}"#;
        let docs = read_api(&with_section(API_SECTION, good)).unwrap();
        assert_eq!(docs["PUT /greetings/{name}"].status, Some(Statuses::One(201)));
        let two = br#"{"PUT /x":{"request":{},"request_optional":true,"status":[201,200]}}"#;
        let docs = read_api(&with_section(API_SECTION, two)).unwrap();
        assert_eq!(docs["PUT /x"].status.as_ref().map(Statuses::list), Some(vec![201, 200]));
        // A member named `type` (a column's type) is a member, not the keyword; enum values are data.
        let member =
            br#"{"GET /x":{"response":{"properties":{"type":{"enum":["int","text"]},"t":{"const":{"type":"x"}}}}}}"#;
        assert!(read_api(&with_section(API_SECTION, member)).is_ok());
        for (bad, why) in [
            (&br##"{"GET /x":{"response":{"properties":{"type":{"$ref":"#/x"}}}}}"##[..], "uses `$ref`"),
            (br#"{"GET /x":{"response":{"properties":{"type":{"type":"text"}}}}}"#, "has `type: \"text\"`"),
            (br#"{"GET /x":{"response":{"properties":[1]}}}"#, "not an object of schemas"),
            (br#"{"GET /x":{"response":{"properties":{"a":5}}}}"#, "not an object of schemas"),
            (br#"{"GET /x":{"response":{"items":"x"}}}"#, "`items` that is not a schema"),
            (br#"{"GET /x":{"response":{"anyOf":[1]}}}"#, "not a list of schemas"),
            (br##"{"GET /x":{"response":{"enum":[{"$ref":"https://evil/x"}]}}}"##, "holds `$ref`"),
            (br##"{"GET /x":{"response":{"examples":[{"a":{"$ref":"#/x"}}]}}}"##, "holds `$ref`"),
            (br#"{"BREW /x":{}}"#, "is not `METHOD /path`"),
            (br#"{"GET x":{}}"#, "is not `METHOD /path`"),
            (br#"{"PUT /x":{"request":"string"}}"#, "request schema must be"),
            (br#"{"GET /x":{"request":{}}}"#, "no request body"),
            (br##"{"GET /x":{"response":{"$defs":{"A":{}},"$ref":"#/$defs/A"}}}"##, "uses `$defs`"),
            (br#"{"GET /x":{"response":{"items":{"$ref":"https://evil/x"}}}}"#, "uses `$ref`"),
            (br#"{"GET /x":{"response":{"type":5}}}"#, "has `type: 5`"),
            (br#"{"GET /x":{"response":{"properties":{"a":{"type":"text"}}}}}"#, "has `type: \"text\"`"),
            (br#"{"GET /x":{"status":404}}"#, "2xx"),
            (br#"{"GET /x":{"status":[]}}"#, "2xx"),
            (br#"{"PUT /x":{"request_optional":true}}"#, "without a request schema"),
            (br#"{"GET /x":{"example":1}}"#, "unknown field"),
            (br#"[1]"#, "not a map"),
        ] {
            let e = read_api(&with_section(API_SECTION, bad)).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        let long = format!(r#"{{"GET /x":{{"summary":"{}"}}}}"#, "s".repeat(MAX_API_BYTES));
        assert!(read_api(&with_section(API_SECTION, long.as_bytes())).unwrap_err().to_string().contains("more than"));
        let mut twice = with_section(API_SECTION, b"{}");
        twice.extend_from_slice(&with_section(API_SECTION, b"{}")[8..]);
        assert!(read_api(&twice).unwrap_err().to_string().contains("more than one"));
    }

    #[test]
    fn import_allow_list() {
        for ok in
            ["cgs:plugin/kv@0.1.0", "wasi:cli/stderr@0.2.6", "wasi:io/streams@0.2.0", "wasi:random/insecure-seed@0.2.3"]
        {
            assert!(import_allowed(ok), "{ok}");
        }
        for bad in [
            "cgs:plugin/kv@0.2.0",
            "wasi:filesystem/types@0.2.6",
            "wasi:sockets/tcp@0.2.6",
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:random/random@0.2.6",
            "wasi:clocks/wall-clock@0.2.6",
            "wasi:cli/stderr@0.3.0",
            "wasi:cli/stderr@0.2.x",
            "wasi:cli/stderr",
        ] {
            assert!(!import_allowed(bad), "{bad}");
        }
    }
}
