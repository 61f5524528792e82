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

use crate::exit::UsageError;

/// `--output`, opened: a new file, or with `--resume` the old one, whose
/// partial last line (a crash may leave one) is dropped only once the run
/// goes through, so that a refused resume leaves it byte for byte as it was.
pub struct OutputFile {
    file: File,
    /// With --resume: the length of the complete lines, to cut the file to
    /// before the first new line is written (or when the run ends).
    cut_to: Option<u64>,
}

impl OutputFile {
    /// Cuts a resumed file to its complete lines, once.
    fn cut(&mut self) -> std::io::Result<()> {
        if let Some(len) = self.cut_to.take() {
            self.file.set_len(len)?;
            self.file.seek(SeekFrom::End(0))?;
        }
        Ok(())
    }

    /// The run went through: a resumed file loses its partial line even if
    /// nothing was added.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.cut()?;
        self.file.flush()
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.cut()?;
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Opens `--output`. With `resume`, counts its complete lines (returned)
/// without changing it; only a regular file can be resumed, since it is
/// read first (a FIFO or a pipe would never end).
pub fn open_output(path: &Path, resume: bool) -> Result<(OutputFile, u64)> {
    let context = || format!("cannot write {}", path.display());
    if !resume {
        let file = File::create(path).with_context(context)?;
        return Ok((OutputFile { file, cut_to: None }, 0));
    }
    match std::fs::metadata(path) {
        Ok(metadata) if !metadata.is_file() => {
            return Err(UsageError(format!(
                "--resume needs a regular file to continue, and {} is not one (a pipe, FIFO, \
                 device or folder); write to a file, or drop --resume",
                path.display()
            ))
            .into())
        }
        _ => {}
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
    let cut_to = Some(complete_len);
    Ok((OutputFile { file, cut_to }, lines))
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

    /// The writer, flushed.
    pub fn into_inner(self) -> std::io::Result<W> {
        self.out.into_inner().map_err(|err| err.into_error())
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
