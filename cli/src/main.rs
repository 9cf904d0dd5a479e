//! `remediator`: check, simulate and lint remediation rules with the component's own core.
//!
//! Every verdict comes from the `remediator` library itself: `check` runs its rules
//! parser, `simulate` runs its whole webhook handler over an in-memory platform, and
//! `lint` reads the rules the same way before asking Unleash about the flags.

mod analyze;
mod check;
mod lint;
mod simulate;
mod style;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "remediator", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate rules files (Keptn 0.6, Keptn 0.8 or remediator/v1), like `promtool check rules`.
    Check {
        /// Rules files to check.
        #[arg(required = true, value_name = "RULES")]
        rules: Vec<PathBuf>,
    },
    /// Show what the component would do for a webhook body, sending nothing.
    Simulate(simulate::Args),
    /// Check the flags and environments the rules use against a live Unleash.
    Lint(lint::Args),
}

/// Which webhook route the payload is POSTed to (default: `/`, format detected from the body).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Route {
    Alertmanager,
    Grafana,
    Keptn,
}

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum Output {
    #[default]
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Check { rules } => check::run(&rules),
        Command::Simulate(args) => simulate::run(&args),
        Command::Lint(args) => lint::run(&args),
    };
    ExitCode::from(code)
}
