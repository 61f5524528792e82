//! `sentiment bench`: runs the library's benchmark and prints its report.

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use sentiment::bench::report::{render, ReportFormat};
use sentiment::bench::{run_bench, BenchOptions, SST2_DEV};

use crate::args::{BenchArgs, ModelArgs, ReportFormatArg};
use crate::exit;

pub fn run(model: &ModelArgs, args: &BenchArgs) -> Result<u8> {
    let (dataset, dataset_name) = match &args.dataset {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (SST2_DEV.to_string(), "sst2_dev (built in)".to_string()),
    };
    let options = BenchOptions {
        lengths: args.lengths.iter().map(|&n| n as usize).collect(),
        batch_sizes: args.batch_sizes.iter().map(|&n| n as usize).collect(),
        runs: args.runs as usize,
        warmup: args.warmup as usize,
        dataset,
        dataset_name,
        dataset_passes: args.passes as usize,
    };
    if let Some(threads) = model.threads {
        crate::load::warn_oversubscribed(threads);
    }
    sentiment::device::configure_threads(model.threads.map(usize::from))?;
    let spinner = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    let report = run_bench(
        &model.spec()?,
        &model.device,
        model.precision(),
        &options,
        &mut |step| spinner.set_message(step.to_string()),
    )?;
    spinner.finish_and_clear();
    let format = match args.format {
        ReportFormatArg::Console => ReportFormat::Console,
        ReportFormatArg::Json => ReportFormat::Json,
        ReportFormatArg::Csv => ReportFormat::Csv,
        ReportFormatArg::Markdown => ReportFormat::Markdown,
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", render(&report, format).trim_end())
        .and_then(|()| out.flush())
        .context("cannot write output")?;
    Ok(exit::SUCCESS)
}
