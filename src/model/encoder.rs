//! `distilbert.transformer`: a stack of post-LN transformer blocks, with
//! DistilBERT's weight names (q_lin/k_lin/v_lin/out_lin, sa_layer_norm,
//! ffn.lin1/lin2, output_layer_norm).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{Activation, Config};
use super::cpu;
use super::embeddings::LAYER_NORM_EPS;
use super::linear::Linear;
use super::norm::LayerNorm;

#[derive(Debug, Clone)]
pub struct MultiHeadSelfAttention {
    /// q_lin, k_lin and v_lin stacked into one (3*dim, dim) projection, so a
    /// block does one large matmul instead of three small ones. The 1/sqrt(d)
    /// query scaling HF applies after q_lin is folded into the q rows.
    qkv: Linear,
    out_lin: Linear,
    n_heads: usize,
    head_dim: usize,
}

impl MultiHeadSelfAttention {
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let head_dim = cfg.dim / cfg.n_heads;
        let q_lin = candle_nn::linear(cfg.dim, cfg.dim, vb.pp("q_lin"))?;
        let k_lin = candle_nn::linear(cfg.dim, cfg.dim, vb.pp("k_lin"))?;
        let v_lin = candle_nn::linear(cfg.dim, cfg.dim, vb.pp("v_lin"))?;
        let out_lin = Linear::load(cfg.dim, cfg.dim, vb.pp("out_lin"))?;
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
            out_lin,
            n_heads: cfg.n_heads,
            head_dim,
        })
    }

    pub fn quantize_int8(&mut self) -> Result<()> {
        self.qkv = self.qkv.to_int8()?;
        self.out_lin = self.out_lin.to_int8()?;
        Ok(())
    }

    /// `xs`: (batch, seq, dim); `mask_bias`: (batch, 1, 1, seq), 0 for tokens
    /// to attend to and f32::MIN for padding, as HF's masked_fill. Returns
    /// the attention output plus `xs`: the block's residual, fused into
    /// out_lin.
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
        self.out_lin.forward_fused(&context, Some(xs), None)
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
    lin1: Linear,
    lin2: Linear,
    activation: Activation,
}

impl FeedForward {
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        Ok(Self {
            lin1: Linear::load(cfg.dim, cfg.hidden_dim, vb.pp("lin1"))?,
            lin2: Linear::load(cfg.hidden_dim, cfg.dim, vb.pp("lin2"))?,
            activation: cfg.activation,
        })
    }

    pub fn quantize_int8(&mut self) -> Result<()> {
        self.lin1 = self.lin1.to_int8()?;
        self.lin2 = self.lin2.to_int8()?;
        Ok(())
    }

    /// lin2(activation(lin1(xs))) + xs: the residual is fused into lin2 and
    /// the activation into lin1.
    pub fn forward_with_residual(&self, xs: &Tensor) -> Result<Tensor> {
        let hidden = self.lin1.forward_fused(xs, None, Some(self.activation))?;
        self.lin2.forward_fused(&hidden, Some(xs), None)
    }
}

#[derive(Debug, Clone)]
pub struct TransformerBlock {
    attention: MultiHeadSelfAttention,
    sa_layer_norm: LayerNorm,
    ffn: FeedForward,
    output_layer_norm: LayerNorm,
}

impl TransformerBlock {
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        Ok(Self {
            attention: MultiHeadSelfAttention::load(vb.pp("attention"), cfg)?,
            sa_layer_norm: LayerNorm::load(cfg.dim, LAYER_NORM_EPS, vb.pp("sa_layer_norm"))?,
            ffn: FeedForward::load(vb.pp("ffn"), cfg)?,
            output_layer_norm: LayerNorm::load(
                cfg.dim,
                LAYER_NORM_EPS,
                vb.pp("output_layer_norm"),
            )?,
        })
    }

    pub fn quantize_int8(&mut self) -> Result<()> {
        self.attention.quantize_int8()?;
        self.ffn.quantize_int8()
    }

    pub fn forward(&self, xs: &Tensor, mask_bias: &Tensor) -> Result<Tensor> {
        let attended = self.attention.forward(xs, mask_bias)?;
        let xs = self.sa_layer_norm.forward(&attended)?;
        let transformed = self.ffn.forward_with_residual(&xs)?;
        self.output_layer_norm.forward(&transformed)
    }
}

#[derive(Debug, Clone)]
pub struct Transformer {
    layers: Vec<TransformerBlock>,
}

impl Transformer {
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let layers = (0..cfg.n_layers)
            .map(|i| TransformerBlock::load(vb.pp(format!("layer.{i}")), cfg))
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    pub fn quantize_int8(&mut self) -> Result<()> {
        self.layers
            .iter_mut()
            .try_for_each(TransformerBlock::quantize_int8)
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
