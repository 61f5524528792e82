//! `batch`'s output: the --output file (kept and appended to on --resume)
//! or stdout, one JSON record per input line, flushed a window at a time so
//! an interrupted run ends on a complete line.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result};
use sentiment::input::Line;
use sentiment::output::{error_record, line_outcome, line_record};
use sentiment::{Prediction, Sink};

/// Opens `--output`. With `resume`, keeps its complete lines (dropping a
/// partial last line a crash may have left) and returns how many there are.
pub fn open_output(path: &Path, resume: bool) -> Result<(File, u64)> {
    let context = || format!("cannot write {}", path.display());
    if !resume {
        return Ok((File::create(path).with_context(context)?, 0));
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(context)?;
    let (mut lines, mut complete_len, mut offset) = (0u64, 0u64, 0u64);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut chunk).with_context(context)?;
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
    file.set_len(complete_len).with_context(context)?;
    file.seek(SeekFrom::End(0)).with_context(context)?;
    Ok((file, lines))
}

/// Writes each delivered line as its record, in order.
pub struct RecordWriter<W: Write> {
    out: BufWriter<W>,
}

impl<W: Write> RecordWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out: BufWriter::with_capacity(1 << 16, out),
        }
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl<W: Write> Sink<Line> for RecordWriter<W> {
    type Error = std::io::Error;

    fn deliver(
        &mut self,
        line: Line,
        result: Option<sentiment::Result<Prediction>>,
    ) -> std::io::Result<()> {
        let number = line.number;
        let record = match line_outcome(line, result) {
            Ok((parsed, prediction)) => line_record(parsed, &prediction),
            Err((message, fields)) => error_record(number, &message, fields.as_ref()),
        };
        self.out.write_all(record.as_bytes())?;
        self.out.write_all(b"\n")
    }

    /// Results stream out a window at a time, and an interrupted run keeps
    /// every finished window.
    fn window_done(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
