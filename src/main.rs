use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = sentiment::cli::Cli::parse();
    match sentiment::cli::run(cli) {
        Ok(code) => ExitCode::from(code as u8),
        // The reader went away (`sentiment ... | head`): nothing to report.
        Err(err) if err.is_broken_pipe() => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sentiment: {err}");
            ExitCode::from(err.exit_code() as u8)
        }
    }
}
