//! `distilbert.embeddings`: word + position embeddings, then LayerNorm.
//! DistilBERT has no token-type embeddings.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{embedding, Embedding, VarBuilder};

use super::norm::LayerNorm;

use super::config::{Config, WordTable};

/// HF's `nn.LayerNorm(dim, eps=1e-12)`, used by every norm in DistilBERT.
pub(crate) const LAYER_NORM_EPS: f64 = 1e-12;

#[derive(Debug, Clone)]
pub struct Embeddings {
    word_embeddings: WordEmbeddings,
    position_embeddings: Embedding,
    layer_norm: LayerNorm,
}

impl Embeddings {
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let word_embeddings = match cfg.word_table {
            WordTable::F32 => WordEmbeddings::Loaded(embedding(
                cfg.vocab_size,
                cfg.dim,
                vb.pp("word_embeddings"),
            )?),
            WordTable::Half(dtype) => {
                let shape = (cfg.vocab_size, cfg.dim);
                let table = vb.pp("word_embeddings").get_with_hints_dtype(
                    shape,
                    "weight",
                    Default::default(),
                    dtype,
                )?;
                WordEmbeddings::Loaded(Embedding::new(table, cfg.dim))
            }
            WordTable::Static { dtype, bytes } => {
                if bytes.len() != cfg.vocab_size * cfg.dim * 2 {
                    return Err(candle_core::Error::Msg(format!(
                        "word_embeddings.weight holds {} bytes, not {} x {} half floats",
                        bytes.len(),
                        cfg.vocab_size,
                        cfg.dim
                    )));
                }
                WordEmbeddings::Static {
                    dtype,
                    bytes,
                    dim: cfg.dim,
                }
            }
        };
        let position_embeddings =
            if cfg.sinusoidal_pos_embds && !vb.contains_tensor("position_embeddings.weight") {
                // HF saves the sinusoidal table as a weight, so checkpoints
                // normally carry it; rebuild it only when a file left it out.
                let table = sinusoidal_table(cfg.max_position_embeddings, cfg.dim, vb.device())?;
                Embedding::new(table, cfg.dim)
            } else {
                embedding(
                    cfg.max_position_embeddings,
                    cfg.dim,
                    vb.pp("position_embeddings"),
                )?
            };
        let layer_norm = LayerNorm::load(cfg.dim, LAYER_NORM_EPS, vb.pp("LayerNorm"))?;
        Ok(Self {
            word_embeddings,
            position_embeddings,
            layer_norm,
        })
    }
}

impl Module for Embeddings {
    /// `input_ids`: (batch, seq) u32. Returns (batch, seq, dim).
    fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (_batch, seq_len) = input_ids.dims2()?;
        let positions = Tensor::arange(0u32, seq_len as u32, input_ids.device())?;
        let words = self.word_embeddings.forward(input_ids)?;
        let positions = self.position_embeddings.forward(&positions)?;
        self.layer_norm.forward(&words.broadcast_add(&positions)?)
    }
}

/// `word_embeddings.weight`, held as [`WordTable`] says.
#[derive(Debug, Clone)]
enum WordEmbeddings {
    Loaded(Embedding),
    Static {
        dtype: DType,
        bytes: &'static [u8],
        dim: usize,
    },
}

impl WordEmbeddings {
    /// (batch, seq) ids to (batch, seq, dim) f32 rows.
    fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (dtype, bytes, dim) = match self {
            Self::Loaded(table) => return table.forward(input_ids)?.to_dtype(DType::F32),
            Self::Static { dtype, bytes, dim } => (*dtype, *bytes, *dim),
        };
        let vocab = bytes.len() / (2 * dim);
        let ids = input_ids.flatten_all()?.to_vec1::<u32>()?;
        let mut rows = Vec::with_capacity(ids.len() * dim);
        for id in ids {
            let id = id as usize;
            if id >= vocab {
                return Err(candle_core::Error::Msg(format!(
                    "token id {id} is outside the vocabulary ({vocab})"
                )));
            }
            let row = bytes[2 * id * dim..2 * (id + 1) * dim].chunks_exact(2);
            let half = |pair: &[u8]| u16::from_le_bytes([pair[0], pair[1]]);
            match dtype {
                DType::BF16 => rows.extend(row.map(|p| half::bf16::from_bits(half(p)).to_f32())),
                _ => rows.extend(row.map(|p| half::f16::from_bits(half(p)).to_f32())),
            }
        }
        let (batch, seq) = input_ids.dims2()?;
        Tensor::from_vec(rows, (batch, seq, dim), input_ids.device())
    }
}

/// transformers' `create_sinusoidal_embeddings`: sin on even columns, cos on
/// odd ones, with angle `pos / 10000^(2*(j/2)/dim)`.
fn sinusoidal_table(positions: usize, dim: usize, device: &Device) -> Result<Tensor> {
    let mut table = vec![0f32; positions * dim];
    for pos in 0..positions {
        for j in 0..dim {
            let angle = pos as f64 / 10000f64.powf(2.0 * (j / 2) as f64 / dim as f64);
            table[pos * dim + j] = if j % 2 == 0 { angle.sin() } else { angle.cos() } as f32;
        }
    }
    Tensor::from_vec(table, (positions, dim), device)?.to_dtype(DType::F32)
}
