//! The encoder every architecture shares: a stack of post-LN transformer
//! blocks (attention, add & norm, feed-forward, add & norm). Each
//! architecture names the modules ([`LayerNames`]): DistilBERT's q_lin ..
//! output_layer_norm, BERT's and RoBERTa's attention.self.query ..
//! output.LayerNorm.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{Activation, Config};
use super::cpu;
use super::linear::{Linear, Narrow};
use super::norm::LayerNorm;
use super::LayerNames;

#[derive(Debug, Clone)]
pub struct MultiHeadSelfAttention {
    /// The query, key and value projections stacked into one (3*dim, dim) projection, so a
    /// block does one large matmul instead of three small ones. The 1/sqrt(d)
    /// query scaling HF applies to the queries is folded into their rows.
    qkv: Linear,
    output: Linear,
    n_heads: usize,
    head_dim: usize,
}

impl MultiHeadSelfAttention {
    /// `vb` is the layer's root.
    pub fn load(vb: VarBuilder, cfg: &Config, names: &LayerNames) -> Result<Self> {
        let dim = cfg.hidden_size;
        let head_dim = dim / cfg.num_attention_heads;
        let q_lin = candle_nn::linear(dim, dim, vb.pp(names.query))?;
        let k_lin = candle_nn::linear(dim, dim, vb.pp(names.key))?;
        let v_lin = candle_nn::linear(dim, dim, vb.pp(names.value))?;
        let output = Linear::load(dim, dim, vb.pp(names.attention_output))?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let weight = Tensor::cat(
            &[
                (q_lin.weight() * scale)?,
                k_lin.weight().clone(),
                v_lin.weight().clone(),
            ],
            0,
        )?;
        let bias = Tensor::cat(
            &[
                (bias_of(&q_lin)? * scale)?,
                bias_of(&k_lin)?,
                bias_of(&v_lin)?,
            ],
            0,
        )?;
        Ok(Self {
            qkv: Linear::new(weight, Some(bias))?,
            output,
            n_heads: cfg.num_attention_heads,
            head_dim,
        })
    }

    pub fn narrow(&mut self, to: Narrow) -> Result<()> {
        self.qkv = self.qkv.narrowed(to)?;
        self.output = self.output.narrowed(to)?;
        Ok(())
    }

    /// `xs`: (batch, seq, dim); `mask_bias`: (batch, 1, 1, seq), 0 for tokens
    /// to attend to and f32::MIN for padding, as HF's masked_fill. Returns
    /// the attention output plus `xs`: the block's residual, fused into
    /// the output projection.
    pub fn forward(&self, xs: &Tensor, mask_bias: &Tensor) -> Result<Tensor> {
        let (batch, seq_len, dim) = xs.dims3()?;
        let qkv = self.qkv.forward(xs)?;
        let fast = cpu::with_cpu_f32(&qkv, |qkv| {
            cpu::with_cpu_f32(mask_bias, |bias| {
                cpu::attention(qkv, bias, batch, seq_len, self.n_heads, self.head_dim)
            })
        })
        .flatten();
        let context = match fast {
            Some(context) => Tensor::from_vec(context?, (batch, seq_len, dim), xs.device())?,
            None => self.generic_attention(&qkv, mask_bias)?,
        };
        self.output.forward_fused(&context, Some(xs), None)
    }

    /// Attention with candle's ops, for devices and dtypes without a fast path.
    fn generic_attention(&self, qkv: &Tensor, mask_bias: &Tensor) -> Result<Tensor> {
        let (batch, seq_len, three_dim) = qkv.dims3()?;
        let qkv = qkv
            .reshape((batch, seq_len, 3, self.n_heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let (query, key, value) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let scores = query.matmul(&key.t()?)?.broadcast_add(mask_bias)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        weights
            .matmul(&value)?
            .transpose(1, 2)?
            .reshape((batch, seq_len, three_dim / 3))
    }
}

fn bias_of(layer: &candle_nn::Linear) -> Result<Tensor> {
    layer
        .bias()
        .cloned()
        .ok_or_else(|| candle_core::Error::Msg("linear layer without a bias".into()))
}

#[derive(Debug, Clone)]
pub struct FeedForward {
    intermediate: Linear,
    output: Linear,
    activation: Activation,
}

impl FeedForward {
    /// `vb` is the layer's root.
    pub fn load(vb: VarBuilder, cfg: &Config, names: &LayerNames) -> Result<Self> {
        let (dim, hidden) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            intermediate: Linear::load(dim, hidden, vb.pp(names.intermediate))?,
            output: Linear::load(hidden, dim, vb.pp(names.output))?,
            activation: cfg.hidden_act,
        })
    }

    pub fn narrow(&mut self, to: Narrow) -> Result<()> {
        self.intermediate = self.intermediate.narrowed(to)?;
        self.output = self.output.narrowed(to)?;
        Ok(())
    }

    /// output(activation(intermediate(xs))) + xs: the residual is fused
    /// into the output projection and the activation into the intermediate one.
    /// A batch of more than [`FFN_ROWS`] tokens goes through in slices of
    /// rows, each written into the output in place, so the intermediate
    /// activation (4x the model's width) never exists for the whole batch.
    pub fn forward_with_residual(&self, xs: &Tensor) -> Result<Tensor> {
        let dims = xs.dims().to_vec();
        let dim = dims[dims.len() - 1];
        let rows = xs.elem_count() / dim.max(1);
        if rows <= FFN_ROWS {
            return self.rows_forward(xs);
        }
        let flat = xs.contiguous()?.reshape((rows, dim))?;
        let out = Tensor::zeros((rows, dim), xs.dtype(), xs.device())?;
        for start in (0..rows).step_by(FFN_ROWS) {
            let slice = flat.narrow(0, start, FFN_ROWS.min(rows - start))?;
            out.slice_set(&self.rows_forward(&slice)?, 0, start)?;
        }
        out.reshape(dims)
    }

    fn rows_forward(&self, xs: &Tensor) -> Result<Tensor> {
        let hidden = self
            .intermediate
            .forward_fused(xs, None, Some(self.activation))?;
        self.output.forward_fused(&hidden, Some(xs), None)
    }
}

/// Tokens per slice of a feed-forward pass (see
/// [`FeedForward::forward_with_residual`]): 2048 x 3072 f32 is 25 MB at most,
/// against 200 MB for a 16384-token batch of a base-size model, and a slice
/// this tall keeps every kernel's tiles and threads as busy as a whole batch.
const FFN_ROWS: usize = 2048;

#[derive(Debug, Clone)]
pub struct TransformerBlock {
    attention: MultiHeadSelfAttention,
    attention_norm: LayerNorm,
    ffn: FeedForward,
    output_norm: LayerNorm,
}

impl TransformerBlock {
    /// `vb` is the layer's root.
    pub fn load(vb: VarBuilder, cfg: &Config, names: &LayerNames) -> Result<Self> {
        let norm = |name| LayerNorm::load(cfg.hidden_size, cfg.layer_norm_eps, vb.pp(name));
        Ok(Self {
            attention: MultiHeadSelfAttention::load(vb.clone(), cfg, names)?,
            attention_norm: norm(names.attention_norm)?,
            ffn: FeedForward::load(vb.clone(), cfg, names)?,
            output_norm: norm(names.output_norm)?,
        })
    }

    pub fn narrow(&mut self, to: Narrow) -> Result<()> {
        self.attention.narrow(to)?;
        self.ffn.narrow(to)
    }

    pub fn forward(&self, xs: &Tensor, mask_bias: &Tensor) -> Result<Tensor> {
        let attended = self.attention.forward(xs, mask_bias)?;
        let xs = self.attention_norm.forward(&attended)?;
        let transformed = self.ffn.forward_with_residual(&xs)?;
        self.output_norm.forward(&transformed)
    }
}

#[derive(Debug, Clone)]
pub struct Encoder {
    layers: Vec<TransformerBlock>,
}

impl Encoder {
    /// `vb` holds the layers, numbered from 0.
    pub fn load(vb: VarBuilder, cfg: &Config, names: &LayerNames) -> Result<Self> {
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| TransformerBlock::load(vb.pp(i.to_string()), cfg, names))
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    pub fn narrow(&mut self, to: Narrow) -> Result<()> {
        self.layers
            .iter_mut()
            .try_for_each(|layer| layer.narrow(to))
    }

    /// `attention_mask`: (batch, seq) with 1 for real tokens and 0 for
    /// padding, exactly as the tokenizer and HF produce it.
    pub fn forward(&self, xs: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let mask_bias = additive_mask(attention_mask)?;
        let mut xs = xs.clone();
        for layer in &self.layers {
            xs = layer.forward(&xs, &mask_bias)?;
        }
        Ok(xs)
    }
}

/// (batch, seq) 1/0 mask to a (batch, 1, 1, seq) bias: 1 -> 0, 0 -> f32::MIN.
/// f32::MAX + f32::MIN is exactly 0, so kept tokens get no perturbation.
fn additive_mask(attention_mask: &Tensor) -> Result<Tensor> {
    let (batch, seq_len) = attention_mask.dims2()?;
    attention_mask
        .to_dtype(candle_core::DType::F32)?
        .affine(f32::MAX as f64, f32::MIN as f64)?
        .reshape((batch, 1, 1, seq_len))
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::model::WeightNames;

    /// A batch taller than FFN_ROWS goes through in slices; each row's sums
    /// run in the same order either way, so the result is the same.
    #[test]
    fn feed_forward_in_slices_equals_one_pass() {
        let cfg = Config::from_json(
            br#"{"model_type": "distilbert", "dim": 32, "hidden_dim": 64, "n_heads": 2,
                 "n_layers": 1, "vocab_size": 10, "max_position_embeddings": 16}"#,
        )
        .unwrap();
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let names = WeightNames::of(cfg.architecture);
        let ffn = FeedForward::load(vb, &cfg, &names.layer).unwrap();
        // 3 x 1031 = 3093 rows: one full slice and a partial one.
        let xs = Tensor::randn(0f32, 1f32, (3, FFN_ROWS / 2 + 7, 32), &Device::Cpu).unwrap();
        let sliced = ffn.forward_with_residual(&xs).unwrap();
        let whole = ffn.rows_forward(&xs).unwrap();
        assert_eq!(sliced.dims(), whole.dims());
        let diff: f32 = (sliced - whole)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff <= 1e-6, "{diff}");
    }
}
