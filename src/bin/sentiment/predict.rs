//! `sentiment predict TEXT...`: classify texts from the arguments, or one
//! per line from stdin (read like `batch --input text`: a bad line is an
//! error line in its place, the rest are still classified).

use std::io::{BufReader, BufWriter, IsTerminal, Write};

use anyhow::{Context, Result};
use sentiment::input::{InputFormat, Line};
use sentiment::output::{error_record, human_line, line_outcome, text_record};
use sentiment::{ClassifyOptions, Prediction, Sink, TextInput};

use crate::args::{ModelArgs, PredictArgs};
use crate::exit::{self, diagnostic, UsageError};
use crate::reader::{self, LineOptions};

pub fn run(model: &ModelArgs, args: &PredictArgs) -> Result<u8> {
    let options = ClassifyOptions::default()
        .with_long_text(args.long_text.mode()?)
        .with_top_k(args.output.top_k.map(|k| k as usize));
    // A bad --pairs count is refused before the model loads.
    let pairs = args.pairs.then(|| text_pairs(&args.texts)).transpose()?;
    let classifier = crate::load::classifier(model, &options)?;
    let batcher = classifier
        .batcher(options)
        .with_batch_size(args.batch_size as usize);
    let mut printer = Printer {
        out: BufWriter::new(std::io::stdout().lock()),
        json: args.json,
        lines: 0,
    };
    let summary = if let Some(pairs) = pairs {
        batcher.run_into::<(String, String), _, _>(pairs, &mut printer)
    } else if args.texts.is_empty() {
        if std::io::stdin().is_terminal() {
            diagnostic("reading texts from stdin, one per line (Ctrl-D to end)");
        }
        let lines = reader::spawn(
            BufReader::new(std::io::stdin()),
            LineOptions {
                format: InputFormat::Text,
                field: String::new(),
                pair_field: None,
                skip: 0,
                capacity: batcher.batch_size(),
            },
            indicatif::ProgressBar::hidden(),
        );
        let summary = batcher.run_into::<Line, _, _>(lines.feed(), &mut printer);
        if let Some(err) = lines.take_error() {
            return Err(err).context("cannot read stdin");
        }
        summary
    } else {
        let texts = args
            .texts
            .iter()
            .enumerate()
            .map(|(i, text)| Line::text(i as u64 + 1, text.clone()));
        batcher.run_into::<Line, _, _>(texts, &mut printer)
    }
    .and_then(|summary| printer.out.flush().map(|()| summary))
    .context("cannot write output")?;
    if printer.lines == 0 {
        diagnostic("no input: give texts as arguments or one per line on stdin");
    }
    if summary.failed + summary.without_text > 0 {
        return Ok(exit::LINES_FAILED);
    }
    Ok(exit::SUCCESS)
}

/// `--pairs`' arguments two at a time; an odd count, or none, is a usage
/// error (checked before the model loads).
pub fn text_pairs(texts: &[String]) -> Result<Vec<(String, String)>, UsageError> {
    if texts.is_empty() || texts.len() % 2 == 1 {
        return Err(UsageError(format!(
            "--pairs reads the TEXT arguments two at a time (text, text_pair), and got {}; \
             for pairs in a file, use batch --pair-field",
            texts.len()
        )));
    }
    Ok(texts
        .chunks_exact(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect())
}

/// Prints each result as it is delivered: a human line or a JSON object,
/// and an error line (or record) for a text that failed.
struct Printer<W: Write> {
    out: BufWriter<W>,
    json: bool,
    lines: u64,
}

impl<W: Write> Printer<W> {
    /// One result: a human line or a JSON object, or the error line (or
    /// record) of `what` (a "line" or a "pair") number `number`.
    fn print(
        &mut self,
        what: &str,
        number: u64,
        outcome: Result<(TextInput, Prediction), String>,
    ) -> std::io::Result<()> {
        self.lines += 1;
        let printed = match (outcome, self.json) {
            (Ok((input, prediction)), true) => text_record(input, &prediction).to_string(),
            (Ok((input, prediction)), false) => human_line(input, &prediction),
            (Err(message), true) => error_record(number, &message, None),
            (Err(message), false) => {
                let message = sentiment::output::terminal_safe(&message);
                format!("ERROR     {what} {number}: {message}")
            }
        };
        self.out.write_all(printed.as_bytes())?;
        self.out.write_all(b"\n")
    }
}

impl<W: Write> Sink<Line> for Printer<W> {
    type Error = std::io::Error;

    fn deliver(
        &mut self,
        line: Line,
        result: Option<sentiment::Result<Prediction>>,
    ) -> std::io::Result<()> {
        let number = line.number;
        match line_outcome(line, result) {
            Ok((parsed, prediction)) => {
                self.print("line", number, Ok((parsed.input(), prediction)))
            }
            Err((message, _)) => self.print("line", number, Err(message)),
        }
    }

    /// Results appear as soon as their window is done.
    fn window_done(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl<W: Write> Sink<(String, String)> for Printer<W> {
    type Error = std::io::Error;

    fn deliver(
        &mut self,
        (first, second): (String, String),
        result: Option<sentiment::Result<Prediction>>,
    ) -> std::io::Result<()> {
        let number = self.lines + 1;
        let outcome = match result {
            Some(Ok(prediction)) => Ok((TextInput::Pair(&first, &second), prediction)),
            Some(Err(err)) => Err(err.chain_message()),
            None => Err("the pair was not classified".into()),
        };
        self.print("pair", number, outcome)
    }

    fn window_done(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
