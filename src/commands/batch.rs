//! `sentiment batch [FILE]`: classify a JSONL (or plain-text) stream.
//!
//! The contract: exactly one output line per input line, in input order.
//! A line that cannot be classified becomes `{"line": N, "error": "..."}` in
//! its place and the run goes on. Lines are read in windows of
//! `16 * batch_size`; within a window they are sorted by token count so each
//! batch pads little, then written back in input order. Memory is bounded by
//! the window, never by the input.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};

use super::{flush, result_fields, write_line};
use crate::classifier::{Classifier, Prediction};
use crate::cli::{BatchArgs, InputFormat, ModelArgs};
use crate::error::{exit, Error, Result};
use crate::tokenize::Encoded;

/// Lines longer than this become an error record (and are not buffered),
/// so one runaway line cannot exhaust memory.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// A window also ends early once it holds this many bytes of input.
const WINDOW_BYTES: usize = 64 << 20;

const WINDOW_BATCHES: usize = 16;

/// How to read and classify the stream.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub format: InputFormat,
    pub field: String,
    pub batch_size: usize,
    pub top_k: Option<u32>,
    pub max_line_bytes: usize,
    /// Input lines already classified by an earlier run (`--resume`): they
    /// are read and counted but produce no output.
    pub skip_lines: u64,
}

impl BatchOptions {
    pub fn new(format: InputFormat, field: &str, batch_size: usize) -> Self {
        Self {
            format,
            field: field.to_string(),
            batch_size: batch_size.max(1),
            top_k: None,
            max_line_bytes: MAX_LINE_BYTES,
            skip_lines: 0,
        }
    }
}

/// What a finished run saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchSummary {
    /// Input lines read (skipped ones included).
    pub lines: u64,
    pub failed: u64,
    /// Output lines written (skipped lines are not rewritten).
    pub written: u64,
    /// The run stopped early on Ctrl-C; every line written is complete.
    pub interrupted: bool,
}

/// Set by the Ctrl-C handler; the stream stops at the next line.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn run(model: &ModelArgs, args: &BatchArgs) -> Result<i32> {
    let mut options = BatchOptions::new(args.format, &args.field, args.batch_size as usize);
    options.top_k = args.output.top_k;
    // Open the input before loading the model: a typo in a path should not
    // cost a model load.
    let (reader, input_len): (Box<dyn BufRead + Send>, Option<u64>) = match &args.input {
        Some(path) if path.as_os_str() != "-" => {
            let file = File::open(path)
                .map_err(|err| Error::io(format!("cannot open {}", path.display()), err))?;
            let len = file.metadata().ok().map(|m| m.len());
            (Box::new(BufReader::with_capacity(1 << 16, file)), len)
        }
        _ => (
            Box::new(BufReader::with_capacity(1 << 16, std::io::stdin())),
            None,
        ),
    };
    // Load the model before touching --output: a broken model must not
    // truncate the results of an earlier run.
    let classifier = model.load_for(&args.long_text)?;
    let out: Box<dyn Write> = match &args.output_file {
        Some(path) => {
            let (file, done) = open_output(path, args.resume)?;
            options.skip_lines = done;
            Box::new(file)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 16, out);
    // Ctrl-C stops the stream between lines, so the output ends on a
    // complete line. Failing to install the handler only loses that nicety.
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
    let progress = progress_bar(input_len);
    let summary = classify_stream(&classifier, reader, &mut out, &options, &progress)?;
    progress.finish_and_clear();
    if summary.interrupted {
        let written = options.skip_lines + summary.written;
        let hint = if args.output_file.is_some() {
            "; rerun with --resume to continue"
        } else {
            ""
        };
        eprintln!("sentiment: interrupted; output is complete up to line {written}{hint}");
        return Ok(exit::INTERRUPTED);
    }
    if summary.failed > 0 {
        eprintln!(
            "sentiment: {} of {} lines could not be classified (see their \"error\" records)",
            summary.failed, summary.lines
        );
        return Ok(exit::LINES_FAILED);
    }
    Ok(exit::SUCCESS)
}

/// Opens `--output`. With `resume`, keeps its complete lines (dropping a
/// partial last line a crash may have left) and returns how many there are.
fn open_output(path: &Path, resume: bool) -> Result<(File, u64)> {
    let io_error = |err| Error::io(format!("cannot write {}", path.display()), err);
    if !resume {
        return Ok((File::create(path).map_err(io_error)?, 0));
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_error)?;
    let (mut lines, mut complete_len, mut offset) = (0u64, 0u64, 0u64);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut chunk).map_err(io_error)?;
        if n == 0 {
            break;
        }
        for (i, &byte) in chunk[..n].iter().enumerate() {
            if byte == b'\n' {
                lines += 1;
                complete_len = offset + i as u64 + 1;
            }
        }
        offset += n as u64;
    }
    file.set_len(complete_len).map_err(io_error)?;
    file.seek(SeekFrom::End(0)).map_err(io_error)?;
    Ok((file, lines))
}

fn progress_bar(input_len: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match input_len {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {msg} [{elapsed_precise}, eta {eta}]",
            )
            .expect("static template"),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed_precise}]")
                .expect("static template"),
        ),
    }
}

/// One input line, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedLine {
    /// A JSON object (whose fields are passed through) and its text.
    Record {
        fields: Map<String, Value>,
        text: String,
    },
    /// A plain-text line.
    Text(String),
}

impl ParsedLine {
    pub fn text(&self) -> &str {
        match self {
            Self::Record { text, .. } | Self::Text(text) => text,
        }
    }
}

/// Parses one line (without its `\n`). `first` marks line 1, where a UTF-8
/// byte-order mark is dropped. The error is the message for the record.
pub fn parse_line(
    raw: &[u8],
    first: bool,
    format: InputFormat,
    field: &str,
) -> std::result::Result<ParsedLine, String> {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let raw = if first {
        raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
    } else {
        raw
    };
    let line = std::str::from_utf8(raw).map_err(|err| {
        format!(
            "line is not valid UTF-8 (invalid byte at offset {})",
            err.valid_up_to()
        )
    })?;
    match format {
        InputFormat::Text => Ok(ParsedLine::Text(line.to_string())),
        InputFormat::Jsonl => {
            if line.trim().is_empty() {
                return Err("blank line: expected a JSON object".into());
            }
            let value: Value =
                serde_json::from_str(line).map_err(|err| format!("invalid JSON: {err}"))?;
            let Value::Object(fields) = value else {
                return Err(format!(
                    "expected a JSON object, found {}",
                    json_kind(&value)
                ));
            };
            let text = match fields.get(field) {
                Some(Value::String(text)) => text.clone(),
                Some(other) => {
                    return Err(format!(
                        "field {field:?} must be a string, found {}",
                        json_kind(other)
                    ))
                }
                None => return Err(format!("field {field:?} is missing")),
            };
            Ok(ParsedLine::Record { fields, text })
        }
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads one line into `buf` (without the `\n`), keeping at most `max`
/// bytes; the rest of a longer line is consumed and dropped. Returns the
/// line's full length, or None at the end of input.
fn read_line_capped(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<usize>> {
    buf.clear();
    let mut total = 0usize;
    let mut saw_any = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if chunk.is_empty() {
            return Ok(saw_any.then_some(total));
        }
        saw_any = true;
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(end) => (&chunk[..end], Some(end + 1)),
            None => (chunk, None),
        };
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        total += part.len();
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(Some(total));
        }
    }
}

/// One line of the current window: its number and what became of it.
struct Slot {
    line: u64,
    state: std::result::Result<ParsedLine, String>,
    /// The text's sequences: one, or its windows in window mode.
    encoded: Option<Vec<Encoded>>,
    result: Option<Map<String, Value>>,
}

/// Classifies every line of `reader` and writes one JSON line per input line
/// to `out`, in order. Fails only when reading input or writing output fails
/// (or the model itself fails); a bad line is an error record, not an error.
pub fn classify_stream(
    classifier: &Classifier,
    reader: impl BufRead + Send + 'static,
    out: &mut impl Write,
    options: &BatchOptions,
    progress: &ProgressBar,
) -> Result<BatchSummary> {
    let window_lines = options.batch_size * WINDOW_BATCHES;
    let max_line_bytes = options.max_line_bytes;
    let lines = spawn_reader(reader, max_line_bytes, window_lines);
    let mut summary = BatchSummary::default();
    let mut window: Vec<Slot> = Vec::with_capacity(window_lines);
    let mut window_bytes = 0usize;
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            // The window in progress is dropped, not half-written.
            summary.interrupted = true;
            window.clear();
            break;
        }
        // A timeout, so Ctrl-C is noticed even while stdin is idle.
        let (buf, line_len) = match lines.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok(line)) => line,
            Ok(Err(err)) => return Err(Error::io("cannot read input", err)),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        summary.lines += 1;
        progress.inc(line_len as u64 + 1);
        if summary.lines <= options.skip_lines {
            continue;
        }
        let state = if line_len > max_line_bytes {
            Err(format!(
                "line is {line_len} bytes, over the limit of {max_line_bytes} bytes"
            ))
        } else {
            parse_line(&buf, summary.lines == 1, options.format, &options.field)
        };
        window_bytes += buf.len();
        window.push(Slot {
            line: summary.lines,
            state,
            encoded: None,
            result: None,
        });
        if window.len() >= window_lines || window_bytes >= WINDOW_BYTES {
            summary.written += window.len() as u64;
            summary.failed += flush_window(classifier, &mut window, out, options)?;
            // Results stream out a window at a time, and an interrupted run
            // keeps every finished window.
            flush(out)?;
            window_bytes = 0;
            progress.set_message(format!("{} lines", summary.lines));
        }
    }
    summary.written += window.len() as u64;
    summary.failed += flush_window(classifier, &mut window, out, options)?;
    flush(out)?;
    Ok(summary)
}

/// A line as read: its bytes (capped) and its full length.
type ReadLine = std::io::Result<(Vec<u8>, usize)>;

/// Reads lines on their own thread, so the classifying thread never blocks
/// on input it may have to abandon. The channel holds one window, which
/// keeps memory bounded while the next window is read during inference.
fn spawn_reader(
    mut reader: impl BufRead + Send + 'static,
    max_line_bytes: usize,
    capacity: usize,
) -> Receiver<ReadLine> {
    let (sender, receiver) = sync_channel::<ReadLine>(capacity);
    std::thread::spawn(move || loop {
        let mut buf = Vec::new();
        match read_line_capped(&mut reader, &mut buf, max_line_bytes) {
            Ok(Some(len)) => {
                if sender.send(Ok((buf, len))).is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(err) => {
                let _ = sender.send(Err(err));
                return;
            }
        }
    });
    receiver
}

/// Classifies the window's good lines in length-sorted batches, writes every
/// slot in input order, and empties the window. Returns the failed count.
fn flush_window(
    classifier: &Classifier,
    window: &mut Vec<Slot>,
    out: &mut impl Write,
    options: &BatchOptions,
) -> Result<u64> {
    let encodings = encode_window(classifier, window);
    for (index, encoding) in encodings {
        match encoding {
            Ok(encoding) => window[index].encoded = Some(encoding),
            Err(message) => window[index].state = Err(message),
        }
    }

    // Every sequence of every line, sorted by length so batches pad little.
    let mut order: Vec<(usize, usize)> = window
        .iter()
        .enumerate()
        .flat_map(|(i, slot)| {
            let count = slot.encoded.as_ref().map_or(0, Vec::len);
            (0..count).map(move |k| (i, k))
        })
        .collect();
    order.sort_by_key(|&(i, k)| window[i].encoded.as_ref().map_or(0, |e| e[k].len()));
    let mut per_slot: Vec<Vec<(usize, Prediction)>> = vec![Vec::new(); window.len()];
    for chunk in order.chunks(options.batch_size) {
        let batch: Vec<&Encoded> = chunk
            .iter()
            .filter_map(|&(i, k)| window[i].encoded.as_ref().map(|e| &e[k]))
            .collect();
        let predictions = classifier.predict_encoded(&batch)?;
        for (&(i, k), prediction) in chunk.iter().zip(predictions) {
            per_slot[i].push((k, prediction));
        }
    }
    for (slot, mut predictions) in window.iter_mut().zip(per_slot) {
        if predictions.is_empty() {
            continue;
        }
        predictions.sort_by_key(|(k, _)| *k);
        let prediction = classifier.combine(predictions.into_iter().map(|(_, p)| p).collect());
        slot.result = Some(result_fields(
            &prediction,
            options.top_k,
            classifier.long_text(),
        ));
    }

    let mut failed = 0;
    for slot in window.drain(..) {
        let record = match (slot.state, slot.result) {
            (Ok(parsed), Some(result)) => {
                let mut fields = match parsed {
                    ParsedLine::Record { fields, .. } => fields,
                    ParsedLine::Text(text) => {
                        Map::from_iter([("text".to_string(), Value::String(text))])
                    }
                };
                fields.extend(result);
                Value::Object(fields)
            }
            (Err(message), _) => {
                failed += 1;
                error_record(slot.line, &message)
            }
            (Ok(_), None) => {
                failed += 1;
                error_record(slot.line, "the line was not classified")
            }
        };
        write_line(out, &record.to_string())?;
    }
    Ok(failed)
}

/// Tokenizes the window's parsed lines, keyed by slot index. A batch-level
/// tokenizer failure is retried line by line so only the offending lines fail.
fn encode_window(
    classifier: &Classifier,
    window: &[Slot],
) -> Vec<(usize, std::result::Result<Vec<Encoded>, String>)> {
    let (indices, texts): (Vec<usize>, Vec<&str>) = window
        .iter()
        .enumerate()
        .filter_map(|(i, slot)| slot.state.as_ref().ok().map(|p| (i, p.text())))
        .unzip();
    match classifier.encode_texts(&texts) {
        Ok(encoded) => indices
            .into_iter()
            .zip(encoded.into_iter().map(Ok))
            .collect(),
        Err(_) => indices
            .into_iter()
            .zip(&texts)
            .map(|(i, text)| (i, classifier.encode_text(text).map_err(|e| e.to_string())))
            .collect(),
    }
}

fn error_record(line: u64, message: &str) -> Value {
    Value::Object(Map::from_iter([
        ("line".to_string(), Value::from(line)),
        ("error".to_string(), Value::String(message.to_string())),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> std::result::Result<ParsedLine, String> {
        parse_line(raw, false, InputFormat::Jsonl, "text")
    }

    #[test]
    fn parses_objects_and_rejects_everything_else() {
        assert_eq!(parse(br#"{"text":"hi","id":3}"#).unwrap().text(), "hi");
        assert!(parse(b"{not json").unwrap_err().starts_with("invalid JSON"));
        assert!(parse(b"[1,2]").unwrap_err().contains("an array"));
        assert!(parse(br#"{"id":1}"#).unwrap_err().contains("missing"));
        assert!(parse(br#"{"text":null}"#).unwrap_err().contains("null"));
        assert!(parse(br#"{"text":5}"#).unwrap_err().contains("a number"));
        assert!(parse(br#"{"text":["a"]}"#)
            .unwrap_err()
            .contains("an array"));
        assert!(parse(b"").unwrap_err().contains("blank"));
        assert!(parse(b"\xff\xfe").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn strips_crlf_and_a_leading_bom_only_on_line_one() {
        let bom_line = b"\xEF\xBB\xBF{\"text\":\"a\"}\r";
        assert_eq!(
            parse_line(bom_line, true, InputFormat::Jsonl, "text")
                .unwrap()
                .text(),
            "a"
        );
        assert!(parse_line(bom_line, false, InputFormat::Jsonl, "text").is_err());
        assert_eq!(
            parse_line(b"plain\r", false, InputFormat::Text, "text")
                .unwrap()
                .text(),
            "plain"
        );
    }

    #[test]
    fn capped_reader_drops_the_tail_of_long_lines() {
        let mut input: &[u8] = b"abcdef\nxy\nlast";
        let mut buf = Vec::new();
        assert_eq!(read_line_capped(&mut input, &mut buf, 3).unwrap(), Some(6));
        assert_eq!(buf, b"abc");
        assert_eq!(read_line_capped(&mut input, &mut buf, 3).unwrap(), Some(2));
        assert_eq!(buf, b"xy");
        assert_eq!(read_line_capped(&mut input, &mut buf, 3).unwrap(), Some(4));
        assert_eq!(buf, b"las");
        assert_eq!(read_line_capped(&mut input, &mut buf, 3).unwrap(), None);
    }
}
