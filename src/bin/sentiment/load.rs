//! Loading the model the global options name, for `predict` and `batch`.

use anyhow::{Context, Result};
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

/// Sets the thread count (always: an unset count makes candle re-read
/// /proc/cpuinfo on every forward pass), then loads the model and checks
/// `options` against it.
pub fn classifier(model: &ModelArgs, options: &ClassifyOptions) -> Result<Classifier> {
    let mut builder = Classifier::builder()
        .model(model.spec()?)
        .device(single_device(model)?)
        .precision(model.precision());
    if let Some(threads) = model.threads {
        warn_oversubscribed(threads);
        builder = builder.threads(usize::from(threads));
    }
    let classifier = builder.build()?;
    classifier.check_options(options).context("--stride")?;
    Ok(classifier)
}

/// More threads than the CPU has cores makes every parallel step wait for
/// descheduled threads: allowed (it is the user's machine), but never silent.
pub fn warn_oversubscribed(threads: u16) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if usize::from(threads) > cores {
        crate::exit::diagnostic(format_args!(
            "warning: --threads {threads} is more than the {cores} CPUs this process may use; \
             expect it to run slower, not faster"
        ));
    }
}
