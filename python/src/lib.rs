//! `sentiment._sentiment`: the native half of the Python package. It loads a
//! [`sentiment::Classifier`] and classifies lists of texts with the GIL
//! released; `python/sentiment/__init__.py` shapes the results as the
//! transformers pipeline does.

use std::error::Error as _;
use std::path::PathBuf;

use pyo3::exceptions::{PyException, PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyList};
use sentiment::{
    Aggregate, ClassifyOptions, DeviceSpec, Error, LongText, ModelSpec, Precision, Prediction,
    TextInput,
};

/// One item of `classify_many`: a text, or a `(text, text_pair)` tuple.
#[derive(FromPyObject)]
enum Item {
    Single(String),
    Pair(String, String),
}

impl Item {
    fn input(&self) -> TextInput<'_> {
        match self {
            Self::Single(text) => TextInput::Single(text),
            Self::Pair(first, second) => TextInput::Pair(first, second),
        }
    }
}

pyo3::create_exception!(
    sentiment,
    ModelError,
    PyException,
    "A model that cannot be used: a corrupt or inconsistent file, or a forward pass that failed."
);

/// The library's error as the Python exception a user expects, with the
/// whole chain of causes in its message.
fn python_error(err: Error) -> PyErr {
    let mut message = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        cause = inner.source();
    }
    match err {
        Error::Io { .. } | Error::ModelUnavailable { .. } => PyOSError::new_err(message),
        Error::InvalidOption(_) | Error::Tokenize { .. } | Error::Device { .. } => {
            PyValueError::new_err(message)
        }
        // A model file that is not there, or that the OS would not read,
        // is a file error; one that is there but unusable is a model error.
        Error::Model { path, .. } if !path.exists() => PyFileNotFoundError::new_err(message),
        Error::Model {
            source: Some(source),
            ..
        } if source.is::<std::io::Error>() => PyOSError::new_err(message),
        Error::Model { .. } | Error::Inference { .. } => ModelError::new_err(message),
        _ => PyRuntimeError::new_err(message),
    }
}

/// A whole-number option, `min` or more: anything else (a negative number,
/// one too large for the machine, a bool, a float, a str) is the
/// ValueError the docs promise. PyO3's own conversion to usize raises
/// OverflowError for -1 and TypeError for 2.0.
fn count(value: &Bound<'_, PyAny>, name: &str, min: usize) -> PyResult<usize> {
    let whole = value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>();
    match value.extract::<u64>().ok().filter(|_| whole) {
        Some(n) if n >= min as u64 => usize::try_from(n)
            .map_err(|_| PyValueError::new_err(format!("{name} is too large: {value}"))),
        _ => Err(PyValueError::new_err(format!(
            "{name} must be a whole number from {min}, not {}",
            value
                .repr()
                .map_or_else(|_| "that".to_string(), |r| r.to_string())
        ))),
    }
}

fn parse_precision(name: &str) -> PyResult<Precision> {
    match name.to_ascii_lowercase().as_str() {
        "f32" | "float32" => Ok(Precision::F32),
        "bf16" | "bfloat16" => Ok(Precision::Bf16),
        "int8" => Ok(Precision::Int8),
        _ => Err(PyValueError::new_err(format!(
            "unknown precision {name:?}; expected \"f32\", \"bf16\" or \"int8\""
        ))),
    }
}

fn classify_options(
    top_k: Option<usize>,
    long_text: &str,
    stride: usize,
    aggregate: &str,
) -> PyResult<ClassifyOptions> {
    let aggregate = match aggregate {
        "mean" => Aggregate::Mean,
        "max" => Aggregate::Max,
        _ => {
            return Err(PyValueError::new_err(format!(
                "unknown aggregate {aggregate:?}; expected \"mean\" or \"max\""
            )))
        }
    };
    let long_text = match long_text {
        "truncate" => LongText::Truncate,
        "truncate_start" => LongText::TruncateStart,
        "window" => LongText::Window { stride, aggregate },
        _ => {
            return Err(PyValueError::new_err(format!(
                "unknown long_text {long_text:?}; expected \"truncate\", \"truncate_start\" or \"window\""
            )))
        }
    };
    Ok(ClassifyOptions::default()
        .with_long_text(long_text)
        .with_top_k(top_k))
}

/// One prediction as a dict: `label` and `score`, `scores` (the kept
/// labels, best first), and with `details` the logits, token count,
/// truncation flag and window count.
fn prediction_dict<'py>(
    py: Python<'py>,
    prediction: Prediction,
    details: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("label", &prediction.label)?;
    dict.set_item("score", prediction.score)?;
    let scores = PyList::empty(py);
    for entry in &prediction.scores {
        let item = PyDict::new(py);
        item.set_item("label", &entry.label)?;
        item.set_item("score", entry.score)?;
        scores.append(item)?;
    }
    dict.set_item("scores", scores)?;
    if details {
        dict.set_item("logits", prediction.logits)?;
        dict.set_item("tokens", prediction.tokens)?;
        dict.set_item("truncated", prediction.truncated)?;
        dict.set_item("windows", prediction.windows)?;
    }
    Ok(dict)
}

/// A loaded model. One instance serves many Python threads at once: every
/// call releases the GIL while it tokenizes and runs the model.
#[pyclass(frozen, subclass, module = "sentiment._sentiment")]
struct Classifier {
    inner: sentiment::Classifier,
    device: String,
}

#[pymethods]
impl Classifier {
    #[new]
    #[pyo3(signature = (model=None, *, device="cpu", precision="f32", threads=None, revision=None))]
    fn new(
        py: Python<'_>,
        model: Option<PathBuf>,
        device: &str,
        precision: &str,
        threads: Option<Bound<'_, PyAny>>,
        revision: Option<&str>,
    ) -> PyResult<Self> {
        let threads = threads.map(|t| count(&t, "threads", 1)).transpose()?;
        let spec = match &model {
            None => ModelSpec::Bundled,
            Some(path) => {
                let name = path.to_str().ok_or_else(|| {
                    PyValueError::new_err(format!("model path {path:?} is not valid UTF-8"))
                })?;
                ModelSpec::parse(name, revision).map_err(python_error)?
            }
        };
        let device_spec: DeviceSpec = device.parse().map_err(PyValueError::new_err)?;
        let precision = parse_precision(precision)?;
        let mut builder = sentiment::Classifier::builder()
            .model(spec)
            .device(device_spec)
            .precision(precision);
        if let Some(threads) = threads {
            builder = builder.threads(threads);
        }
        let inner = py.detach(|| builder.build()).map_err(python_error)?;
        Ok(Self {
            inner,
            device: device_spec.to_string(),
        })
    }

    /// The model's name (its folder or hub id, or the bundled model's).
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// The model's labels, in the order of its logits.
    #[getter]
    fn labels(&self) -> Vec<String> {
        self.inner.labels().to_vec()
    }

    /// The precision the model runs in ("f32", "bf16" or "int8").
    #[getter]
    fn precision(&self) -> &'static str {
        self.inner.precision().as_str()
    }

    /// The device the model runs on ("cpu", "cuda:0", ...).
    #[getter]
    fn device(&self) -> &str {
        &self.device
    }

    /// The most tokens one sequence may have (texts beyond are truncated
    /// or windowed).
    #[getter]
    fn max_input_tokens(&self) -> usize {
        self.inner.max_input_tokens()
    }

    /// Why the precision asked for is not the one that runs, if it is not.
    fn precision_warning(&self, asked: &str) -> PyResult<Option<String>> {
        Ok(self.inner.precision_warning(parse_precision(asked)?))
    }

    /// Classifies `texts` (each a str, or a `(text, text_pair)` tuple) in
    /// order, batched by length, with the GIL released: per text a dict, or
    /// the exception it raised.
    #[pyo3(signature = (texts, *, top_k, long_text, stride, aggregate, batch_size, details))]
    #[allow(clippy::too_many_arguments)]
    fn classify_many<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<Item>,
        top_k: Option<Bound<'py, PyAny>>,
        long_text: &str,
        stride: Bound<'py, PyAny>,
        aggregate: &str,
        batch_size: Bound<'py, PyAny>,
        details: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let batch_size = count(&batch_size, "batch_size", 1)?;
        let top_k = top_k.map(|k| count(&k, "top_k", 1)).transpose()?;
        let stride = count(&stride, "stride", 0)?;
        let options = classify_options(top_k, long_text, stride, aggregate)?;
        self.inner.check_options(&options).map_err(python_error)?;
        let results = py.detach(|| {
            let mut results = Vec::with_capacity(texts.len());
            let batcher = self.inner.batcher(options).with_batch_size(batch_size);
            let outcome = batcher.run(texts.iter().map(Item::input), |_: TextInput, result| {
                results.push(result);
                Ok::<(), std::convert::Infallible>(())
            });
            match outcome {
                Ok(_) => results,
                Err(never) => match never {},
            }
        });
        let out = PyList::empty(py);
        for result in results {
            match result {
                Some(Ok(prediction)) => out.append(prediction_dict(py, prediction, details)?)?,
                Some(Err(err)) => out.append(python_error(err).into_value(py))?,
                None => out.append(PyValueError::new_err("no text").into_value(py))?,
            }
        }
        Ok(out)
    }

    fn __repr__(&self) -> String {
        format!(
            "Classifier({:?}, device={:?}, precision={:?})",
            self.inner.name(),
            self.device,
            self.inner.precision().as_str()
        )
    }
}

#[pymodule]
fn _sentiment(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Classifier>()?;
    m.add("ModelError", m.py().get_type::<ModelError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
