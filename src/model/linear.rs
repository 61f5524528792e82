//! A linear layer that is dense f32 (exact, the default), bf16
//! (`--precision bf16`, [`cpu::bf16`], CPUs with AVX512_BF16) or int8
//! (`--precision int8`). int8 on x86 CPUs with AVX-512 VNNI or AVX2 is our
//! kernel ([`cpu::int8`]: per-channel int8 weights, per-row uint8
//! activations, as ONNX Runtime's dynamic quantization); elsewhere candle's
//! Q8_0 (blocks of 32 with an f16 scale) and its quantized matmul.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use std::sync::Arc;

use super::config::Activation;
use super::cpu;

/// Q8_0 quantizes rows in blocks of this many values.
const Q8_BLOCK: usize = 32;

/// A number type narrower than f32 for the encoder's linears, with the
/// kernel the plan chose for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Narrow {
    /// On our int8 kernel, or candle's Q8_0 where None.
    Int8(Option<cpu::Int8Kernel>),
    #[cfg(target_arch = "x86_64")]
    Bf16(cpu::bf16::Kernel),
}

#[derive(Debug, Clone)]
pub enum Linear {
    /// CPU f32: weights packed once for `kernel` ([`cpu::linear_packed`]).
    Packed {
        weights: Arc<cpu::PackedWeights>,
        bias: Option<Tensor>,
        kernel: cpu::Isa,
    },
    /// Other devices: `weight_t` is the (in, out) transpose of HF's (out, in)
    /// weight, made contiguous once at load.
    Dense {
        weight_t: Tensor,
        bias: Option<Tensor>,
    },
    /// int8 on x86 CPUs with one of our int8 kernels, packed for
    /// [`cpu::linear_int8`].
    #[cfg(target_arch = "x86_64")]
    Int8Packed {
        weights: Arc<cpu::int8::PackedInt8>,
        bias: Option<Tensor>,
    },
    /// bf16 weights, packed for [`cpu::linear_bf16`].
    #[cfg(target_arch = "x86_64")]
    Bf16 {
        weights: Arc<cpu::bf16::PackedBf16>,
        bias: Option<Tensor>,
        kernel: cpu::bf16::Kernel,
    },
    /// int8 elsewhere: candle's Q8_0.
    Int8 {
        weight: QMatMul,
        bias: Option<Tensor>,
    },
}

impl Linear {
    pub fn load(
        in_dim: usize,
        out_dim: usize,
        vb: VarBuilder,
        plan: &cpu::KernelPlan,
    ) -> Result<Self> {
        let layer = candle_nn::linear(in_dim, out_dim, vb)?;
        Self::new(layer.weight().clone(), layer.bias().cloned(), plan)
    }

    /// Packed for the plan's f32 kernel where it has CPU kernels; else dense.
    pub fn new(weight: Tensor, bias: Option<Tensor>, plan: &cpu::KernelPlan) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        if let Some(kernels) = plan.cpu {
            let packed = cpu::with_cpu_f32(&weight.contiguous()?, |w| {
                cpu::PackedWeights::pack(w, out_dim, in_dim)
            });
            if let Some(packed) = packed {
                return Ok(Self::Packed {
                    weights: Arc::new(packed?),
                    bias,
                    kernel: kernels.linear.kernel,
                });
            }
        }
        // Only the transpose is kept, so the weights are held once.
        let weight_t = weight.t()?.contiguous()?;
        Ok(Self::Dense { weight_t, bias })
    }

    /// This layer in a narrower number type.
    pub fn narrowed(&self, to: Narrow) -> Result<Self> {
        match to {
            Narrow::Int8(kernel) => self.to_int8(kernel),
            #[cfg(target_arch = "x86_64")]
            Narrow::Bf16(kernel) => Ok(match self {
                Self::Packed { weights, bias, .. } => Self::Bf16 {
                    weights: Arc::new(cpu::bf16::PackedBf16::from_f32(weights)),
                    bias: bias.clone(),
                    kernel,
                },
                // Only packed CPU f32 layers have a bf16 kernel.
                _ => self.clone(),
            }),
        }
    }

    /// The int8 form of a dense layer: packed for `kernel`, our int8 kernel,
    /// where there is one; otherwise Q8_0, where layers whose input width is
    /// not a multiple of its 32-value block stay dense.
    pub fn to_int8(&self, kernel: Option<cpu::Int8Kernel>) -> Result<Self> {
        let (weight, bias) = match self {
            Self::Dense { weight_t, bias } => (weight_t.t()?.contiguous()?, bias),
            Self::Packed { weights, bias, .. } => {
                // Packed weights are CPU f32: our int8 kernels convert them
                // panel by panel; Q8_0 needs them back in HF's (out, in) layout.
                #[cfg(target_arch = "x86_64")]
                if let Some(kernel) = kernel {
                    return Ok(Self::Int8Packed {
                        weights: Arc::new(cpu::int8::PackedInt8::from_f32(weights, kernel)),
                        bias: bias.clone(),
                    });
                }
                let shape = (weights.out_dim(), weights.in_dim());
                let weight = Tensor::from_vec(weights.unpack(), shape, &candle_core::Device::Cpu)?;
                (weight, bias)
            }
            Self::Int8 { .. } => return Ok(self.clone()),
            #[cfg(target_arch = "x86_64")]
            Self::Int8Packed { .. } | Self::Bf16 { .. } => return Ok(self.clone()),
        };
        let (_, in_dim) = weight.dims2()?;
        if !in_dim.is_multiple_of(Q8_BLOCK) {
            return Ok(self.clone());
        }
        let quantized = QTensor::quantize(&weight, GgmlDType::Q8_0)?;
        Ok(Self::Int8 {
            weight: QMatMul::from_qtensor(quantized)?,
            bias: bias.clone(),
        })
    }
}

impl Linear {
    /// `activation(xs · Wᵀ + bias + residual)`, the residual being of the
    /// output's shape. On the packed CPU path the residual add and the
    /// activation happen on the kernel's accumulators (see
    /// [`cpu::Epilogue`]); elsewhere they are candle ops.
    pub fn forward_fused(
        &self,
        xs: &Tensor,
        residual: Option<&Tensor>,
        activation: Option<Activation>,
    ) -> Result<Tensor> {
        // Every kernel takes the input as one contiguous (rows, in) matrix.
        let dims = xs.dims().to_vec();
        let in_dim = dims[dims.len() - 1];
        let rows = xs.elem_count() / in_dim;
        let matrix = xs.contiguous()?.reshape((rows, in_dim))?;
        let mut out_dims = dims;
        let last = out_dims.len() - 1;
        let out = match self {
            Self::Packed {
                weights,
                bias,
                kernel,
            } => {
                out_dims[last] = weights.out_dim();
                return run_on_cpu(&matrix, bias, residual, activation, out_dims, |x, b, e| {
                    cpu::linear_packed(x, weights, b, rows, e, *kernel)
                });
            }
            #[cfg(target_arch = "x86_64")]
            Self::Int8Packed { weights, bias } => {
                out_dims[last] = weights.out_dim();
                return run_on_cpu(&matrix, bias, residual, activation, out_dims, |x, b, e| {
                    cpu::linear_int8(x, weights, b, rows, e)
                });
            }
            #[cfg(target_arch = "x86_64")]
            Self::Bf16 {
                weights,
                bias,
                kernel,
            } => {
                out_dims[last] = weights.out_dim();
                return run_on_cpu(&matrix, bias, residual, activation, out_dims, |x, b, e| {
                    cpu::linear_bf16(x, weights, b, rows, e, *kernel)
                });
            }
            Self::Dense { weight_t, bias } => with_bias(matrix.matmul(weight_t)?, bias.as_ref())?,
            Self::Int8 { weight, bias } => with_bias(weight.forward(&matrix)?, bias.as_ref())?,
        };
        out_dims[last] = out.dim(1)?;
        let mut out = out.reshape(out_dims)?;
        if let Some(residual) = residual {
            out = (out + residual)?;
        }
        match activation {
            Some(Activation::Gelu) => out.gelu_erf(),
            Some(Activation::GeluTanh) => out.gelu(),
            Some(Activation::Relu) => out.relu(),
            Some(Activation::Tanh) => out.tanh(),
            None => Ok(out),
        }
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_fused(xs, None, None)
    }
}

/// Calls a CPU kernel with the f32 buffers of the input, bias and residual,
/// and shapes its output as `out_dims`.
fn run_on_cpu(
    matrix: &Tensor,
    bias: &Option<Tensor>,
    residual: Option<&Tensor>,
    activation: Option<Activation>,
    out_dims: Vec<usize>,
    kernel: impl FnOnce(
        &[f32],
        Option<&[f32]>,
        cpu::Epilogue,
    ) -> std::result::Result<Vec<f32>, cpu::OperandError>,
) -> Result<Tensor> {
    let residual = residual.map(Tensor::contiguous).transpose()?;
    let out = with_optional_f32(bias.as_ref(), |bias| {
        with_optional_f32(residual.as_ref(), |residual| {
            cpu::with_cpu_f32(matrix, |x| {
                let epilogue = cpu::Epilogue {
                    residual,
                    activation,
                };
                kernel(x, bias, epilogue)
            })
        })
    })
    .flatten()
    .flatten()
    .ok_or_else(|| candle_core::Error::Msg("CPU kernels need CPU f32 tensors".into()))?;
    Tensor::from_vec(out?, out_dims, matrix.device())
}

/// `f` of the tensor's f32 buffer, or of None when there is no tensor;
/// None overall when the tensor is not contiguous CPU f32.
fn with_optional_f32<R>(tensor: Option<&Tensor>, f: impl FnOnce(Option<&[f32]>) -> R) -> Option<R> {
    match tensor {
        Some(tensor) => cpu::with_cpu_f32(tensor, |data| f(Some(data))),
        None => Some(f(None)),
    }
}

fn with_bias(out: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(bias) => out.broadcast_add(bias),
        None => Ok(out),
    }
}
