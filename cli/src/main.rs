//! `shardmetrics`: a measured demo service (the default), and `top`, `report` and `export` for
//! any metrics endpoint. `shardmetrics --help` lists the options and exit codes.

use std::process::ExitCode;

use clap::Parser;
use shardmetrics_cli as cli;

use cli::args::{Cli, Command};

fn main() -> ExitCode {
    let args = Cli::parse();
    let result = match args.command {
        None => cli::demo::run(args.demo),
        Some(Command::Demo(a)) => cli::demo::run(a),
        Some(Command::Top(a)) => cli::top::run(a),
        Some(Command::Report(a)) => cli::report::run(a),
        Some(Command::Export(a)) => cli::export::run(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if e.message.is_empty() => ExitCode::from(e.code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.code)
        }
    }
}
