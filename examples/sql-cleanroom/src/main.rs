//! `cgs-sql-cleanroom`: run approved CGS analytics queries on DataFusion; seal and open data files.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use cgs_sql_cleanroom::engine::{self, ColumnSpec, Input};
use cgs_sql_cleanroom::room::{self, RunConfig};
use cgs_sql_cleanroom::sealed::{self, Key};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "A SQL clean room for CGS analytics collaborations (Apache DataFusion)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct Service {
    /// The service's URL.
    #[arg(long, env = "CGS_URL", default_value = "https://127.0.0.1:8443")]
    url: String,
    /// The service certificate to pin (PEM).
    #[arg(long, env = "CGS_CA", default_value = "./sandbox/service-cert.pem")]
    ca: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a fresh file key (put it in CGS as the dataset's key secret; keep a copy).
    Keygen,
    /// Seal a dataset's CSV for a contract with its key.
    Seal {
        /// A file holding the key (as `keygen` prints it).
        #[arg(long)]
        key_file: PathBuf,
        /// The contract.
        #[arg(long)]
        contract: String,
        /// The dataset the file is (a file opens only as what it was sealed as).
        #[arg(long)]
        dataset: String,
        /// The CSV in clear.
        input: PathBuf,
        /// The sealed file to write.
        output: PathBuf,
    },
    /// Open a sealed file: a run's output (`--run-id`) or a dataset (`--dataset`).
    Open {
        /// A file holding the key.
        #[arg(long)]
        key_file: PathBuf,
        /// The contract.
        #[arg(long)]
        contract: String,
        /// The run whose output this is.
        #[arg(long, conflicts_with = "dataset", required_unless_present = "dataset")]
        run_id: Option<String>,
        /// The dataset this file is.
        #[arg(long)]
        dataset: Option<String>,
        /// The sealed file.
        input: PathBuf,
        /// Where to write the clear contents (`-`: standard output).
        #[arg(default_value = "-")]
        output: PathBuf,
    },
    /// Run an approved query once, as an attested clean room (prints a JSON report).
    Run {
        #[command(flatten)]
        service: Service,
        #[command(flatten)]
        run: RunConfig,
    },
    /// Run a ticket's SQL on clear CSV files, with the same rules, and print the CSV. This is for
    /// the data's owners, to check a run's output (or an error message the clean room withheld)
    /// on their own data.
    Local {
        /// The run ticket (JSON, as CGS issued it), or the run (`GET /app/contracts/C/runs/RUN`).
        #[arg(long)]
        ticket: PathBuf,
        /// An input: NAME=FILE.csv, one per dataset of the ticket.
        #[arg(long = "input", value_parser = parse_input)]
        inputs: Vec<(String, PathBuf)>,
        /// Keep every group (shows what the minimum group size drops).
        #[arg(long)]
        keep_small_groups: bool,
    },
}

fn parse_input(s: &str) -> Result<(String, PathBuf), String> {
    let (n, p) = s.split_once('=').ok_or("an input is NAME=FILE")?;
    Ok((n.to_string(), PathBuf::from(p)))
}

fn read_key(path: &PathBuf) -> Result<Key> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the key file {}", path.display()))?;
    Key::parse(&text)
}

async fn main_inner(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Keygen => println!("{}", Key::generate().to_text()),
        Cmd::Seal { key_file, contract, dataset, input, output } => {
            let key = read_key(&key_file)?;
            let plain = std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let out = sealed::seal(&key, &sealed::dataset_label(&contract, &dataset), &plain)?;
            room::write_atomically(&output, &out)?;
            eprintln!(
                "sealed {} as dataset `{dataset}` of contract `{contract}`: {}",
                input.display(),
                output.display()
            );
        }
        Cmd::Open { key_file, contract, run_id, dataset, input, output } => {
            let key = read_key(&key_file)?;
            let label = match (run_id, dataset) {
                (Some(r), _) => sealed::output_label(&contract, &r),
                (None, Some(d)) => sealed::dataset_label(&contract, &d),
                (None, None) => unreachable!("clap requires one"),
            };
            let bytes = std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let plain = sealed::open(&key, &label, &bytes)?;
            if output.as_os_str() == "-" {
                use std::io::Write as _;
                std::io::stdout().write_all(&plain)?;
            } else {
                room::write_atomically(&output, &plain)?;
            }
        }
        Cmd::Run { service, run } => {
            let ca = std::fs::read(&service.ca)
                .with_context(|| format!("reading the service certificate {}", service.ca.display()))?;
            let client = cgs_client::Client::new(&service.url, &ca)?;
            let report = room::run(&client, &run).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Cmd::Local { ticket, inputs, keep_small_groups } => {
            let mut v: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&ticket).with_context(|| format!("reading {}", ticket.display()))?,
            )
            .context("the ticket is not JSON")?;
            if v.get("ticket").is_some() {
                v = v["ticket"].take();
            }
            let t: cgs_client::analytics::Ticket = serde_json::from_value(v).context("the file is not a run ticket")?;
            let mut tables = Vec::new();
            for d in &t.datasets {
                let name = d["name"].as_str().ok_or_else(|| anyhow!("the ticket's dataset has no name"))?;
                let path = inputs
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, p)| p)
                    .ok_or_else(|| anyhow!("give dataset `{name}` as --input {name}=FILE.csv"))?;
                let schema: Vec<ColumnSpec> = serde_json::from_value(d["schema"].clone())?;
                let aggregate_only = d["aggregate_only"].as_bool().unwrap_or(true);
                let csv = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                tables.push(Input { name: name.to_string(), schema, aggregate_only, csv });
            }
            let job = engine::Job {
                sql: &t.sql,
                outputs: &t.outputs,
                min_group_size: if keep_small_groups { 0 } else { t.min_group_size },
            };
            let o = engine::run(&job, tables).await?;
            use std::io::Write as _;
            std::io::stdout().write_all(&o.csv)?;
            eprintln!("rows in {}, rows out {}", o.rows_in, o.rows_out);
        }
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    match main_inner(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
