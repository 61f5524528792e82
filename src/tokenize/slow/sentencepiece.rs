//! A SentencePiece model file (`sentencepiece.bpe.model`) as transformers
//! 5's `XLMRobertaTokenizer` and `CamembertTokenizer` read it: the pieces
//! as a Unigram vocabulary with fairseq's ids, the precompiled normalizer
//! from the file's charsmap, and Metaspace.
//!
//! The file is a protobuf `ModelProto` (sentencepiece_model.proto), parsed
//! with `prost`'s derive: only the fields read here are declared, and
//! protobuf skips the rest.

use tokenizers::decoders::metaspace::Metaspace as MetaspaceDecoder;
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::Precompiled;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use super::settings::{Named, Settings};
use super::specials::{invalid, special_id, Family, Specials};
use crate::error::{Error, Result};
use crate::source::FileBytes;

#[derive(Clone, PartialEq, prost::Message)]
struct ModelProto {
    #[prost(message, repeated, tag = "1")]
    pieces: Vec<SentencePiece>,
    #[prost(message, optional, tag = "2")]
    trainer_spec: Option<TrainerSpec>,
    #[prost(message, optional, tag = "3")]
    normalizer_spec: Option<NormalizerSpec>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SentencePiece {
    #[prost(string, optional, tag = "1")]
    piece: Option<String>,
    #[prost(float, optional, tag = "2")]
    score: Option<f32>,
    /// NORMAL = 1 (the default), UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4,
    /// UNUSED = 5, BYTE = 6.
    #[prost(int32, optional, tag = "3")]
    kind: Option<i32>,
}

const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

#[derive(Clone, PartialEq, prost::Message)]
struct TrainerSpec {
    /// UNIGRAM = 1 (the default), BPE = 2, WORD = 3, CHAR = 4.
    #[prost(int32, optional, tag = "3")]
    model_type: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct NormalizerSpec {
    #[prost(bytes = "vec", optional, tag = "2")]
    precompiled_charsmap: Option<Vec<u8>>,
}

/// The tokenizer `model` makes, and the pieces the file marks as control
/// or user-defined symbols, which transformers adds as tokens (control
/// ones special).
pub(super) fn convert(
    model: &FileBytes,
    settings: &Settings,
    specials: &Specials,
) -> Result<(Tokenizer, Vec<Named>)> {
    let proto: ModelProto = prost::Message::decode(&*model.bytes)
        .map_err(|err| Error::model_caused(&model.origin, "is not a SentencePiece model", err))?;
    // The fairseq ids replace the first pieces (<unk>, <s>, </s>).
    let skipped = match specials.family {
        Family::Camembert => 1,
        _ => 3,
    };
    if proto.pieces.len() <= skipped {
        return Err(invalid(
            model,
            format!(
                "holds {} pieces; a SentencePiece model has its special pieces and more",
                proto.pieces.len()
            ),
        ));
    }
    let model_type = proto
        .trainer_spec
        .as_ref()
        .and_then(|t| t.model_type)
        .unwrap_or(1);
    // XLMRobertaTokenizer reads any model's pieces and scores as Unigram;
    // CamembertTokenizer's from transformers fails on a BPE one.
    if specials.family == Family::Camembert && model_type != 1 {
        return Err(invalid(
            model,
            "is not a Unigram model, which CamembertTokenizer needs",
        ));
    }
    let name = |role: &str| specials.content(role, &model.origin);
    let mut vocab: Vec<(String, f64)> = match specials.family {
        Family::Camembert => vec![
            ("<s>NOTUSED".into(), 0.0),
            (name("pad_token")?, 0.0),
            ("</s>NOTUSED".into(), 0.0),
            (name("unk_token")?, 0.0),
            ("<unk>NOTUSED".into(), -100.0),
        ],
        _ => vec![
            (name("bos_token")?, 0.0),
            (name("pad_token")?, 0.0),
            (name("eos_token")?, 0.0),
            (name("unk_token")?, 0.0),
        ],
    };
    for (index, piece) in proto.pieces.iter().enumerate().skip(skipped) {
        let text = piece.piece.clone().unwrap_or_default();
        let score = f64::from(piece.score.unwrap_or(0.0));
        // An empty piece would be a zero-length match at every position.
        if text.is_empty() || !score.is_finite() {
            return Err(invalid(
                model,
                format!("piece {index} is empty or has a score that is not a number"),
            ));
        }
        vocab.push((text, score));
    }
    vocab.push((name("mask_token")?, 0.0));
    let unk = name("unk_token")?;
    let unk_id = vocab
        .iter()
        .position(|(piece, _)| *piece == unk)
        .unwrap_or(0);
    let unigram = Unigram::from(vocab, Some(unk_id), false).map_err(|err| {
        Error::model_caused(&model.origin, "cannot be read as a Unigram vocabulary", err)
    })?;
    let mut tokenizer = Tokenizer::new(unigram);
    let charsmap = proto
        .normalizer_spec
        .as_ref()
        .and_then(|spec| spec.precompiled_charsmap.as_deref())
        .filter(|charsmap| !charsmap.is_empty());
    if let Some(charsmap) = charsmap {
        check_charsmap(charsmap).map_err(|why| {
            invalid(
                model,
                format!("its normalization charsmap is damaged: {why}"),
            )
        })?;
        let precompiled = Precompiled::from(charsmap).map_err(|err| {
            invalid(
                model,
                format!("its normalization charsmap is damaged: {err}"),
            )
        })?;
        tokenizer
            .with_normalizer(Some(precompiled))
            .map_err(|err| {
                Error::model_caused(&model.origin, "cannot build its normalizer", err)
            })?;
    }
    let scheme = match settings.add_prefix_space.unwrap_or(true) {
        true => PrependScheme::Always,
        false => PrependScheme::Never,
    };
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        WhitespaceSplit.into(),
        Metaspace::new('\u{2581}', scheme, true).into(),
    ])));
    tokenizer.with_decoder(Some(MetaspaceDecoder::new('\u{2581}', scheme, true)));
    let (bos, eos) = (name("bos_token")?, name("eos_token")?);
    let id = |token: &str| special_id(&tokenizer, token, model);
    let template = TemplateProcessing::builder()
        .try_single(vec![bos.as_str(), "$A", eos.as_str()])
        .and_then(|b| {
            b.try_pair(vec![
                bos.as_str(),
                "$A",
                eos.as_str(),
                eos.as_str(),
                "$B",
                eos.as_str(),
            ])
        })
        .map_err(|err| invalid(model, format!("its special tokens make no template: {err}")))?
        .special_tokens(vec![(bos.clone(), id(&bos)?), (eos.clone(), id(&eos)?)])
        .build()
        .map_err(|err| invalid(model, format!("its special tokens make no template: {err}")))?;
    tokenizer.with_post_processor(Some(template));
    let symbols = proto
        .pieces
        .iter()
        .filter(|p| matches!(p.kind, Some(CONTROL | USER_DEFINED)))
        .filter_map(|p| {
            let content = p.piece.clone().filter(|c| !c.is_empty())?;
            let token = AddedToken::from(content, p.kind == Some(CONTROL)).normalized(false);
            Some(Named {
                token,
                origin: Some(model.origin.clone()),
            })
        })
        .collect();
    Ok((tokenizer, symbols))
}

/// The precompiled charsmap is a little-endian u32 trie size, a darts-clone
/// double-array trie of u32 units, then the normalized strings. The
/// `tokenizers` crate's reader (spm_precompiled) allocates what the size
/// says and walks the trie by unchecked indexing, so a damaged or hostile
/// file would abort the load or panic on the first text: it is walked here
/// first, the way that reader walks it.
fn check_charsmap(charsmap: &[u8]) -> std::result::Result<(), &'static str> {
    let (size, rest) = charsmap
        .split_at_checked(4)
        .ok_or("it is shorter than its header")?;
    let size = u32::from_le_bytes(size.try_into().unwrap_or_default()) as usize;
    if size > rest.len() || !size.is_multiple_of(4) {
        return Err("its trie is not the size its header says");
    }
    let (trie, normalized) = rest.split_at(size);
    let normalized = std::str::from_utf8(normalized).map_err(|_| "its strings are not UTF-8")?;
    let units: Vec<usize> = trie
        .chunks_exact(4)
        .map(|unit| u32::from_le_bytes([unit[0], unit[1], unit[2], unit[3]]) as usize)
        .collect();
    // A darts-clone array is whole blocks of 256 units, so a position XOR a
    // byte stays in the array; an offset could leave it.
    if units.is_empty() || !units.len().is_multiple_of(256) {
        return Err("its trie is not whole blocks of 256 units");
    }
    let offset = |unit: usize| (unit >> 10) << ((unit & (1 << 9)) >> 6);
    let label = |unit: usize| unit & ((1 << 31) | 0xFF);
    for (position, &unit) in units.iter().enumerate() {
        // Only a unit a byte can reach (its label is that byte) is followed.
        if position != 0 && !(1..=255).contains(&label(unit)) {
            continue;
        }
        let next = position ^ offset(unit);
        let Some(&leaf) = units.get(next) else {
            return Err("its trie points outside itself");
        };
        let has_leaf = (unit >> 8) & 1 == 1;
        if position != 0 && has_leaf {
            let value = leaf & ((1 << 31) - 1);
            if value > normalized.len() || !normalized.is_char_boundary(value) {
                return Err("its trie points outside its strings");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::{NormalizedString, Normalizer};

    /// A charsmap of `units` and `strings`, as sentencepiece lays it out.
    fn charsmap(units: &[u32], strings: &[u8]) -> Vec<u8> {
        let mut bytes = ((units.len() * 4) as u32).to_le_bytes().to_vec();
        for unit in units {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        bytes.extend_from_slice(strings);
        bytes
    }

    /// Whether the tokenizers crate's own reader panics normalizing "a".
    fn reader_panics(charsmap: &[u8]) -> bool {
        let Ok(precompiled) = Precompiled::from(charsmap) else {
            return false;
        };
        std::panic::catch_unwind(|| {
            let _ = precompiled.normalize(&mut NormalizedString::from("a"));
        })
        .is_err()
    }

    #[test]
    fn a_sound_trie_passes_and_normalizes() {
        // The root (offset 0), then 'a' (97) at 0 ^ 97, with a leaf and
        // offset 1: the leaf is unit 96, whose value 0 points at "x".
        let mut units = vec![0u32; 256];
        units[97] = 97 | (1 << 8) | (1 << 10);
        let map = charsmap(&units, b"x\0");
        assert_eq!(check_charsmap(&map), Ok(()));
        assert!(!reader_panics(&map));
        let mut normalized = NormalizedString::from("a");
        Precompiled::from(&map)
            .unwrap()
            .normalize(&mut normalized)
            .unwrap();
        assert_eq!(normalized.get(), "x");
    }

    #[test]
    fn tries_the_reader_would_panic_on_are_refused() {
        let mut leaf_outside = vec![0u32; 256];
        leaf_outside[97] = 97 | (1 << 8); // its leaf value, 353, is past "x\0"
        let mut offset_outside = vec![0u32; 256];
        offset_outside[0] = 4096 << 10; // the root points past the array
        for (what, map) in [
            ("empty trie", charsmap(&[], b"")),
            ("leaf past the strings", charsmap(&leaf_outside, b"x\0")),
            ("offset past the array", charsmap(&offset_outside, b"")),
        ] {
            assert!(reader_panics(&map), "{what}: the reader would not panic");
            assert!(check_charsmap(&map).is_err(), "{what}: not refused");
        }
        // A header announcing more than the file holds (the reader would
        // allocate for it), a short header, a trie that is not whole blocks.
        let mut huge = charsmap(&[0; 256], b"");
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(check_charsmap(&huge).is_err());
        assert!(check_charsmap(&[1, 2]).is_err());
        assert!(check_charsmap(&charsmap(&[0; 100], b"")).is_err());
    }
}
