//! `sentiment batch [FILE]`: classify a JSONL (or plain-text) stream.
//!
//! The contract: exactly one output line per input line, in input order. A
//! line that cannot be classified becomes `{"line": N, "error": "..."}` in
//! its place and the run goes on. The reader (`reader.rs`) feeds parsed
//! lines to the library's batching engine, which sorts each window by
//! length and hands results back in order to the writer (`writer.rs`).

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sentiment::batch::WINDOW_BATCHES;
use sentiment::{CancelFlag, ClassifyOptions};

use crate::args::{BatchArgs, ModelArgs};
use crate::exit::{self, diagnostic, UsageError};
use crate::reader::{self, LineOptions};
use crate::writer::{open_output, OutputFile, RecordWriter};

pub fn run(model: &ModelArgs, args: &BatchArgs) -> Result<u8> {
    let options = ClassifyOptions::default()
        .with_long_text(args.long_text.mode()?)
        .with_top_k(args.output.top_k.map(|k| k as usize));
    let field = args.text_field()?;
    let pair_field = args.pair_field()?;
    // Open the input before loading the model or touching --output: a typo
    // in a path costs nothing, and a bad input never truncates an output.
    let (input, input_len) = open_input(args.input.as_deref())?;
    if let Some(output) = &args.output_file {
        refuse_same_file(args.input.as_deref(), output)?;
    }
    // Load the model before touching --output: a broken model must not
    // truncate the results of an earlier run.
    let classifier = crate::load::classifier(model, &options)?;
    let (out, skip) = match &args.output_file {
        Some(path) => {
            let (file, done) = open_output(path, args.resume)?;
            (Output::File(file), done)
        }
        None => (Output::Stdout(std::io::stdout().lock()), 0),
    };
    let cancel = CancelFlag::new();
    // Ctrl-C stops the stream between batches, so the output ends on a
    // complete line. Failing to install the handler only loses that nicety.
    let on_interrupt = cancel.clone();
    let _ = ctrlc::set_handler(move || on_interrupt.cancel());

    let batcher = classifier
        .batcher(options)
        .with_batch_size(args.batch_size as usize)
        .with_cancel(cancel);
    let progress = progress_bar(input_len);
    let lines = reader::spawn(
        input,
        LineOptions {
            format: args.format,
            field,
            pair_field,
            skip,
            capacity: batcher.batch_size() * WINDOW_BATCHES,
        },
        progress.clone(),
    );
    let mut writer = RecordWriter::new(out);
    let summary = batcher
        .run_into(lines.feed(), &mut writer)
        .and_then(|summary| writer.flush().map(|()| summary))
        .context("cannot write output")?;
    let out = writer.into_inner().context("cannot write output")?;
    progress.finish_and_clear();
    if let Some(err) = lines.take_error() {
        return Err(err).context("cannot read input");
    }
    if !summary.cancelled && lines.lines_read() < skip {
        // --resume with another (or a shortened) input: its results would
        // not line up with the output's.
        return Err(UsageError(format!(
            "--resume: the output already holds {skip} lines but the input has only {}; \
             resume with the input of the interrupted run",
            lines.lines_read()
        ))
        .into());
    }
    if let Output::File(file) = out {
        if !summary.cancelled {
            file.finish().context("cannot write output")?;
        }
    }
    if summary.cancelled {
        let written = skip + summary.delivered;
        let hint = if args.output_file.is_some() {
            "; rerun with --resume to continue"
        } else {
            ""
        };
        diagnostic(format_args!(
            "interrupted; output is complete up to line {written}{hint}"
        ));
        return Ok(exit::INTERRUPTED);
    }
    let failed = summary.failed + summary.without_text;
    if failed > 0 {
        diagnostic(format_args!(
            "{failed} of {} lines could not be classified (see their \"error\" records)",
            skip + summary.delivered
        ));
        if !args.errors_ok {
            return Ok(exit::LINES_FAILED);
        }
    }
    Ok(exit::SUCCESS)
}

/// The input file (checked to be something readable, not a folder) or
/// stdin, and its length when known (for the progress bar).
fn open_input(path: Option<&Path>) -> Result<(Box<dyn BufRead + Send>, Option<u64>)> {
    match path {
        Some(path) if path.as_os_str() != "-" => {
            let context = || format!("cannot open {}", path.display());
            let file = File::open(path).with_context(context)?;
            let metadata = file.metadata().with_context(context)?;
            if metadata.is_dir() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    "is a directory, not an input file",
                ))
                .with_context(context);
            }
            Ok((
                Box::new(BufReader::with_capacity(1 << 16, file)),
                Some(metadata.len()),
            ))
        }
        _ => Ok((
            Box::new(BufReader::with_capacity(1 << 16, std::io::stdin())),
            None,
        )),
    }
}

/// Refuses an output that is the input itself (by path, hard link or
/// symlink, or as stdin redirected from it): writing it would destroy the
/// input before it is read.
fn refuse_same_file(input: Option<&Path>, output: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        use std::os::unix::fs::MetadataExt;
        let input = match input {
            Some(path) if path.as_os_str() != "-" => std::fs::metadata(path).ok(),
            _ => std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .ok()
                .and_then(|fd| File::from(fd).metadata().ok()),
        };
        if let (Some(i), Ok(o)) = (input, std::fs::metadata(output)) {
            if i.is_file() && i.dev() == o.dev() && i.ino() == o.ino() {
                return Err(UsageError(format!(
                    "--output {} is the input file itself; write the results elsewhere",
                    output.display()
                ))
                .into());
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (input, output);
    }
    Ok(())
}

fn progress_bar(input_len: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match input_len {
        Some(len) => ProgressBar::new(len),
        None => ProgressBar::new_spinner(),
    };
    let template = match input_len {
        Some(_) => "{bar:30} {bytes}/{total_bytes} [{elapsed_precise}, eta {eta}]",
        None => "{spinner} {bytes} [{elapsed_precise}]",
    };
    match ProgressStyle::with_template(template) {
        Ok(style) => bar.with_style(style),
        Err(_) => bar,
    }
}

/// Where `batch` writes: stdout, or `--output` (see [`OutputFile`]).
enum Output {
    Stdout(std::io::StdoutLock<'static>),
    File(OutputFile),
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Stdout(out) => out.write(buf),
            Self::File(file) => file.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Stdout(out) => out.flush(),
            Self::File(file) => file.flush(),
        }
    }
}
