//! `zwctl`: the operator CLI of zonewarden, a client of the node enforcer.
//!
//! # Layout
//! - `cli`: global flags (`--socket`, `-o`, `--timeout`) and the command tree.
//! - `client`: the connection to the enforcer, one method per RPC, and error
//!   messages that name the socket and what to do.
//! - `view`: serde structs mirroring the proto messages (what JSON/YAML prints).
//! - `render`: the table printer, AGE and list formatting, JSON and YAML.
//! - `edge`: the client-side check of the edge text (`SRC->DST:PORT/PROTO`).
//! - `choice`: arguments that are the model's enums (`Mode`, `ReportKind`).
//! - one module per command group: `get`, `profile`, `mode`, `quarantine`
//!   (also `unquarantine`), `response` (`set`, `clear`, `show`), `status`, `describe`, `zones` (`map`), `flows`
//!   (`watch`, which streams its output as it comes), `profile_io` (`profile
//!   export|import`), `profile_against` (`profile diff --against FILE`), `audit`
//!   (`log`, `verify`), `completion`.
//!
//! Commands return their text; only [`main`] writes to stdout and stderr.

mod audit;
mod choice;
mod cli;
mod client;
mod completion;
mod describe;
mod edge;
mod flows;
mod get;
mod mode;
mod profile;
mod profile_against;
mod profile_io;
mod quarantine;
mod render;
mod response;
mod status;
mod view;
mod zones_map;

use std::io::{self, Write as _};
use std::process::ExitCode;

use clap::FromArgMatches as _;

use crate::cli::{Cli, Command, OutputFormat};

/// What a command produced: text for stdout, and possibly a failure to report
/// after it (e.g. `status` prints the status of an enforcer that is not ready).
pub struct CommandOutput {
    pub stdout: String,
    pub failure: Option<anyhow::Error>,
}

impl From<String> for CommandOutput {
    fn from(stdout: String) -> Self {
        Self {
            stdout,
            failure: None,
        }
    }
}

fn main() -> ExitCode {
    // clap prints usage errors and --help itself, exiting 2 and 0.
    let matches = cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    if let Err(err) = cli::check_output(&cli::command_path(&matches), cli.global.output) {
        err.exit();
    }
    render::set_wide(cli.global.output == OutputFormat::Wide);
    let result = run(&cli);
    let (stdout, failure) = match result {
        Ok(output) => (output.stdout, output.failure),
        Err(err) => (String::new(), Some(err)),
    };
    // Text for people: whatever the enforcer holds (comments, pod names) cannot drive
    // the terminal. JSON and YAML escape control characters themselves.
    let stdout = if cli.global.output.is_structured() {
        stdout
    } else {
        render::terminal_safe(&stdout)
    };
    if let Err(err) = write_stdout(&stdout) {
        eprintln!("zwctl: cannot write the output: {err}");
        return ExitCode::FAILURE;
    }
    match failure {
        None => ExitCode::SUCCESS,
        Some(err) => {
            // `{:#}` keeps anyhow's context chain on one line, without a backtrace.
            eprintln!("zwctl: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<CommandOutput> {
    if let Command::Completion(args) = &cli.command {
        return completion::run(args).map(CommandOutput::from);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| anyhow::anyhow!("cannot start the async runtime: {err}"))?;
    runtime.block_on(async {
        match &cli.command {
            Command::Get(command) => get::run(command, &cli.global)
                .await
                .map(CommandOutput::from),
            Command::Profile(profile::ProfileCommand::Diff(profile::DiffArgs {
                zone,
                against: Some(file),
            })) => profile_against::run(zone, file, &cli.global).await,
            Command::Profile(command) => profile::run(command, &cli.global)
                .await
                .map(CommandOutput::from),
            Command::Mode(command) => mode::run(command, &cli.global)
                .await
                .map(CommandOutput::from),
            Command::Quarantine(args) => quarantine::run(args, true, &cli.global)
                .await
                .map(CommandOutput::from),
            Command::Unquarantine(args) => quarantine::run(args, false, &cli.global)
                .await
                .map(CommandOutput::from),
            Command::Response(command) => response::run(command, &cli.global)
                .await
                .map(CommandOutput::from),
            Command::Status(args) => status::run(args, &cli.global).await,
            Command::Audit(command) => audit::run(command, &cli.global).await,
            Command::Describe(command) => describe::run(command, &cli.global)
                .await
                .map(CommandOutput::from),
            Command::Zones(command) => zones_map::run(command, &cli.global)
                .await
                .map(CommandOutput::from),
            Command::Flows(command) => flows::run(command, &cli.global)
                .await
                .map(CommandOutput::from),
            Command::Completion(_) => unreachable!("handled above: needs no enforcer"),
        }
    })
}

/// Writes the command's output. stdout is written through a handle rather than
/// `print!` (so the workspace's `print_stdout` lint has nothing to allow): a
/// reader that goes away early (`zwctl get endpoints | head`) is not an error.
fn write_stdout(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
