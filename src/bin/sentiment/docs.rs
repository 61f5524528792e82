//! `sentiment completions <shell>` and `sentiment man`: generated from the
//! clap definition, so they never drift from the real flags.

use anyhow::{Context, Result};
use std::io::Write;

use clap::CommandFactory;

use crate::args::Cli;
use crate::exit;

pub fn completions(shell: clap_complete::Shell) -> Result<u8> {
    // Into memory first: clap_complete panics if its writer fails, and a
    // closed stdout must be a quiet exit, not a panic.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sentiment", &mut script);
    print(&script)
}

pub fn man() -> Result<u8> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .context("cannot render the man page")?;
    print(&page)
}

fn print(bytes: &[u8]) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("cannot write output")?;
    Ok(exit::SUCCESS)
}
