//! The command line: argument definitions and dispatch to one module per
//! subcommand. `main.rs` only parses, calls [`run`] and turns errors into
//! exit codes.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::classifier::{Aggregate, Classifier, LongText};
use crate::commands;
use crate::commands::bench::ReportFormat;
use crate::device::DeviceSpec;
use crate::error::{Error, Result, EXIT_CODES_HELP};
use crate::source::{ModelSpec, MODEL_ENV};

#[derive(Debug, Parser)]
#[command(
    name = "sentiment",
    version,
    about = "Sentiment classification with DistilBERT, on candle",
    after_help = EXIT_CODES_HELP,
)]
pub struct Cli {
    #[command(flatten)]
    pub model: ModelArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every subcommand: which model, where to run it.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// A model folder (config.json, tokenizer.json, model.safetensors), a
    /// HuggingFace hub id (owner/name), or `bundled` [default: the bundled
    /// model, minilm-l6-sst2].
    #[arg(long, short = 'm', global = true, env = MODEL_ENV, value_name = "FOLDER|OWNER/NAME")]
    pub model: Option<String>,

    /// Hub revision (branch, tag or commit) for a hub id.
    #[arg(long, global = true, value_name = "REV")]
    pub revision: Option<String>,

    /// Device to run on: cpu, cuda[:N] (feature `cuda`), metal (feature
    /// `metal`). `bench` takes a comma-separated list to compare devices.
    #[arg(
        long,
        global = true,
        default_value = "cpu",
        value_name = "DEVICE",
        value_delimiter = ','
    )]
    pub device: Vec<DeviceSpec>,

    /// Run the encoder with int8 weights: faster, within half a point of
    /// f32 accuracy on SST-2, but no longer bit-for-bit HF's logits.
    #[arg(long, global = true, value_enum, value_name = "PRECISION")]
    pub quantize: Option<Quantize>,

    /// CPU threads for the model and tokenizer [default: physical cores].
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

impl ModelArgs {
    pub fn spec(&self) -> Result<ModelSpec> {
        match &self.model {
            Some(name) => ModelSpec::parse(name, self.revision.as_deref()),
            None => Ok(ModelSpec::default_spec()),
        }
    }

    /// The one device `predict` and `batch` run on.
    pub fn single_device(&self) -> Result<DeviceSpec> {
        match self.device.as_slice() {
            [device] => Ok(*device),
            _ => Err(Error::Usage(
                "--device takes one device here; only `bench` compares several".into(),
            )),
        }
    }

    /// Resolves the model and loads it on the chosen device.
    pub fn load(&self) -> Result<Classifier> {
        let device = self.single_device()?.open()?;
        let files = self.spec()?.resolve()?;
        let mut classifier = Classifier::load(&files, &device)?;
        if self.quantize == Some(Quantize::Int8) {
            classifier.quantize_int8()?;
        }
        Ok(classifier)
    }

    /// [`ModelArgs::load`], handling long texts as asked.
    pub fn load_for(&self, long_text: &LongTextArgs) -> Result<Classifier> {
        let mut classifier = self.load()?;
        classifier.set_long_text(long_text.mode())?;
        Ok(classifier)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Quantize {
    /// int8 weights per output channel and uint8 activations per token
    /// (AVX-512 VNNI CPUs; elsewhere candle's Q8_0, blocks of 32).
    Int8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classify texts given as arguments, or one per line on stdin.
    Predict(PredictArgs),
    /// Classify a JSONL stream: one result line per input line, in order.
    Batch(BatchArgs),
    /// Measure load time, latency, throughput and accuracy.
    Bench(BenchArgs),
}

/// Options for how results are printed.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Show only the N best labels in `scores` [default: all].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub top_k: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LongTextMode {
    /// Keep the first 512 tokens, as HF does.
    Truncate,
    /// Classify overlapping 512-token windows covering the whole text.
    Window,
}

/// What to do with texts longer than the model's 512 tokens.
#[derive(Debug, Clone, Args)]
pub struct LongTextArgs {
    /// `truncate` keeps the first 512 tokens (JSON says "truncated": true);
    /// `window` classifies the whole text in overlapping windows.
    #[arg(long, value_enum, default_value_t = LongTextMode::Truncate, value_name = "MODE")]
    pub long_text: LongTextMode,

    /// Tokens each window shares with the previous one (window mode).
    #[arg(long, default_value_t = 128, value_name = "TOKENS")]
    pub stride: usize,

    /// How window scores combine: `mean` averages them, `max` lets the most
    /// confident window decide (window mode).
    #[arg(long, value_enum, default_value_t = Aggregate::Mean)]
    pub aggregate: Aggregate,
}

impl LongTextArgs {
    pub fn mode(&self) -> LongText {
        match self.long_text {
            LongTextMode::Truncate => LongText::Truncate,
            LongTextMode::Window => LongText::Window {
                stride: self.stride,
                aggregate: self.aggregate,
            },
        }
    }
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Texts to classify. With none, reads one text per line from stdin.
    #[arg(value_name = "TEXT")]
    pub texts: Vec<String>,

    /// Print one JSON object per line: {"text","label","score","scores",...}.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub long_text: LongTextArgs,

    /// Texts per forward pass.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// One JSON object per line; the text is in `--field`.
    Jsonl,
    /// One text per line.
    Text,
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Input file; `-` or nothing reads stdin.
    #[arg(value_name = "FILE")]
    pub input: Option<PathBuf>,

    /// How to read each line.
    #[arg(long = "input", value_enum, default_value_t = InputFormat::Jsonl, value_name = "FORMAT")]
    pub format: InputFormat,

    /// The JSON field that holds the text.
    #[arg(long, default_value = "text", value_name = "NAME")]
    pub field: String,

    /// Texts per forward pass. Lines are sorted by length within a window of
    /// 16 batches, so each batch pads little, and written back in input order.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,

    /// Write results to FILE instead of stdout.
    #[arg(long = "output", short = 'o', value_name = "FILE")]
    pub output_file: Option<PathBuf>,

    /// Continue an interrupted run: keep the complete lines already in
    /// --output FILE, skip that many input lines, and append the rest. The
    /// input must be the same as in the interrupted run.
    #[arg(long, requires = "output_file")]
    pub resume: bool,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub long_text: LongTextArgs,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Batch-1 latency at these token counts (special tokens included).
    #[arg(long, value_delimiter = ',', default_value = "8,16,32,64,128,256,512",
          value_parser = clap::value_parser!(u32).range(2..))]
    pub lengths: Vec<u32>,

    /// Throughput over the dataset at these batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_sizes: Vec<u32>,

    /// Timed runs per latency figure.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,

    /// Untimed warm-up runs before each latency figure.
    #[arg(long, default_value_t = 3)]
    pub warmup: u32,

    /// JSONL dataset with "text" and optional "label" [default: SST-2 dev, built in].
    #[arg(long, value_name = "FILE")]
    pub dataset: Option<PathBuf>,

    /// Timed passes over the dataset per batch size; the median is reported.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub passes: u32,

    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Console)]
    pub format: ReportFormat,
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    // Always pinned, the default too: candle re-counts physical cores from
    // /proc/cpuinfo on every call that needs the count unless the variable
    // is set, and its head matmuls ask on every forward pass.
    let threads = cli
        .model
        .threads
        .map_or_else(candle_core::utils::get_num_threads, usize::from);
    crate::device::set_cpu_threads(threads);
    match &cli.command {
        Command::Predict(args) => commands::predict::run(&cli.model, args),
        Command::Batch(args) => commands::batch::run(&cli.model, args),
        Command::Bench(args) => commands::bench::run(&cli.model, args),
    }
}
