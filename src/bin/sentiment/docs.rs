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

/// One page: the global options, then a section per subcommand with its
/// synopsis, description and flags (clap_mangen's own subcommand list
/// points to a page per subcommand, which we do not install).
pub fn man() -> Result<u8> {
    let render = || -> std::io::Result<Vec<u8>> {
        let command = Cli::command();
        let man = clap_mangen::Man::new(command.clone());
        let mut page = Vec::new();
        man.render_title(&mut page)?;
        man.render_name_section(&mut page)?;
        man.render_synopsis_section(&mut page)?;
        man.render_description_section(&mut page)?;
        man.render_options_section(&mut page)?;
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = sub.get_name().to_string();
            let full = sub.clone().bin_name(format!("sentiment {name}"));
            let sub_man = clap_mangen::Man::new(full);
            let mut section = Vec::new();
            sub_man.render_synopsis_section(&mut section)?;
            sub_man.render_description_section(&mut section)?;
            sub_man.render_options_section(&mut section)?;
            let section = String::from_utf8_lossy(&section)
                .replace(".SH SYNOPSIS", ".SS Synopsis")
                .replace(".SH DESCRIPTION", ".SS Description")
                .replace(".SH OPTIONS", ".SS Options");
            writeln!(page, ".SH \"SENTIMENT {}\"", name.to_uppercase())?;
            page.extend_from_slice(section.as_bytes());
        }
        man.render_extra_section(&mut page)?;
        man.render_version_section(&mut page)?;
        Ok(page)
    };
    let page = render().context("cannot render the man page")?;
    print(&page)
}

fn print(bytes: &[u8]) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("cannot write output")?;
    Ok(exit::SUCCESS)
}
