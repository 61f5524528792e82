//! LayerNorm with HF's weight names (`weight`, `bias`) and eps, over the
//! last dimension.
//!
//! Why not candle_nn's: on CPU it spreads rows over rayon's pool, whose
//! threads sleep between calls; twelve wake-ups per forward pass cost more
//! than the normalisation. Ours runs on the same spinning pool as the
//! matmuls ([`cpu::layer_norm`]), and defers to candle elsewhere.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::cpu;

#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    /// Our rows on this kernel; None: candle's op.
    kernel: Option<cpu::Isa>,
}

impl LayerNorm {
    /// Old BERT checkpoints name the affine parameters `gamma` and `beta`;
    /// transformers renames them on load, and so do we.
    pub fn load(dim: usize, eps: f64, vb: VarBuilder, plan: &cpu::KernelPlan) -> Result<Self> {
        let (weight, bias) = match vb.contains_tensor("weight") || !vb.contains_tensor("gamma") {
            true => ("weight", "bias"),
            false => ("gamma", "beta"),
        };
        Ok(Self {
            weight: vb.get(dim, weight)?,
            bias: vb.get(dim, bias)?,
            eps,
            kernel: plan.cpu.map(|cpu| cpu.vector),
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = xs.contiguous()?;
        let fast = self.kernel.and_then(|kernel| {
            cpu::with_cpu_f32(&xs, |x| {
                cpu::with_cpu_f32(&self.weight, |weight| {
                    cpu::with_cpu_f32(&self.bias, |bias| {
                        cpu::layer_norm(x, weight, bias, self.eps as f32, kernel)
                    })
                })
            })
            .flatten()
            .flatten()
        });
        match fast {
            Some(normed) => Tensor::from_vec(normed?, xs.shape(), xs.device()),
            None => candle_nn::ops::layer_norm(&xs, &self.weight, &self.bias, self.eps as f32),
        }
    }
}
