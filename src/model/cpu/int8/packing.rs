//! The int8 kernels' own floor: the weights quantized per output channel
//! and packed for one kernel, and the activations quantized per row.

use crate::model::cpu::floor::{parallel_for, Epilogue, PackedWeights, SharedOut, PANEL};

/// Inputs per group of the packed weights and of a quantized row, which is
/// padded with zeros to whole groups: `vpdpbusd` takes 4 inputs per lane.
pub(crate) const QUAD: usize = 4;

/// Which instructions compute the integer sums; the packed weights are laid
/// out for one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512 VNNI: 4 inputs per i32 lane.
    Vnni,
    /// AVX2 and FMA: 2 inputs per i32 lane.
    Avx2,
}

impl Kernel {
    /// Whether this CPU has the kernel's instructions (std caches the
    /// detection): VNNI's AVX-512 F, BW and VNNI; AVX2's AVX2 and FMA (FMA
    /// for the quantization, which must round as VNNI's does).
    pub fn available(self) -> bool {
        match self {
            Self::Vnni => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vnni")
            }
            Self::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
        }
    }

    /// Where the weight of input `k` for output `col` goes in a panel's
    /// bytes, the inputs padded to `padded_in` (whole quads). VNNI: per
    /// quad of inputs, 4 bytes per output (a lane of `vpdpbusd`). AVX2: the
    /// panel's two 16-output halves one after the other (a register tile
    /// reads one half, contiguously), and within a half, per pair of
    /// inputs, 2 bytes per output (a lane of `vpmaddwd` once widened).
    pub(crate) fn packed_offset(self, k: usize, col: usize, padded_in: usize) -> usize {
        match self {
            Self::Vnni => (k / QUAD) * PANEL * QUAD + col * QUAD + k % QUAD,
            Self::Avx2 => {
                let half = PANEL / 2;
                (col / half) * padded_in * half + (k / 2) * half * 2 + (col % half) * 2 + k % 2
            }
        }
    }
}

/// A weight matrix quantized to int8 per output channel and packed for
/// one [`Kernel`].
#[derive(Debug)]
pub struct PackedInt8 {
    /// Panels of PANEL outputs over the inputs padded to whole quads, each
    /// laid out for the kernel (see `Kernel::packed_offset`).
    pub(crate) data: Vec<i8>,
    /// Per output: the dequantization scale and the sum of its int8 weights.
    pub(crate) scales: Vec<f32>,
    pub(crate) column_sums: Vec<i32>,
    pub(crate) in_dim: usize,
    pub(crate) out_dim: usize,
    pub(crate) kernel: Kernel,
}

impl PackedInt8 {
    /// Quantizes f32 weights packed for the f32 kernel, laid out for
    /// `kernel`. Both layouts are panel-major with the same panel width, so
    /// each panel converts on its own, and panels go in parallel: int8
    /// start-up is mostly this.
    pub fn from_f32(weights: &PackedWeights, kernel: Kernel) -> Self {
        let (in_dim, out_dim) = (weights.in_dim(), weights.out_dim());
        let padded_in = in_dim.div_ceil(QUAD) * QUAD;
        let panels = out_dim.div_ceil(PANEL);
        let panel_bytes = PANEL * padded_in;
        let mut data = vec![0i8; panels * panel_bytes];
        let mut scales = vec![1f32; panels * PANEL];
        let mut column_sums = vec![0i32; panels * PANEL];
        let (data_out, scales_out, sums_out) = (
            SharedOut(data.as_mut_ptr()),
            SharedOut(scales.as_mut_ptr()),
            SharedOut(column_sums.as_mut_ptr()),
        );
        parallel_for(panels, |panel| {
            // (in, PANEL) f32, zero-padded past out_dim.
            let source = &weights.data()[panel * PANEL * in_dim..(panel + 1) * PANEL * in_dim];
            // SAFETY: the three buffers hold `panels` blocks of panel_bytes,
            // PANEL and PANEL values; each panel index makes slices of its
            // own block and columns only, which no other task touches.
            let (block, scales, sums) = unsafe {
                (
                    std::slice::from_raw_parts_mut(
                        data_out.ptr().add(panel * panel_bytes),
                        panel_bytes,
                    ),
                    std::slice::from_raw_parts_mut(scales_out.ptr().add(panel * PANEL), PANEL),
                    std::slice::from_raw_parts_mut(sums_out.ptr().add(panel * PANEL), PANEL),
                )
            };
            for (col, scale) in scales.iter_mut().enumerate() {
                let max = (0..in_dim).fold(0f32, |m, k| m.max(source[k * PANEL + col].abs()));
                if max > 0.0 {
                    *scale = max / 127.0;
                }
            }
            let inverse: Vec<f32> = scales.iter().map(|s| 1.0 / s).collect();
            for (k, row) in source.chunks_exact(PANEL).enumerate() {
                for (col, (&w, &inverse)) in row.iter().zip(&inverse).enumerate() {
                    // Round half away from zero, as f32::round, without its
                    // libm call (a third of int8 start-up); |w·inverse| <= 127.
                    let scaled = w * inverse;
                    let q = (scaled + 0.5f32.copysign(scaled)) as i8;
                    block[kernel.packed_offset(k, col, padded_in)] = q;
                    sums[col] += q as i32;
                }
            }
        });
        scales.truncate(out_dim);
        column_sums.truncate(out_dim);
        Self {
            data,
            scales,
            column_sums,
            in_dim,
            out_dim,
            kernel,
        }
    }

    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// The kernel these weights are laid out for.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }
}

/// One row's quantization from its range: (scale, zero point), the range
/// widened to hold 0 mapping onto 0..=255. Both kernels take it from here,
/// so they quantize every value alike.
pub(crate) fn row_parameters(min: f32, max: f32) -> (f32, f32) {
    let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
    (scale, (-min / scale).round().clamp(0.0, 255.0))
}

/// Activations quantized per row, each padded with zeros to whole quads:
/// bytes for VNNI, 16-bit for AVX2 (whose `vpmaddwd` multiplies i16).
pub(crate) struct QuantizedRows<T> {
    pub(crate) data: Vec<T>,
    pub(crate) stride: usize,
    pub(crate) scales: Vec<f32>,
    pub(crate) zeros: Vec<i32>,
}

/// Per-row asymmetric quantization by `quantize_row` (one kernel's, which
/// writes a row's values and returns its (scale, zero point)). Rows are
/// spread over the pool when `parallel`.
///
/// # Safety
/// The CPU must support `quantize_row`'s target features, and `x` must hold
/// `rows * in_dim` values.
pub(crate) unsafe fn quantize_rows<T>(
    x: &[f32],
    rows: usize,
    in_dim: usize,
    parallel: bool,
    quantize_row: unsafe fn(&[f32], *mut T) -> (f32, i32),
) -> QuantizedRows<T> {
    let stride = in_dim.div_ceil(QUAD) * QUAD;
    // Uninitialised but for the quad padding, zeroed here; quantize_row
    // writes the rest (see `set_len`).
    let mut data = Vec::<T>::with_capacity(rows * stride);
    let mut params = vec![(0f32, 0i32); rows];
    let (data_out, params_out) = (SharedOut(data.as_mut_ptr()), SharedOut(params.as_mut_ptr()));
    let quantize = |r: usize| {
        // SAFETY: the CPU runs quantize_row and x holds rows*in_dim values
        // (this function's contract); row r's values (inside the
        // rows*stride capacity) and parameters are written by this call alone.
        unsafe {
            let out = data_out.ptr().add(r * stride);
            out.add(in_dim).write_bytes(0, stride - in_dim);
            *params_out.ptr().add(r) = quantize_row(&x[r * in_dim..(r + 1) * in_dim], out);
        }
    };
    if parallel {
        parallel_for(rows, quantize);
    } else {
        (0..rows).for_each(quantize);
    }
    // SAFETY: every row's values, padding included, were written above
    // (rows * stride is the capacity).
    unsafe { data.set_len(rows * stride) };
    QuantizedRows {
        data,
        stride,
        scales: params.iter().map(|p| p.0).collect(),
        zeros: params.iter().map(|p| p.1).collect(),
    }
}

/// A kernel's task: the block of rows (first, count) against one panel of
/// PANEL outputs, from the quantized rows to the finished f32 outputs.
///
/// # Safety
/// The CPU must support the kernel; `x` must hold the quantized rows of a
/// (rows, in) input matching `weights`, laid out for this kernel; `bias`
/// and the epilogue's residual must match the output; the block's rows and
/// panel must lie inside them; and no other thread may write the block.
pub(crate) type BlockFn<T> = unsafe fn(
    &QuantizedRows<T>,
    &PackedInt8,
    Option<&[f32]>,
    &Epilogue,
    SharedOut,
    (usize, usize),
    usize,
);

/// One kernel's row quantizer and block task.
pub(crate) type IntKernel<T> = (unsafe fn(&[f32], *mut T) -> (f32, i32), BlockFn<T>);
