//! `cgs`: the CGS command-line tool for members, ISVs and operators.
//!
//! This file holds the global options, the verb groups and the exit status; each group lives in
//! `commands/<group>.rs` with its subcommands and its `run`.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use commands::{
    CliError, analytics, call, consent, contract, event, keygen, ledger, member, node, plugin, policy, proposal,
    receipt, recovery, verify,
};

/// CGS command-line tool: measure and build plugins, and (with a running service) govern it.
#[derive(Parser, Debug)]
#[command(name = "cgs", version, about, long_about = None)]
struct Cli {
    /// Service URL.
    #[arg(long, global = true, env = "CGS_URL", default_value = "https://127.0.0.1:8443")]
    url: String,
    /// Service certificate to trust (PEM), e.g. `sandbox/service-cert.pem`.
    #[arg(long, global = true, env = "CGS_CA")]
    ca: Option<PathBuf>,
    /// The member's private key (PKCS#8 PEM, from `cgs keygen`), e.g. `sandbox/members/isv.key`.
    #[arg(long, global = true, env = "CGS_KEY")]
    key: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a member key pair: PREFIX.key (PKCS#8 PEM, keep it secret) and PREFIX.pub.
    Keygen(keygen::KeygenArgs),
    /// Log in with `--key`: print a member bearer token.
    Login,
    /// Members of the consortium.
    #[command(subcommand)]
    Member(member::MemberCommand),
    /// Proposals and ballots.
    #[command(subcommand)]
    Proposal(proposal::ProposalCommand),
    /// The service's nodes.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Build, measure, publish and verify plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Recovery shares: show them; submit one to a recovering node.
    #[command(subcommand)]
    Recovery(recovery::RecoveryCommand),
    /// Fetch and verify receipts.
    #[command(subcommand)]
    Receipt(receipt::ReceiptCommand),
    /// Verify a ledger offline.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Clean-room contracts: drafts, proposals, revocation and deployment specs.
    #[command(subcommand)]
    Contract(contract::ContractCommand),
    /// Clean-room policies of contracts.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Consent of contracts: execution kill switches, logging and telemetry.
    #[command(subcommand)]
    Consent(consent::ConsentCommand),
    /// Audit events of contracts.
    #[command(subcommand)]
    Event(event::EventCommand),
    /// Datasets of the analytics plugin: register, show, consent (docs/analytics.md).
    #[command(subcommand)]
    Dataset(analytics::DatasetCommand),
    /// Queries of the analytics plugin: submit (checked against the rules), approve, reject.
    #[command(subcommand)]
    Query(analytics::QueryCommand),
    /// Runs of the analytics plugin: list runs and denials with their receipts; request a ticket.
    #[command(subcommand)]
    Run(analytics::RunCommand),
    /// Verify what a service is and runs.
    #[command(subcommand)]
    Verify(verify::VerifyCommand),
    /// Call any route (plugin routes under `/app` above all) as a member, with a bearer token or
    /// anonymously; print the JSON answer.
    Call(call::CallArgs),
    /// Print a shell completion script: `cgs completions bash > /etc/bash_completion.d/cgs`
    /// (or zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.json {
        commands::progress::quiet_unless_terminal();
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.json {
                eprintln!("{}", e.to_json());
            } else {
                eprintln!("error: {e}");
            }
            exit_code(&e)
        }
    }
}

fn run(cli: &Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Keygen(args) => keygen::run(cli, args),
        Command::Login => member::login(cli),
        Command::Member(c) => member::run(cli, c),
        Command::Proposal(c) => proposal::run(cli, c),
        Command::Node(c) => node::run(cli, c),
        Command::Plugin(c) => plugin::run(cli, c),
        Command::Receipt(c) => receipt::run(cli, c),
        Command::Recovery(c) => recovery::run(cli, c),
        Command::Ledger(c) => ledger::run(cli, c),
        Command::Contract(c) => contract::run(cli, c),
        Command::Policy(c) => policy::run(cli, c),
        Command::Consent(c) => consent::run(cli, c),
        Command::Event(c) => event::run(cli, c),
        Command::Dataset(c) => analytics::dataset(cli, c),
        Command::Query(c) => analytics::query(cli, c),
        Command::Run(c) => analytics::run(cli, c),
        Command::Call(args) => call::run(cli, args),
        Command::Verify(c) => verify::run(cli, c),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(*shell, &mut Cli::command(), "cgs", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// The exit status of a failed command: 1 whatever the error, a failed check, a mismatch or a
/// refused request alike. (clap exits 2 on a command line it cannot parse, 0 for `--help`.)
fn exit_code(_: &CliError) -> ExitCode {
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent_and_completes() {
        Cli::command().debug_assert();
        let mut out = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut Cli::command(), "cgs", &mut out);
        let script = String::from_utf8(out).unwrap();
        for verb in ["proposal", "simulate", "plugin", "verify", "completions"] {
            assert!(script.contains(verb), "{verb}");
        }
    }
}
