//! `cgs call METHOD PATH [--data JSON|@FILE]`: any route of the service, plugin routes above all,
//! as a member (`--key`), with a bearer token (`--token`: a user's JWT or a clean-room session
//! token), or anonymously — like `az rest`. Prints the JSON answer; an error envelope is an error.

use clap::Args;

use super::common::{block_on, client, json_arg, member, ok_json, pretty, show};
use super::{CliError, Result};
use crate::Cli;

#[derive(Args, Debug)]
pub(crate) struct CallArgs {
    /// HTTP method: GET, PUT, POST, PATCH, DELETE.
    method: String,
    /// Path on the service, e.g. `/app/notes/n1` or `/gov/service`.
    path: String,
    /// JSON body, or @FILE (@- for stdin).
    #[arg(long, value_name = "JSON|@FILE")]
    data: Option<String>,
    /// Send `Authorization: Bearer TOKEN` (a user's JWT, a clean-room session token) instead of
    /// logging in with `--key`.
    #[arg(long, env = "CGS_TOKEN", conflicts_with = "anonymous")]
    token: Option<String>,
    /// Send no credentials even if `--key` is set.
    #[arg(long)]
    anonymous: bool,
}

pub(crate) fn run(cli: &Cli, args: &CallArgs) -> Result {
    let method = args.method.to_ascii_uppercase();
    if !["GET", "PUT", "POST", "PATCH", "DELETE"].contains(&method.as_str()) {
        return Err(CliError::usage(format!("`{}` is not a method: use GET, PUT, POST, PATCH or DELETE", args.method)));
    }
    if !args.path.starts_with('/') {
        return Err(CliError::usage(format!("the path starts with `/`: `/{}`", args.path)));
    }
    let body = match &args.data {
        Some(d) => Some(json_arg("--data", d)?.to_string().into_bytes()),
        None => None,
    };
    let answer = if let Some(token) = &args.token {
        let auth = format!("Bearer {}", token.trim());
        block_on(client(cli)?.request(&method, &args.path, body, &[("authorization", auth.as_str())]))??
    } else if cli.key.is_some() && !args.anonymous {
        block_on(member(cli)?.authed(&method, &args.path, body))??
    } else {
        block_on(client(cli)?.request(&method, &args.path, body, &[]))??
    };
    if answer.body.is_empty() {
        answer.ok()?; // an error without a body still fails
        return Ok(());
    }
    let v = ok_json(Ok(answer))?;
    show(cli, &v, pretty);
    Ok(())
}
