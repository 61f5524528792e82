//! Loading the model the global options name, for `predict` and `batch`.

use std::io::IsTerminal;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sentiment::{Classifier, ClassifyOptions, DeviceSpec};

use crate::args::ModelArgs;
use crate::exit::UsageError;

/// The one device `predict` and `batch` run on.
pub fn single_device(model: &ModelArgs) -> Result<DeviceSpec> {
    match model.device.as_slice() {
        [device] => Ok(*device),
        _ => Err(UsageError(
            "--device takes one device here; only `bench` compares several".into(),
        )
        .into()),
    }
}

/// Loads the model on the thread count decided at start and checks
/// `options` against it.
pub fn classifier(model: &ModelArgs, options: &ClassifyOptions) -> Result<Classifier> {
    let mut builder = Classifier::builder()
        .model(model.spec()?)
        .device(single_device(model)?)
        .precision(model.precision()?)
        .kernels(crate::args::kernel_options())
        .hub_timeouts(crate::args::hub_timeouts()?);
    builder = builder.threads(crate::threads::get().count);
    if std::io::stderr().is_terminal() {
        builder = builder.download_progress(download_bar());
    }
    let classifier = builder.build()?;
    classifier.check_options(options).context("--stride")?;
    warn_precision(model.precision()?, &classifier);
    Ok(classifier)
}

/// A precision asked for but not run as asked is allowed, as it gives the
/// same labels, but never silent (the library words it).
pub fn warn_precision(asked: sentiment::Precision, classifier: &Classifier) {
    if let Some(warning) = classifier.precision_warning(asked) {
        crate::exit::diagnostic(format_args!("warning: {warning}"));
    }
}

/// A progress bar on stderr per downloaded file (only on a terminal).
pub fn download_bar() -> impl FnMut(&str, u64, u64) + Send {
    let mut current: Option<(String, ProgressBar)> = None;
    move |file, done, total| {
        if current.as_ref().is_none_or(|(name, _)| name != file) {
            let bar = ProgressBar::new(total).with_message(file.to_string());
            if let Ok(style) = ProgressStyle::with_template(
                "{msg:>20} {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
            ) {
                bar.set_style(style);
            }
            current = Some((file.to_string(), bar));
        }
        if let Some((_, bar)) = &current {
            bar.set_position(done);
            if done >= total {
                bar.finish_and_clear();
            }
        }
    }
}
