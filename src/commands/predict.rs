//! `sentiment predict TEXT...`: classify texts from the arguments or stdin.

use std::io::{BufRead, BufWriter, IsTerminal, Write};

use serde_json::{Map, Value};

use super::{flush, result_fields, write_line};
use crate::classifier::{Classifier, LongText, Prediction};
use crate::cli::{ModelArgs, PredictArgs};
use crate::error::{exit, Error, Result};

pub fn run(model: &ModelArgs, args: &PredictArgs) -> Result<i32> {
    let classifier = model.load_for(&args.long_text)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let batch_size = args.batch_size as usize;
    if args.texts.is_empty() {
        if std::io::stdin().is_terminal() {
            eprintln!("sentiment: reading texts from stdin, one per line (Ctrl-D to end)");
        }
        // One text per line, classified a batch at a time so that a long
        // stream runs in bounded memory and results appear as they come.
        let mut pending = Vec::with_capacity(batch_size);
        let mut lines = 0usize;
        for (index, line) in std::io::stdin().lock().lines().enumerate() {
            let line = line
                .map_err(|err| Error::io(format!("cannot read stdin line {}", index + 1), err))?;
            lines += 1;
            pending.push(line.strip_suffix('\r').map(str::to_owned).unwrap_or(line));
            if pending.len() == batch_size {
                print_batch(&classifier, &pending, args, &mut out)?;
                pending.clear();
            }
        }
        print_batch(&classifier, &pending, args, &mut out)?;
        if lines == 0 {
            eprintln!("sentiment: no input: give texts as arguments or one per line on stdin");
        }
    } else {
        for chunk in args.texts.chunks(batch_size) {
            print_batch(&classifier, chunk, args, &mut out)?;
        }
    }
    flush(&mut out)?;
    Ok(exit::SUCCESS)
}

fn print_batch(
    classifier: &Classifier,
    texts: &[String],
    args: &PredictArgs,
    out: &mut impl Write,
) -> Result<()> {
    if texts.is_empty() {
        return Ok(());
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let predictions = classifier.predict(&refs)?;
    for (text, prediction) in texts.iter().zip(&predictions) {
        let line = if args.json {
            json_line(text, prediction, args.output.top_k, classifier.long_text())
        } else {
            human_line(text, prediction, args.output.top_k)
        };
        write_line(out, &line)?;
    }
    flush(out)
}

fn json_line(
    text: &str,
    prediction: &Prediction,
    top_k: Option<u32>,
    long_text: LongText,
) -> String {
    let mut record = Map::new();
    record.insert("text".into(), Value::String(text.to_string()));
    record.extend(result_fields(prediction, top_k, long_text));
    Value::Object(record).to_string()
}

/// `POSITIVE  0.9998  NEGATIVE=0.0002 POSITIVE=0.9998  the text`
fn human_line(text: &str, prediction: &Prediction, top_k: Option<u32>) -> String {
    let k = top_k.map_or(prediction.scores.len(), |k| k as usize);
    let scores: Vec<String> = prediction
        .top_k(k)
        .iter()
        .map(|s| format!("{}={:.4}", s.label, s.score))
        .collect();
    let note = if prediction.truncated {
        " [truncated]".to_string()
    } else if prediction.windows > 1 {
        format!(" [{} windows]", prediction.windows)
    } else {
        String::new()
    };
    format!(
        "{:<8}  {:.4}  {}  {}{note}",
        prediction.label,
        prediction.score,
        scores.join(" "),
        text.replace(['\n', '\r'], " ")
    )
}
