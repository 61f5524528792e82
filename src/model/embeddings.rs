//! `distilbert.embeddings`: word + position embeddings, then LayerNorm.
//! DistilBERT has no token-type embeddings.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{embedding, Embedding, VarBuilder};

use super::norm::LayerNorm;

use super::config::Config;

/// HF's `nn.LayerNorm(dim, eps=1e-12)`, used by every norm in DistilBERT.
pub(crate) const LAYER_NORM_EPS: f64 = 1e-12;

#[derive(Debug, Clone)]
pub struct Embeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    layer_norm: LayerNorm,
}

impl Embeddings {
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let word_embeddings = match cfg.word_embedding_dtype {
            Some(dtype) => {
                let shape = (cfg.vocab_size, cfg.dim);
                let table = vb.pp("word_embeddings").get_with_hints_dtype(
                    shape,
                    "weight",
                    Default::default(),
                    dtype,
                )?;
                Embedding::new(table, cfg.dim)
            }
            None => embedding(cfg.vocab_size, cfg.dim, vb.pp("word_embeddings"))?,
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
        let words = self
            .word_embeddings
            .forward(input_ids)?
            .to_dtype(DType::F32)?;
        let positions = self.position_embeddings.forward(&positions)?;
        self.layer_norm.forward(&words.broadcast_add(&positions)?)
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
