//! `sentiment bench`: runs the library's benchmark and prints its report.

use std::io::{IsTerminal, Write};

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use sentiment::bench::report::render;
use sentiment::bench::{run_bench, BenchOptions, SST2_DEV};

use crate::args::{BenchArgs, ModelArgs};
use crate::exit::{self, UsageError};

pub fn run(model: &ModelArgs, args: &BenchArgs) -> Result<u8> {
    let (dataset, dataset_name) = match &args.dataset {
        Some(path) => (read_dataset(path)?, path.display().to_string()),
        None => (SST2_DEV.to_string(), "sst2_dev (built in)".to_string()),
    };
    if let Some(path) = &args.plot {
        let svg = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("svg"));
        if !svg {
            return Err(UsageError(format!(
                "--plot writes an SVG chart, and {} is not named .svg; name the file .svg",
                path.display()
            ))
            .into());
        }
        check_writable(path)?;
    }
    let options = BenchOptions {
        lengths: args.lengths.iter().map(|&n| n as usize).collect(),
        batch_sizes: args.batch_sizes.iter().map(|&n| n as usize).collect(),
        runs: args.runs as usize,
        warmup: args.warmup as usize,
        dataset,
        dataset_name,
        dataset_passes: args.passes as usize,
        kernels: crate::args::kernel_options(),
        hub_timeouts: crate::args::hub_timeouts()?,
        threads_source: crate::threads::get().source.to_string(),
    };
    let threads = crate::threads::get();
    sentiment::device::configure_threads(Some(threads.count))?;
    let spinner = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    let report = run_bench(
        &model.spec()?,
        &model.device,
        &model.precisions()?,
        &options,
        &mut |step| spinner.set_message(step.to_string()),
    )?;
    spinner.finish_and_clear();
    let format = args.format;
    // The report first: a chart that cannot be written loses no measurement.
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", render(&report, format).trim_end())
        .and_then(|()| out.flush())
        .context("cannot write output")?;
    if let Some(path) = &args.plot {
        write_plot(&report, path)?;
    }
    Ok(exit::SUCCESS)
}

/// Whether the chart could be written, found before the run rather than
/// after it: its folder takes a new file, and a file already there may be
/// written. Nothing is changed (an existing chart stays as it is until the
/// new one replaces it).
fn check_writable(path: &Path) -> Result<()> {
    let cannot = |why: &dyn std::fmt::Display| {
        anyhow::Error::new(std::io::Error::other(format!("{why}")))
            .context(format!("--plot: cannot write {}", path.display()))
    };
    if path.is_dir() {
        return Err(cannot(&"it is a folder"));
    }
    if path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|err| cannot(&err))?;
    }
    let probe = beside(path, "probe");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|err| cannot(&err))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// A file next to `path` that no one else uses: `.<name>.<what>.<pid>`.
fn beside(path: &Path, what: &str) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{what}.{}", std::process::id()))
}

/// The chart, written beside its path and renamed onto it: never half a file.
#[cfg(feature = "plot")]
fn write_plot(report: &sentiment::bench::BenchReport, path: &Path) -> Result<()> {
    let svg = sentiment::bench::plot::render_svg(report)?;
    let context = || format!("--plot: cannot write {}", path.display());
    let part = beside(path, "part");
    std::fs::write(&part, svg)
        .and_then(|()| std::fs::rename(&part, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&part);
        })
        .with_context(context)
}

#[cfg(not(feature = "plot"))]
fn write_plot(_: &sentiment::bench::BenchReport, _: &Path) -> Result<()> {
    Err(crate::exit::UsageError(
        "--plot needs the `plot` feature, which this build left out".into(),
    )
    .into())
}

/// The benchmark dataset is held in memory whole (it is timed in passes):
/// this is the most read, far beyond SST-2 dev's 100 KB.
const MAX_DATASET_BYTES: u64 = 256 << 20;

fn read_dataset(path: &Path) -> Result<String> {
    let context = || format!("cannot read {}", path.display());
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_DATASET_BYTES + 1).read_to_string(&mut text))
        .with_context(context)?;
    if text.len() as u64 > MAX_DATASET_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_DATASET_BYTES} bytes; bench a sample of it"),
        ))
        .with_context(context);
    }
    Ok(text)
}
