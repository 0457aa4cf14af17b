//! `--config FILE`: every flag of `cgs-host start` and `cgs-host sandbox` as a TOML setting.
//!
//! (A module of the `cgs-host` binary, not of the library: it works on the command line.)
//!
//! * A setting's key is its flag's long name: `plugin-fuel = 20000000` for `--plugin-fuel`
//!   (`plugin_fuel` is accepted too). Switches take `true`/`false`, repeatable flags a list.
//! * A flag on the command line wins over its environment variable, which wins over the file,
//!   which wins over the default.
//! * Relative paths in the file are relative to the file's directory, not to where the node
//!   starts.
//! * Every mistake in the file is reported at once, each with its line, before anything starts:
//!   a key that is no setting (with the nearest one), a value of the wrong type, a value its flag
//!   would refuse.
//!
//! The file's settings become flags after the user's, so the one parser (clap's, with its value
//! checks, `requires` and `conflicts_with`) decides about both.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, ValueHint};

/// The commands a file configures.
pub const COMMANDS: &[&str] = &["sandbox", "start", "join"];

/// What a configuration file sets, checked against the command's flags.
#[derive(Debug)]
pub struct FileSettings {
    items: Vec<Setting>,
}

#[derive(Debug)]
struct Setting {
    /// The flag's id (for [`ArgMatches::value_source`]).
    id: String,
    /// The flag's long name.
    long: String,
    /// The values, as they would be typed; a switch set to `true` has none.
    values: Vec<OsString>,
    /// A switch set to `false`: nothing to add.
    off: bool,
    /// The ids of the flags it cannot be given with (either way round).
    conflicts: Vec<String>,
}

impl FileSettings {
    /// The long names of the flags the file sets.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|s| s.long.as_str())
    }

    /// The file's value of the flag `long` (its first).
    pub fn value(&self, long: &str) -> Option<&OsString> {
        self.items.iter().find(|s| s.long == long).and_then(|s| s.values.first())
    }

    /// `argv` with the file's settings appended as flags, except those already given on the
    /// command line or by their environment variable, those that conflict with a flag given
    /// there (the command line wins: `--workspace` over the file's `plugins`), and those `drop`
    /// names (long names). `matches` is `argv` parsed leniently. Also returns a note per
    /// setting left out for a conflict.
    pub fn apply(&self, mut argv: Vec<OsString>, matches: &ArgMatches, drop: &[&str]) -> (Vec<OsString>, Vec<String>) {
        let sub = matches.subcommand().map(|(_, m)| m);
        let given = |id: &str| {
            let by = |m: &ArgMatches| {
                matches!(
                    m.try_contains_id(id).ok().and_then(|_| m.value_source(id)),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
            };
            by(matches) || sub.is_some_and(by)
        };
        let mut notes = Vec::new();
        for s in &self.items {
            if s.off || given(&s.id) || drop.contains(&s.long.as_str()) {
                continue;
            }
            if let Some(other) = s.conflicts.iter().find(|c| given(c)) {
                notes.push(format!(
                    "the config file's `{}` is not used: `--{}` was given, and the two cannot be combined",
                    s.long,
                    other.replace('_', "-")
                ));
                continue;
            }
            if s.values.is_empty() {
                argv.push(format!("--{}", s.long).into());
            }
            for v in &s.values {
                let mut flag = OsString::from(format!("--{}=", s.long));
                flag.push(v);
                argv.push(flag);
            }
        }
        (argv, notes)
    }
}

/// The flags of `cgs-host SUB` a file may set: its own and the global ones, without `--help`,
/// `--version` and `--config`. `root` must be built ([`Command::build`]).
pub fn settable(root: &Command, sub: &str) -> Vec<Arg> {
    let Some(cmd) = root.find_subcommand(sub) else { return Vec::new() };
    cmd.get_arguments()
        .filter(|a| a.get_long().is_some())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version" | "config"))
        .filter(|a| !matches!(a.get_action(), ArgAction::Help | ArgAction::Version))
        .cloned()
        .collect()
}

/// Read and check the configuration file `path` for `cgs-host SUB`.
pub fn load(path: &Path, root: &Command, sub: &str) -> Result<FileSettings, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
    let table: toml::Table =
        text.parse().map_err(|e| format!("the config file {} is not valid TOML: {e}", path.display()))?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let args = settable(root, sub);
    let cmd = root.find_subcommand(sub);
    let mut items: Vec<Setting> = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut errors: Vec<(Option<usize>, String)> = Vec::new();
    for (key, value) in &table {
        let line = line_of(&text, key);
        let at = line.map(|n| format!("line {n}: ")).unwrap_or_default();
        let long = key.replace('_', "-");
        if let Some((first, _)) = seen.iter().find(|(_, l)| *l == long) {
            errors.push((line, format!("{at}`{key}` sets `{long}` a second time (`{first}` sets it too)")));
            continue;
        }
        seen.push((key.clone(), long.clone()));
        let Some(arg) = args.iter().find(|a| a.get_long() == Some(long.as_str())) else {
            let hint = nearest(&long, args.iter().filter_map(Arg::get_long))
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_else(|| format!(" (`cgs-host config example {sub}` lists them all)"));
            errors.push((line, format!("{at}`{key}` is not a setting of `cgs-host {sub}`{hint}")));
            continue;
        };
        match setting(arg, value, &base) {
            Ok(mut s) => {
                // Conflicts are declared on one side only: look both ways.
                if let Some(cmd) = cmd {
                    s.conflicts = args
                        .iter()
                        .filter(|other| {
                            cmd.get_arg_conflicts_with(arg).iter().any(|c| c.get_id() == other.get_id())
                                || cmd.get_arg_conflicts_with(other).iter().any(|c| c.get_id() == arg.get_id())
                        })
                        .map(|other| other.get_id().to_string())
                        .collect();
                }
                items.push(s)
            }
            Err(e) => errors.push((line, format!("{at}`{key}`: {e}"))),
        }
    }
    errors.sort();
    let errors: Vec<String> = errors.into_iter().map(|(_, e)| e).collect();
    if errors.is_empty() {
        Ok(FileSettings { items })
    } else {
        Err(format!(
            "the config file {} has {} mistake{}:\n  {}",
            path.display(),
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            errors.join("\n  ")
        ))
    }
}

/// One file value as the flag's values, checked by the flag's own value parser.
fn setting(arg: &Arg, value: &toml::Value, base: &Path) -> Result<Setting, String> {
    let id = arg.get_id().to_string();
    let long = arg.get_long().unwrap_or_default().to_string();
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => {
            let Some(on) = value.as_bool() else {
                return Err(format!("is a switch: `true` or `false`, not {}", kind(value)));
            };
            let set = matches!(arg.get_action(), ArgAction::SetTrue) == on;
            return Ok(Setting { id, long, values: Vec::new(), off: !set, conflicts: Vec::new() });
        }
        ArgAction::Set | ArgAction::Append => {}
        other => return Err(format!("cannot be set in a file ({other:?})")),
    }
    let scalars: Vec<&toml::Value> = match value {
        toml::Value::Array(list) if matches!(arg.get_action(), ArgAction::Append) => list.iter().collect(),
        toml::Value::Array(_) => return Err("takes one value, not a list".into()),
        v => vec![v],
    };
    let path_like = matches!(
        arg.get_value_hint(),
        ValueHint::AnyPath | ValueHint::FilePath | ValueHint::DirPath | ValueHint::ExecutablePath
    );
    let mut values = Vec::new();
    for v in scalars {
        let text = match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => return Err(format!("must be a string or a number, not {}", kind(other))),
        };
        let text: OsString = if path_like && Path::new(&text).is_relative() && !text.is_empty() {
            base.join(&text).into_os_string()
        } else {
            text.into()
        };
        check_value(arg, &text)?;
        values.push(text);
    }
    Ok(Setting { id, long, values, off: false, conflicts: Vec::new() })
}

/// Whether `text` passes the flag's value parser (its own type check, ranges and choices),
/// in a one-flag command: the file's mistakes are found apart from the command line's.
fn check_value(arg: &Arg, text: &std::ffi::OsStr) -> Result<(), String> {
    let mut only = Arg::new(arg.get_id().clone())
        .action(ArgAction::Set)
        .allow_hyphen_values(true)
        .value_parser(arg.get_value_parser().clone());
    if let Some(names) = arg.get_value_names() {
        only = only.value_names(names.iter().cloned());
    }
    Command::new("cgs-host")
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(only)
        .try_get_matches_from([text])
        .map(drop)
        .map_err(|e| clap_message(&e))
}

/// A clap error's message without its `error:` prefix and `--help` advice, on one line.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .map(|l| match (l.find(" for '["), l.find("]'")) {
            // "invalid value 'x' for '[NAME]': why": the name is the key's, already said.
            (Some(a), Some(b)) if a < b => format!("{}{}", &l[..a], &l[b + 2..]),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn kind(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table",
    }
}

/// The 1-based line where `key` is set (the first line that starts with it).
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix('"').unwrap_or(l);
            let l = l.strip_prefix('[').map(str::trim_start).unwrap_or(l);
            l.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with(['=', '"', '.', ']']))
        })
        .map(|i| i + 1)
}

/// The known name closest to `key`, if close enough to be a typo.
fn nearest<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .map(|k| (distance(key, k), k))
        .filter(|(d, k)| *d <= 1.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + usize::from(ca != *cb));
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// A commented TOML file with every setting of `cgs-host SUB` at its default: what
/// `cgs-host config example SUB` prints.
pub fn example(root: &Command, sub: &str) -> String {
    let mut out = format!(
        "# cgs-host {sub} --config FILE\n\
         # Every setting is a flag of `cgs-host {sub}` (see `cgs-host {sub} --help`); a flag on the\n\
         # command line or its environment variable wins over the file. Relative paths are relative\n\
         # to this file's directory. Check a file with `cgs-host config check FILE --for {sub}`.\n"
    );
    for arg in settable(root, sub) {
        let long = arg.get_long().unwrap_or_default();
        out.push('\n');
        let help = arg.get_long_help().or(arg.get_help()).map(|h| h.to_string()).unwrap_or_default();
        for line in wrap(&help, 96) {
            out.push_str(&format!("# {line}\n"));
        }
        if let Some(env) = arg.get_env() {
            out.push_str(&format!("# (environment: {})\n", env.to_string_lossy()));
        }
        let defaults: Vec<String> = arg.get_default_values().iter().map(|d| d.to_string_lossy().into_owned()).collect();
        let shown = match arg.get_action() {
            ArgAction::SetTrue => "false".to_string(),
            ArgAction::Append => format!("[{}]", defaults.iter().map(|d| quote(d)).collect::<Vec<_>>().join(", ")),
            _ => match defaults.first() {
                Some(d) if d.parse::<i64>().is_ok() => d.clone(),
                Some(d) => quote(d),
                None => "\"\"".to_string(),
            },
        };
        // Required settings have no default: commented too (the file must set them, or the
        // command line), so the example checks as printed.
        let required = if arg.is_required_set() { "   # required: here or as a flag" } else { "" };
        out.push_str(&format!("# {long} = {shown}{required}\n"));
    }
    out
}

/// `s` as a TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for word in para.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

/// Where each flag of `cgs-host SUB` got its value from, after parsing with a file: for
/// `config check`. `(long, value, source)`; unset flags are left out.
pub fn effective(
    root: &Command,
    sub: &str,
    matches: &ArgMatches,
    file: &FileSettings,
) -> Vec<(String, String, &'static str)> {
    let Some((_, sm)) = matches.subcommand() else { return Vec::new() };
    let from_file: Vec<&str> = file.keys().collect();
    let mut out = Vec::new();
    for arg in settable(root, sub) {
        let id = arg.get_id().as_str();
        let long = arg.get_long().unwrap_or_default();
        let Some(raw) = sm.get_raw(id) else { continue };
        let values: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
        let source = match sm.value_source(id) {
            Some(ValueSource::DefaultValue) => "default",
            Some(ValueSource::EnvVariable) => "environment",
            _ if from_file.contains(&long) => "file",
            _ => "command line",
        };
        out.push((long.to_string(), values.join(", "), source));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_suggestions() {
        assert_eq!(distance("listen", "listen"), 0);
        assert_eq!(distance("lisen", "listen"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(nearest("plugin-fule", ["plugin-fuel", "listen"].into_iter()), Some("plugin-fuel"));
        assert_eq!(nearest("colour", ["plugin-fuel", "listen"].into_iter()), None);
        assert_eq!(nearest("x", ["dir"].into_iter()), None);
    }

    #[test]
    fn lines_are_found() {
        let text = "# listen = 1\n\nlisten = \"x\"\n\"dir\" = \"y\"\nlisten-port=3\n";
        assert_eq!(line_of(text, "listen"), Some(3));
        assert_eq!(line_of(text, "dir"), Some(4));
        assert_eq!(line_of(text, "listen-port"), Some(5));
        assert_eq!(line_of(text, "none"), None);
        assert_eq!(line_of("a = 1\n[ x ]\ny = 2\n", "x"), Some(2));
    }

    #[test]
    fn wrapping_keeps_words() {
        assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
        assert_eq!(wrap("one\ntwo", 80), ["one", "two"]);
    }
}
