//! `sentiment`: the command line over the `sentiment` library. Parses the
//! arguments, runs one subcommand, and turns its error (if any) into one
//! line on stderr and a documented exit code (see `exit.rs`).

mod args;
mod batch;
mod bench;
mod docs;
mod exit;
mod load;
mod predict;
mod reader;
mod serve;
mod threads;
mod writer;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    args::forget_empty_variables();
    let cli = Cli::parse();
    let writes_stdout = match &cli.command {
        Command::Serve(_) => false,
        Command::Batch(args) => args.output_file.is_none(),
        _ => true,
    };
    if writes_stdout && !exit::stdout_is_open() {
        exit::diagnostic(
            "stdout is closed, so no result could be written; give it a file or a pipe",
        );
        return ExitCode::from(exit::IO);
    }
    let models = !matches!(cli.command, Command::Completions { .. } | Command::Man);
    if let (true, Err(err)) = (models, threads::init(cli.model.threads)) {
        exit::diagnostic(format_args!("{}", err.0));
        return ExitCode::from(exit::USAGE);
    }
    let result = match &cli.command {
        Command::Predict(args) => predict::run(&cli.model, args),
        Command::Batch(args) => batch::run(&cli.model, args),
        Command::Bench(args) => bench::run(&cli.model, args),
        Command::Serve(args) => serve::run(&cli.model, args),
        Command::Completions { shell } => docs::completions(*shell),
        Command::Man => docs::man(),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`sentiment ... | head`): nothing to report.
        Err(err) if exit::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            exit::diagnostic(format_args!("{err:#}"));
            ExitCode::from(exit::code_for(&err))
        }
    }
}
