//! Reading the weights of resolved [`ModelFiles`](super::ModelFiles) into a
//! candle `VarBuilder`, every tensor as f32 except where noted.
//!
//! Safetensors images (a mapped file, or the one compiled into the binary)
//! go through [`Releasing`]: once a tensor is copied out, its source pages
//! are handed back to the OS. Without that, the bundled model's 45 MB of
//! f16 pages stayed resident next to the converted weights for the whole
//! run; with it, peak RSS is the converted weights plus one tensor.

use candle_core::safetensors::{Load, MmapedSafetensors, SliceSafetensors};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use super::Weights;
use crate::error::{Error, Result};
use crate::model::WordTable;

const WORD_EMBEDDINGS: &str = "distilbert.embeddings.word_embeddings.weight";

/// How to hold the word-embedding table (see [`WordTable`]): in place when
/// the image is compiled in and the device is the CPU, in its stored half
/// dtype when it has one, else as f32.
pub fn word_table(weights: &Weights, device: &Device) -> WordTable {
    let Some(dtype) = stored_half_dtype(weights, WORD_EMBEDDINGS) else {
        return WordTable::F32;
    };
    if let (Weights::Embedded { bytes, .. }, true) = (weights, device.is_cpu()) {
        let bytes: &'static [u8] = bytes;
        if let Ok(tensors) = safetensors::SafeTensors::deserialize(bytes) {
            if let Ok(view) = tensors.tensor(WORD_EMBEDDINGS) {
                // The view borrows `bytes`, which is 'static; re-slice it
                // from there so the borrow outlives `tensors`.
                let data = view.data();
                let offset = data.as_ptr() as usize - bytes.as_ptr() as usize;
                return WordTable::Static {
                    dtype,
                    bytes: &bytes[offset..offset + data.len()],
                };
            }
        }
    }
    WordTable::Half(dtype)
}

pub fn var_builder(weights: &Weights, device: &Device) -> Result<VarBuilder<'static>> {
    let path = weights.origin();
    let backend: candle_core::Result<Box<dyn SimpleBackend>> = match weights {
        // SAFETY: the file is mapped read-only; candle's loaders assume it is
        // not modified while mapped, as every mmap-based loader must.
        Weights::Safetensors(path) => unsafe { MmapedSafetensors::new(path) }
            .map(|tensors| Box::new(Releasing(tensors)) as Box<dyn SimpleBackend>),
        Weights::Pytorch(path) => {
            return VarBuilder::from_pth(path, DType::F32, device)
                .map_err(|err| Error::model(path, format!("cannot read weights: {err}")))
        }
        Weights::Embedded { bytes, .. } => SliceSafetensors::new(bytes)
            .map(|tensors| Box::new(Releasing(tensors)) as Box<dyn SimpleBackend>),
    };
    let backend =
        backend.map_err(|err| Error::model(path, format!("cannot read weights: {err}")))?;
    Ok(VarBuilder::from_backend(
        backend,
        DType::F32,
        device.clone(),
    ))
}

/// The dtype a safetensors checkpoint stores `tensor` in, if f16 or bf16.
/// Reads only the header; None when it cannot tell (the tensor then loads
/// as f32, which is always correct).
fn stored_half_dtype(weights: &Weights, tensor: &str) -> Option<DType> {
    let header = match weights {
        Weights::Embedded { bytes, .. } => safetensors_header(&mut &bytes[..]),
        Weights::Safetensors(path) => safetensors_header(&mut std::fs::File::open(path).ok()?),
        Weights::Pytorch(_) => None,
    }?;
    match header.get(tensor)?.get("dtype")?.as_str()? {
        "F16" => Some(DType::F16),
        "BF16" => Some(DType::BF16),
        _ => None,
    }
}

/// A safetensors header: a little-endian u64 length, then that much JSON.
fn safetensors_header(reader: &mut impl std::io::Read) -> Option<serde_json::Value> {
    let mut length = [0u8; 8];
    reader.read_exact(&mut length).ok()?;
    let length = u64::from_le_bytes(length);
    // The format caps headers at 100 MB; anything bigger is not one.
    if length > 100_000_000 {
        return None;
    }
    let mut json = vec![0u8; length as usize];
    reader.read_exact(&mut json).ok()?;
    serde_json::from_slice(&json).ok()
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
