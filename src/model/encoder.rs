//! The encoder every architecture shares: a stack of post-LN transformer
//! blocks (attention, add & norm, feed-forward, add & norm). Each
//! architecture names the modules ([`LayerNames`]): DistilBERT's q_lin ..
//! output_layer_norm, BERT's and RoBERTa's attention.self.query ..
//! output.LayerNorm.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{Activation, Config};
use super::cpu::{self, KernelPlan};
use super::linear::{Linear, Narrow};
use super::names::LayerNames;
use super::norm::LayerNorm;

#[derive(Debug, Clone)]
pub struct MultiHeadSelfAttention {
    /// The query, key and value projections stacked into one (3*dim, dim) projection, so a
    /// block does one large matmul instead of three small ones. The 1/sqrt(d)
    /// query scaling HF applies to the queries is folded into their rows.
    qkv: Linear,
    output: Linear,
    n_heads: usize,
    head_dim: usize,
    /// Our attention on this kernel; None: candle's ops.
    kernel: Option<cpu::Isa>,
}

impl MultiHeadSelfAttention {
    /// `vb` is the layer's root.
    pub fn load(
        vb: VarBuilder,
        cfg: &Config,
        names: &LayerNames,
        plan: &KernelPlan,
    ) -> Result<Self> {
        let dim = cfg.hidden_size;
        let head_dim = dim / cfg.num_attention_heads;
        let q_lin = candle_nn::linear(dim, dim, vb.pp(names.query))?;
        let k_lin = candle_nn::linear(dim, dim, vb.pp(names.key))?;
        let v_lin = candle_nn::linear(dim, dim, vb.pp(names.value))?;
        let output = Linear::load(dim, dim, vb.pp(names.attention_output), plan)?;
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
            qkv: Linear::new(weight, Some(bias), plan)?,
            output,
            n_heads: cfg.num_attention_heads,
            head_dim,
            kernel: plan.cpu.map(|cpu| cpu.vector),
        })
    }

    pub fn narrow(&mut self, to: Narrow) -> Result<()> {
        self.qkv = self.qkv.narrowed(to)?;
        self.output = self.output.narrowed(to)?;
        Ok(())
    }

    /// The attention output plus `xs`: the block's residual, fused into the
    /// output projection. `xs` is laid out as `sequences` says.
    ///
    /// A batch of more than `SLICE_ROWS` tokens is projected and attended
    /// a slice of whole sequences at a time, each slice's context written
    /// into the batch's in place, so the query/key/value projections (3x
    /// the hidden states) never exist for the whole batch.
    pub fn forward(&self, xs: &Tensor, sequences: Sequences) -> Result<Tensor> {
        let context = match sequences {
            Sequences::Padded { mask_bias } => self.padded_context(xs, mask_bias)?,
            Sequences::Unpadded { lengths } => self.unpadded_context(xs, lengths)?,
        };
        self.output.forward_fused(&context, Some(xs), None)
    }

    /// `xs`: (batch, seq, dim); `mask_bias`: (batch, 1, 1, seq).
    fn padded_context(&self, xs: &Tensor, mask_bias: &Tensor) -> Result<Tensor> {
        let (batch, seq_len, _) = xs.dims3()?;
        let per_slice = (SLICE_ROWS / seq_len.max(1)).max(1);
        let slices = (0..batch)
            .step_by(per_slice)
            .map(|start| (start, (start, per_slice.min(batch - start))));
        in_slices(xs, xs.dims(), slices.collect(), |(start, len)| {
            self.padded_slice_context(
                &xs.narrow(0, start, len)?,
                &mask_bias.narrow(0, start, len)?,
            )
        })
    }

    fn padded_slice_context(&self, xs: &Tensor, mask_bias: &Tensor) -> Result<Tensor> {
        let (batch, seq_len, dim) = xs.dims3()?;
        let qkv = self.qkv.forward(xs)?;
        let fast = self.kernel.and_then(|kernel| {
            cpu::with_cpu_f32(&qkv, |qkv| {
                cpu::with_cpu_f32(mask_bias, |bias| {
                    let shape = ((batch, seq_len), (self.n_heads, self.head_dim));
                    cpu::attention(kernel, qkv, bias, shape.0, shape.1)
                })
            })
            .flatten()
        });
        match fast {
            Some(context) => Tensor::from_vec(context?, (batch, seq_len, dim), xs.device()),
            None => self.generic_attention(&qkv, mask_bias),
        }
    }

    /// `xs`: (tokens, dim), the sequences of `lengths` end to end.
    fn unpadded_context(&self, xs: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let (tokens, dim) = xs.dims2()?;
        if lengths.iter().sum::<usize>() != tokens {
            candle_core::bail!("{tokens} rows for sequences of {lengths:?} tokens");
        }
        // Whole sequences per slice: (first row, (first row, sequences, rows)).
        let mut slices = Vec::new();
        let (mut row, mut first, mut rows) = (0, 0, 0);
        for (i, &len) in lengths.iter().enumerate() {
            if rows > 0 && rows + len > SLICE_ROWS {
                slices.push((row, (row, first..i, rows)));
                (row, first, rows) = (row + rows, i, 0);
            }
            rows += len;
        }
        slices.push((row, (row, first..lengths.len(), rows)));
        in_slices(xs, &[tokens, dim], slices, |(row, sequences, rows)| {
            let qkv = self.qkv.forward(&xs.narrow(0, row, rows)?)?;
            let context = self
                .kernel
                .and_then(|kernel| {
                    cpu::with_cpu_f32(&qkv, |qkv| {
                        let lengths = &lengths[sequences];
                        cpu::attention_unpadded(kernel, qkv, lengths, self.n_heads, self.head_dim)
                    })
                })
                .ok_or_else(|| {
                    candle_core::Error::Msg(
                        "unpadded attention runs on the CPU kernels only".into(),
                    )
                })??;
            Tensor::from_vec(context, (rows, dim), xs.device())
        })
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
    pub fn load(
        vb: VarBuilder,
        cfg: &Config,
        names: &LayerNames,
        plan: &KernelPlan,
    ) -> Result<Self> {
        let (dim, hidden) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            intermediate: Linear::load(dim, hidden, vb.pp(names.intermediate), plan)?,
            output: Linear::load(hidden, dim, vb.pp(names.output), plan)?,
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
    /// A batch of more than `SLICE_ROWS` tokens goes through in slices of
    /// rows, each written into the output in place, so the intermediate
    /// activation (4x the model's width) never exists for the whole batch.
    pub fn forward_with_residual(&self, xs: &Tensor) -> Result<Tensor> {
        let dims = xs.dims().to_vec();
        let dim = dims[dims.len() - 1];
        let rows = xs.elem_count() / dim.max(1);
        if rows <= SLICE_ROWS {
            return self.rows_forward(xs);
        }
        let flat = xs.contiguous()?.reshape((rows, dim))?;
        let slices = (0..rows)
            .step_by(SLICE_ROWS)
            .map(|start| (start, (start, SLICE_ROWS.min(rows - start))));
        in_slices(xs, &[rows, dim], slices.collect(), |(start, len)| {
            self.rows_forward(&flat.narrow(0, start, len)?)
        })?
        .reshape(dims)
    }

    fn rows_forward(&self, xs: &Tensor) -> Result<Tensor> {
        let hidden = self
            .intermediate
            .forward_fused(xs, None, Some(self.activation))?;
        self.output.forward_fused(&hidden, Some(xs), None)
    }
}

/// `slice(part)` for every `(first row, part)` of `parts`, each result
/// written at its first row along dim 0 of one output of `shape` (dtype and
/// device of `like`); a single part's result is the output itself.
fn in_slices<P>(
    like: &Tensor,
    shape: &[usize],
    parts: Vec<(usize, P)>,
    slice: impl Fn(P) -> Result<Tensor>,
) -> Result<Tensor> {
    let mut parts = parts;
    if parts.len() == 1 {
        if let Some((_, part)) = parts.pop() {
            return slice(part);
        }
    }
    let out = Tensor::zeros(shape, like.dtype(), like.device())?;
    for (start, part) in parts {
        out.slice_set(&slice(part)?, 0, start)?;
    }
    Ok(out)
}

/// Tokens per slice of the attention's projections and of the feed-forward
/// (see [`MultiHeadSelfAttention::forward`] and
/// [`FeedForward::forward_with_residual`]): it bounds a forward pass's
/// memory beyond its hidden states, at no cost in throughput
/// (docs/benchmarks.md).
const SLICE_ROWS: usize = 512;

#[derive(Debug, Clone)]
pub struct TransformerBlock {
    attention: MultiHeadSelfAttention,
    attention_norm: LayerNorm,
    ffn: FeedForward,
    output_norm: LayerNorm,
}

impl TransformerBlock {
    /// `vb` is the layer's root.
    pub fn load(
        vb: VarBuilder,
        cfg: &Config,
        names: &LayerNames,
        plan: &KernelPlan,
    ) -> Result<Self> {
        let norm = |name| LayerNorm::load(cfg.hidden_size, cfg.layer_norm_eps, vb.pp(name), plan);
        Ok(Self {
            attention: MultiHeadSelfAttention::load(vb.clone(), cfg, names, plan)?,
            attention_norm: norm(names.attention_norm)?,
            ffn: FeedForward::load(vb.clone(), cfg, names, plan)?,
            output_norm: norm(names.output_norm)?,
        })
    }

    pub fn narrow(&mut self, to: Narrow) -> Result<()> {
        self.attention.narrow(to)?;
        self.ffn.narrow(to)
    }

    /// Takes the hidden states by value so that each intermediate is freed
    /// as soon as the next one exists: the block input once the attention
    /// (which adds it as its residual) is done, the attention output once
    /// it is normalised. A batch's peak memory is then the attention's
    /// (input, projections, context), not the sum of the whole block's.
    pub fn forward(&self, xs: Tensor, sequences: Sequences) -> Result<Tensor> {
        let attended = self.attention.forward(&xs, sequences)?;
        drop(xs);
        let normed = self.attention_norm.forward(&attended)?;
        drop(attended);
        let transformed = self.ffn.forward_with_residual(&normed)?;
        drop(normed);
        self.output_norm.forward(&transformed)
    }
}

#[derive(Debug, Clone)]
pub struct Encoder {
    layers: Vec<TransformerBlock>,
}

impl Encoder {
    /// `vb` holds the layers, numbered from 0.
    pub fn load(
        vb: VarBuilder,
        cfg: &Config,
        names: &LayerNames,
        plan: &KernelPlan,
    ) -> Result<Self> {
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| TransformerBlock::load(vb.pp(i.to_string()), cfg, names, plan))
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    pub fn narrow(&mut self, to: Narrow) -> Result<()> {
        self.layers
            .iter_mut()
            .try_for_each(|layer| layer.narrow(to))
    }

    /// `attention_mask`: (batch, seq) with 1 for real tokens and 0 for
    /// padding, exactly as the tokenizer and HF produce it: the padded path
    /// (candle's generic ops; see [`Encoder::forward_unpadded`] for our
    /// kernels'). Takes the embeddings by value so that each layer frees its
    /// input (see [`TransformerBlock::forward`]).
    pub fn forward(&self, xs: Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let mask_bias = additive_mask(attention_mask)?;
        let mut xs = xs;
        for layer in &self.layers {
            xs = layer.forward(
                xs,
                Sequences::Padded {
                    mask_bias: &mask_bias,
                },
            )?;
        }
        Ok(xs)
    }

    /// `xs`: (tokens, dim), the sequences of `lengths` end to end (see
    /// [`Sequences::Unpadded`]); returns the same layout. CPU kernels only.
    pub fn forward_unpadded(&self, xs: Tensor, lengths: &[usize]) -> Result<Tensor> {
        let mut hidden = xs;
        for layer in &self.layers {
            hidden = layer.forward(hidden, Sequences::Unpadded { lengths })?;
        }
        Ok(hidden)
    }
}

/// How a block's hidden states hold a batch's sequences.
#[derive(Debug, Clone, Copy)]
pub enum Sequences<'a> {
    /// (batch, seq, dim), padded to the longest; `mask_bias` (batch, 1, 1,
    /// seq) is 0 for tokens to attend to and f32::MIN for padding, as HF's
    /// masked_fill.
    Padded { mask_bias: &'a Tensor },
    /// (tokens, dim): the sequences' tokens end to end, sequence i
    /// `lengths[i]` rows long. CPU kernels only.
    Unpadded { lengths: &'a [usize] },
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

    /// A module loaded with random weights. A VarMap's variables start
    /// as zeros or constants (a zero projection would hide any attention
    /// bug), and modules copy their weights at load, so: load once to
    /// create the variables, randomise them, load again.
    fn random<M>(load: impl Fn(VarBuilder) -> Result<M>) -> M {
        let varmap = candle_nn::VarMap::new();
        let vb = || VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        load(vb()).unwrap();
        for var in varmap.all_vars() {
            let values = Tensor::randn(0f32, 0.3, var.shape(), &Device::Cpu).unwrap();
            var.set(&values).unwrap();
        }
        load(vb()).unwrap()
    }

    /// A DistilBERT config of width 32, 2 heads, feed-forward 64.
    fn tiny_config(layers: usize, max_positions: usize) -> Config {
        let json = format!(
            r#"{{"model_type": "distilbert", "dim": 32, "hidden_dim": 64, "n_heads": 2,
                 "n_layers": {layers}, "vocab_size": 10, "max_position_embeddings": {max_positions}}}"#
        );
        Config::from_json(json.as_bytes()).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// A batch of more than SLICE_ROWS tokens is attended a few sequences
    /// at a time; padding and all, that changes no sum, so the result is
    /// the same as one pass over the whole batch.
    #[test]
    fn attention_in_slices_equals_one_pass() {
        let cfg = tiny_config(1, 256);
        let names = crate::model::weight_names(cfg.architecture);
        let attention = random(|vb| {
            MultiHeadSelfAttention::load(vb, &cfg, &names.layer, &KernelPlan::fastest())
        });
        // 5 sequences of 200 tokens: 2 per slice, so slices of 2, 2 and 1.
        let (batch, seq) = (5, 200);
        assert!(batch * seq > SLICE_ROWS && 2 * seq <= SLICE_ROWS && 3 * seq > SLICE_ROWS);
        let xs = Tensor::randn(0f32, 1f32, (batch, seq, 32), &Device::Cpu).unwrap();
        let mask = right_padded_mask(&[200, 13, 1, 150, 77], seq);
        let bias = additive_mask(&mask).unwrap();
        let sliced = attention
            .forward(&xs, Sequences::Padded { mask_bias: &bias })
            .unwrap();
        let whole = attention
            .output
            .forward_fused(
                &attention.padded_slice_context(&xs, &bias).unwrap(),
                Some(&xs),
                None,
            )
            .unwrap();
        let diff = max_abs_diff(&sliced, &whole);
        assert!(diff <= 1e-6, "{diff}");
    }

    fn right_padded_mask(lengths: &[u32], seq: usize) -> Tensor {
        let mask: Vec<u32> = lengths
            .iter()
            .flat_map(|&len| (0..seq as u32).map(move |i| u32::from(i < len)))
            .collect();
        Tensor::from_vec(mask, (lengths.len(), seq), &Device::Cpu).unwrap()
    }

    /// The ragged run on our kernels gives every real token the state the
    /// padded run gives it, in one slice and in several.
    #[test]
    fn unpadded_batch_equals_padded_batch() {
        let cfg = tiny_config(2, 512);
        let names = crate::model::weight_names(cfg.architecture);
        let encoder = random(|vb| Encoder::load(vb, &cfg, &names.layer, &KernelPlan::fastest()));
        // 30 tokens in all: one slice; 763: two (SLICE_ROWS is 512).
        for (seq, lengths) in [(12, vec![12u32, 7, 1, 10]), (300, vec![300, 250, 13, 200])] {
            let xs = Tensor::randn(0f32, 1f32, (lengths.len(), seq, 32), &Device::Cpu).unwrap();
            let mask = right_padded_mask(&lengths, seq);
            let real = |t: &Tensor, b: usize| t.get(b).unwrap().narrow(0, 0, lengths[b] as usize);
            let ragged: Vec<Tensor> = (0..lengths.len()).map(|b| real(&xs, b).unwrap()).collect();
            let lengths_usize: Vec<usize> = lengths.iter().map(|&l| l as usize).collect();
            let unpadded = encoder
                .forward_unpadded(Tensor::cat(&ragged, 0).unwrap(), &lengths_usize)
                .unwrap();
            let padded = encoder.forward(xs, &mask).unwrap();
            let mut row = 0;
            for (b, &len) in lengths_usize.iter().enumerate() {
                let got = unpadded.narrow(0, row, len).unwrap();
                let diff = max_abs_diff(&got, &real(&padded, b).unwrap());
                assert!(diff <= 1e-5, "sequence {b}: {diff}");
                row += len;
            }
        }
    }

    /// A batch taller than SLICE_ROWS goes through in slices; each row's sums
    /// run in the same order either way, so the result is the same.
    #[test]
    fn feed_forward_in_slices_equals_one_pass() {
        let cfg = tiny_config(1, 16);
        let names = crate::model::weight_names(cfg.architecture);
        let ffn = random(|vb| FeedForward::load(vb, &cfg, &names.layer, &KernelPlan::fastest()));
        // 3 x 263 = 789 rows: one full slice and a partial one.
        let xs = Tensor::randn(0f32, 1f32, (3, SLICE_ROWS / 2 + 7, 32), &Device::Cpu).unwrap();
        let sliced = ffn.forward_with_residual(&xs).unwrap();
        let whole = ffn.rows_forward(&xs).unwrap();
        let diff = max_abs_diff(&sliced, &whole);
        assert!(diff <= 1e-6, "{diff}");
    }
}
