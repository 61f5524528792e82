//! The embeddings: word + token type (BERT, RoBERTa) + position, then
//! LayerNorm. DistilBERT has no token types; RoBERTa counts positions from
//! after its padding index (see [`Positions`]).

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{embedding, Embedding, VarBuilder};

use super::config::{Config, Positions, WordTable};
use super::cpu::KernelPlan;
use super::names::{TokenTypes, WeightNames};
use super::norm::LayerNorm;
use super::ragged::RaggedBatch;

#[derive(Debug, Clone)]
pub struct Embeddings {
    word_embeddings: WordEmbeddings,
    token_types: TokenTypeRows,
    position_embeddings: Embedding,
    positions: Positions,
    layer_norm: LayerNorm,
}

impl Embeddings {
    /// `vb` is the embeddings module (`bert.embeddings`, ...).
    pub fn load(
        vb: VarBuilder,
        cfg: &Config,
        names: &WeightNames,
        plan: &KernelPlan,
    ) -> Result<Self> {
        let dim = cfg.hidden_size;
        let word_embeddings = match cfg.word_table {
            WordTable::F32 => {
                WordEmbeddings::Loaded(embedding(cfg.vocab_size, dim, vb.pp("word_embeddings"))?)
            }
            WordTable::Half(dtype) => {
                let shape = (cfg.vocab_size, dim);
                let table = vb.pp("word_embeddings").get_with_hints_dtype(
                    shape,
                    "weight",
                    Default::default(),
                    dtype,
                )?;
                WordEmbeddings::Loaded(Embedding::new(table, dim))
            }
            WordTable::Static { dtype, bytes } => {
                if bytes.len() != cfg.vocab_size * dim * 2 {
                    return Err(candle_core::Error::Msg(format!(
                        "word_embeddings.weight holds {} bytes, not {} x {dim} half floats",
                        bytes.len(),
                        cfg.vocab_size,
                    )));
                }
                // Read in place, not through the checked source: check it
                // here. A half float is NaN or infinite when its exponent
                // bits are all set.
                let exponent: u16 = match dtype {
                    DType::BF16 => 0x7f80,
                    _ => 0x7c00,
                };
                let finite =
                    |pair: &[u8]| u16::from_le_bytes([pair[0], pair[1]]) & exponent != exponent;
                if let Some(index) = bytes.chunks_exact(2).position(|pair| !finite(pair)) {
                    return Err(candle_core::Error::Msg(format!(
                        "word_embeddings.weight holds a non-finite value (NaN or infinity) at \
                         element {index}"
                    )));
                }
                WordEmbeddings::Static { dtype, bytes, dim }
            }
        };
        let table = || {
            vb.pp("token_type_embeddings")
                .get((cfg.type_vocab_size, dim), "weight")
        };
        let token_types = match names.token_types {
            TokenTypes::None => TokenTypeRows::None,
            TokenTypes::AlwaysZero => TokenTypeRows::AlwaysZero(table()?.get(0)?),
            TokenTypes::FromTokenizer => {
                let table = table()?;
                TokenTypeRows::Table {
                    zero: table.get(0)?,
                    table,
                }
            }
        };
        let position_embeddings =
            if cfg.sinusoidal_pos_embds && !vb.contains_tensor("position_embeddings.weight") {
                // HF saves the sinusoidal table as a weight, so checkpoints
                // normally carry it; rebuild it only when a file left it out.
                let table = sinusoidal_table(cfg.max_position_embeddings, dim, vb.device())?;
                Embedding::new(table, dim)
            } else {
                embedding(
                    cfg.max_position_embeddings,
                    dim,
                    vb.pp("position_embeddings"),
                )?
            };
        let layer_norm = LayerNorm::load(dim, cfg.layer_norm_eps, vb.pp("LayerNorm"), plan)?;
        Ok(Self {
            word_embeddings,
            token_types,
            position_embeddings,
            positions: cfg.positions,
            layer_norm,
        })
    }

    /// (batch, seq, dim) position rows, or (seq, dim) when every sequence
    /// has the same positions.
    fn position_rows(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (batch, seq_len) = input_ids.dims2()?;
        match self.positions {
            Positions::FromZero => {
                let positions = Tensor::arange(0u32, seq_len as u32, input_ids.device())?;
                self.position_embeddings.forward(&positions)
            }
            Positions::AfterPadding { padding_idx } => {
                let positions = positions_after_padding(&input_ids.to_vec2()?, padding_idx);
                let positions =
                    Tensor::from_vec(positions.concat(), (batch, seq_len), input_ids.device())?;
                self.position_embeddings.forward(&positions)
            }
        }
    }
}

/// `token_type_embeddings`, as the architecture reads it.
#[derive(Debug, Clone)]
enum TokenTypeRows {
    None,
    /// Row 0, for every token.
    AlwaysZero(Tensor),
    /// The whole table, and its row 0 for batches of type-0 tokens only.
    Table {
        table: Tensor,
        zero: Tensor,
    },
}

impl TokenTypeRows {
    /// `embedded` (tokens, dim) or (batch, seq, dim) plus each token's type
    /// row; `type_ids` (one per token, in order) None when all are 0.
    fn add_to(&self, embedded: Tensor, type_ids: Option<&[u32]>) -> Result<Tensor> {
        let (table, ids) = match (self, type_ids) {
            (Self::None, _) => return Ok(embedded),
            (Self::AlwaysZero(zero), _) | (Self::Table { zero, .. }, None) => {
                return embedded.broadcast_add(zero)
            }
            (Self::Table { table, .. }, Some(ids)) => (table, ids),
        };
        let types = table.dim(0)?;
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= types) {
            candle_core::bail!(
                "token type id {id} is outside the model's {types} token types \
                 (type_vocab_size): the tokenizer's pair template does not fit this model"
            );
        }
        let ids = Tensor::from_slice(ids, ids.len(), embedded.device())?;
        let rows = table.index_select(&ids, 0)?.reshape(embedded.shape())?;
        embedded + rows
    }
}

/// HF's `create_position_ids_from_input_ids`: each non-pad token's count
/// of non-pad tokens so far, plus `padding_idx`; pad tokens get
/// `padding_idx`. It looks at the ids, not the attention mask, so a pad
/// token typed in the text is positioned as HF positions it.
pub fn positions_after_padding(ids: &[Vec<u32>], padding_idx: usize) -> Vec<Vec<u32>> {
    let pad = padding_idx as u32;
    ids.iter()
        .map(|row| {
            let mut count = 0u32;
            row.iter()
                .map(|&id| match id == pad {
                    true => pad,
                    false => {
                        count += 1;
                        pad + count
                    }
                })
                .collect()
        })
        .collect()
}

impl Embeddings {
    /// Words + token type + positions, normalised; each intermediate freed
    /// as soon as the next exists.
    fn combine(
        &self,
        words: Tensor,
        type_ids: Option<&[u32]>,
        positions: Tensor,
    ) -> Result<Tensor> {
        let embedded = self.token_types.add_to(words, type_ids)?;
        let summed = embedded.broadcast_add(&positions)?;
        drop((embedded, positions));
        self.layer_norm.forward(&summed)
    }

    /// A ragged batch's embeddings, every token real. Returns (tokens, dim)
    /// in the batch's order.
    pub fn forward_unpadded(&self, batch: &RaggedBatch, device: &Device) -> Result<Tensor> {
        let (ids, lengths) = (&batch.ids, &batch.lengths);
        if lengths.iter().sum::<usize>() != ids.len() {
            candle_core::bail!("lengths {lengths:?} do not add up to {} ids", ids.len());
        }
        let positions: Vec<u32> = match self.positions {
            Positions::FromZero => lengths.iter().flat_map(|&len| 0..len as u32).collect(),
            Positions::AfterPadding { padding_idx } => {
                let mut start = 0;
                let rows: Vec<Vec<u32>> = lengths
                    .iter()
                    .map(|&len| {
                        start += len;
                        ids[start - len..start].to_vec()
                    })
                    .collect();
                positions_after_padding(&rows, padding_idx).concat()
            }
        };
        let tokens = ids.len();
        let words = self
            .word_embeddings
            .forward(&Tensor::from_slice(ids, (1, tokens), device)?)?
            .squeeze(0)?;
        let positions = self
            .position_embeddings
            .forward(&Tensor::from_vec(positions, tokens, device)?)?;
        self.combine(words, batch.type_ids.as_deref(), positions)
    }

    /// A padded batch's embeddings: `ids` and `type_ids` (None: all 0) are
    /// `shape` (batch, seq) row-major. Returns (batch, seq, dim): words +
    /// token type, then + positions, in HF's order.
    pub fn forward_padded(
        &self,
        ids: &[u32],
        type_ids: Option<&[u32]>,
        shape: (usize, usize),
        device: &Device,
    ) -> Result<Tensor> {
        let input_ids = Tensor::from_slice(ids, shape, device)?;
        let words = self.word_embeddings.forward(&input_ids)?;
        self.combine(words, type_ids, self.position_rows(&input_ids)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each token gets its own type's row; a type id past the table is an
    /// error naming it, not a panic or another row.
    #[test]
    fn token_types_index_the_table_and_refuse_ids_past_it() -> Result<()> {
        let device = Device::Cpu;
        let table = Tensor::new(&[[1f32, 1.0], [10.0, 20.0]], &device)?;
        let rows = TokenTypeRows::Table {
            zero: table.get(0)?,
            table,
        };
        let embedded = Tensor::zeros((3, 2), DType::F32, &device)?;
        let typed = rows.add_to(embedded.clone(), Some(&[0, 1, 1]))?;
        assert_eq!(
            typed.to_vec2::<f32>()?,
            [[1.0, 1.0], [10.0, 20.0], [10.0, 20.0]]
        );
        let zeros = rows.add_to(embedded.clone(), None)?;
        assert_eq!(zeros.to_vec2::<f32>()?, [[1.0, 1.0]; 3]);
        let err = rows.add_to(embedded.clone(), Some(&[0, 2, 0])).unwrap_err();
        assert!(err.to_string().contains("token type id 2"), "{err}");
        // RoBERTa's family runs type 0 whatever the tokenizer said.
        let zero_only = TokenTypeRows::AlwaysZero(Tensor::new(&[1f32, 1.0], &device)?);
        let typed = zero_only.add_to(embedded, Some(&[0, 1, 5]))?;
        assert_eq!(typed.to_vec2::<f32>()?, [[1.0, 1.0]; 3]);
        Ok(())
    }
}
