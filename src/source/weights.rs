//! Reading the weights of resolved [`ModelFiles`](super::ModelFiles) into a
//! candle `VarBuilder`, every tensor as f32 except where noted.
//!
//! Safetensors images (a mapped file, or the one compiled into the binary)
//! go through `Releasing`: once a tensor is copied out, its source pages
//! are handed back to the OS. Without that, the bundled model's 45 MB of
//! f16 pages stayed resident next to the converted weights for the whole
//! run; with it, peak RSS is the converted weights plus one tensor.

use candle_core::safetensors::{Load, MmapedSafetensors, SliceSafetensors};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use super::files::Weights;
use crate::error::{Error, Result};
use crate::model::WordTable;

/// The weights as a VarBuilder, and how to hold the word-embedding table
/// (see [`WordTable`]), read from the same parsed safetensors header: in
/// place when the image is compiled in and the device is the CPU, in its
/// stored half dtype when it has one, else as f32.
///
/// `word_embeddings` names the table in the architecture's checkpoints.
pub fn open(
    weights: &Weights,
    device: &Device,
    word_embeddings: &str,
) -> Result<(VarBuilder<'static>, WordTable)> {
    let path = weights.origin();
    let cannot_read =
        |err: candle_core::Error| Error::model_caused(path, "cannot read weights", err);
    let (backend, word_table): (Box<dyn SimpleBackend>, WordTable) = match weights {
        Weights::Pytorch(path) => {
            super::pickle_check::check(path)
                .map_err(|why| Error::model(path, format!("refusing the pickle: {why}")))?;
            // candle's reader prints to stderr (which panics if stderr is
            // full) and may panic on input the dry run let through: contain
            // it, so a bad file is a model error, never a crash.
            let read =
                std::panic::catch_unwind(|| candle_core::pickle::PthTensors::new(path, None))
                    .map_err(|_| {
                        Error::model(path, "cannot read weights: the pickle reader failed")
                    })?;
            let tensors = read.map_err(cannot_read)?;
            super::pickle_check::check_storage(path, tensors.tensor_infos().values())
                .map_err(|why| Error::model(path, format!("cannot read weights: {why}")))?;
            let vb =
                VarBuilder::from_backend(Box::new(Finite(tensors)), DType::F32, device.clone());
            return Ok((vb, WordTable::F32));
        }
        Weights::Safetensors(path) => {
            // SAFETY: the file is mapped read-only; candle's loaders assume
            // it is not modified while mapped, as every mmap-based loader must.
            let tensors = unsafe { MmapedSafetensors::new(path) }.map_err(cannot_read)?;
            let table = match tensors
                .get(word_embeddings)
                .ok()
                .and_then(|v| half(v.dtype()))
            {
                Some(dtype) => WordTable::Half(dtype),
                None => WordTable::F32,
            };
            (Box::new(Finite(Releasing(tensors))), table)
        }
        Weights::Embedded { bytes, .. } => {
            let bytes: &'static [u8] = bytes;
            let tensors = SliceSafetensors::new(bytes).map_err(cannot_read)?;
            let table = match tensors.get(word_embeddings) {
                Ok(view) => match half(view.dtype()) {
                    Some(dtype) if device.is_cpu() => {
                        // The view borrows `tensors`; its bytes lie in the
                        // 'static image, so re-slice them from there.
                        let data = view.data();
                        let offset = data.as_ptr() as usize - bytes.as_ptr() as usize;
                        WordTable::Static {
                            dtype,
                            bytes: &bytes[offset..offset + data.len()],
                        }
                    }
                    Some(dtype) => WordTable::Half(dtype),
                    None => WordTable::F32,
                },
                Err(_) => WordTable::F32,
            };
            (Box::new(Finite(Releasing(tensors))), table)
        }
    };
    let vb = VarBuilder::from_backend(backend, DType::F32, device.clone());
    Ok((vb, word_table))
}

/// The candle dtype of a half-precision safetensors dtype.
fn half(dtype: safetensors::Dtype) -> Option<DType> {
    match dtype {
        safetensors::Dtype::F16 => Some(DType::F16),
        safetensors::Dtype::BF16 => Some(DType::BF16),
        _ => None,
    }
}

/// A safetensors source whose tensors' bytes are released after loading.
struct Releasing<T>(T);

/// What [`Releasing`] needs of candle's two safetensors sources.
trait TensorSource: Send + Sync {
    fn view(&self, name: &str) -> candle_core::Result<safetensors::tensor::TensorView<'_>>;
}

impl TensorSource for MmapedSafetensors {
    fn view(&self, name: &str) -> candle_core::Result<safetensors::tensor::TensorView<'_>> {
        self.get(name)
    }
}

impl TensorSource for SliceSafetensors<'static> {
    fn view(&self, name: &str) -> candle_core::Result<safetensors::tensor::TensorView<'_>> {
        self.get(name)
    }
}

impl<T: TensorSource> SimpleBackend for Releasing<T> {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.get_unchecked(name, dtype, device)?;
        if tensor.shape() != &shape {
            return Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: shape,
                got: tensor.shape().clone(),
            });
        }
        Ok(tensor)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let view = self.0.view(name)?;
        // `load` copies the bytes out (to a new buffer or to the device),
        // so the source is no longer needed once it returns.
        let tensor = view.load(device)?.to_dtype(dtype)?;
        release(view.data());
        Ok(tensor)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.view(name).is_ok()
    }
}

/// A source whose every tensor is checked, as it is read, to hold only
/// finite numbers: a NaN or an infinity in a weight would turn every
/// prediction into a silent wrong answer, so it is a model error at load.
struct Finite<B>(B);

impl<B: SimpleBackend> SimpleBackend for Finite<B> {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.0.get(shape, name, init, dtype, device)?;
        check_finite(name, &tensor)?;
        Ok(tensor)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.0.get_unchecked(name, dtype, device)?;
        check_finite(name, &tensor)?;
        Ok(tensor)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains_tensor(name)
    }
}

/// An error naming the tensor and the first element that is NaN or
/// infinite; the values are read in place on the CPU.
fn check_finite(name: &str, tensor: &Tensor) -> candle_core::Result<()> {
    match crate::model::cpu::first_non_finite(tensor)? {
        Some(index) => Err(candle_core::Error::Msg(format!(
            "{name} holds a non-finite value (NaN or infinity) at element {index}"
        ))),
        None => Ok(()),
    }
}

/// Drops the whole pages inside `bytes` from this process's resident set.
/// They belong to a read-only file mapping (the binary or the weights
/// file), so a later read faults the same bytes back in from the file: the
/// data never changes, only whether it is resident.
#[cfg(unix)]
fn release(bytes: &[u8]) {
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        size if size > 0 => size as usize,
        _ => return,
    };
    let start = (bytes.as_ptr() as usize).next_multiple_of(page);
    let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
    if end > start {
        // SAFETY: [start, end) lies inside `bytes`, a read-only mapping;
        // MADV_DONTNEED on it discards only resident copies of file pages.
        // The result is ignored: failing to release is harmless.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

#[cfg(not(unix))]
fn release(_bytes: &[u8]) {}
