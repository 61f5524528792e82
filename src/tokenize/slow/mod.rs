//! Tokenizers from the slow files a repo may have instead of tokenizer.json
//! (vocab.txt; vocab.json with merges.txt; a SentencePiece model), built as
//! transformers 5 builds them: its tokenizer classes (`BertTokenizer`,
//! `RobertaTokenizer`, `XLMRobertaTokenizer`, `CamembertTokenizer`) make
//! the pipelines its `convert_slow_tokenizer` converters made, from the
//! options and special tokens the settings files give.

mod sentencepiece;
mod settings;
mod specials;

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};
use crate::source::{FileBytes, TokenizerFiles, Vocabulary};
use settings::Named;
pub use settings::{model_max_length, Settings};
use specials::{invalid, special_id, Family, Specials};

/// The tokenizer the slow files in `files` make, read as the tokenizer
/// class the settings (or else `model_type`) name, and the settings.
pub fn convert(files: &TokenizerFiles, model_type: &str) -> Result<(Tokenizer, Settings)> {
    let settings = Settings::read(files)?;
    let family = Family::pick(&settings, model_type, files.config.as_ref())?;
    let specials = Specials::new(&settings, family);
    let (mut tokenizer, origin, extra) = match (&files.vocabulary, family) {
        (Vocabulary::WordPiece(vocab), Family::Bert) => (
            wordpiece(vocab, &settings, &specials)?,
            &vocab.origin,
            Vec::new(),
        ),
        (Vocabulary::BytePairs { vocab, merges }, Family::Roberta) => (
            byte_level_bpe(vocab, merges, &settings, &specials)?,
            &vocab.origin,
            Vec::new(),
        ),
        (Vocabulary::SentencePiece(model), Family::XlmRoberta | Family::Camembert) => {
            let (tokenizer, extra) = sentencepiece::convert(model, &settings, &specials)?;
            (tokenizer, &model.origin, extra)
        }
        (vocabulary, family) => {
            let origin = files.origin();
            let wants = match family {
                Family::Bert => "vocab.txt",
                Family::Roberta => "vocab.json and merges.txt",
                Family::XlmRoberta | Family::Camembert => "sentencepiece.bpe.model",
            };
            let found = match vocabulary {
                Vocabulary::Json(_) => "tokenizer.json",
                Vocabulary::WordPiece(_) => "WordPiece",
                Vocabulary::BytePairs { .. } => "byte-level BPE",
                Vocabulary::SentencePiece(_) => "SentencePiece",
            };
            return Err(Error::model(
                origin,
                format!(
                    "is a {found} vocabulary, but the model's tokenizer is a {} (which reads {wants})",
                    family.name()
                ),
            ));
        }
    };
    add_tokens(&mut tokenizer, &settings, &specials, extra, origin)?;
    Ok((tokenizer, settings))
}

/// The added and special tokens, as `TokenizersBackend.__init__` adds them:
/// the files' added tokens by id, then the named special tokens, then the
/// extra ones. A named special token must be in the vocabulary (a new id
/// would have no embedding row), and an added token must get the id its
/// file gives it: otherwise the error names the file.
fn add_tokens(
    tokenizer: &mut Tokenizer,
    settings: &Settings,
    specials: &Specials,
    extra: Vec<Named>,
    vocabulary: &Path,
) -> Result<()> {
    for (id, named) in &settings.added {
        tokenizer.add_tokens([named.token.clone()]).map_err(|err| {
            Error::model_caused(named.file_or(vocabulary), "cannot add its tokens", err)
        })?;
        let got = tokenizer.token_to_id(&named.token.content);
        if got != Some(*id) {
            return Err(Error::model(
                named.file_or(vocabulary),
                format!(
                    "gives {:?} the id {id}, but with {} it is {}",
                    named.token.content,
                    vocabulary.display(),
                    got.map_or("none".to_string(), |g| g.to_string())
                ),
            ));
        }
    }
    for (_, named) in &specials.roles {
        if tokenizer.token_to_id(&named.token.content).is_none() {
            let what = match named.origin {
                None => format!("{}'s default", specials.family.name()),
                Some(_) => "a special token it names".to_string(),
            };
            return Err(Error::model(
                named.file_or(vocabulary),
                format!(
                    "{:?} ({what}) is not in the vocabulary of {}",
                    named.token.content,
                    vocabulary.display()
                ),
            ));
        }
    }
    let mut seen: Vec<String> = settings
        .added
        .iter()
        .map(|(_, n)| n.token.content.clone())
        .collect();
    let named = specials.roles.iter().map(|(_, n)| n);
    let tokens: Vec<AddedToken> = named
        .chain(&settings.extra_special)
        .chain(&extra)
        .filter(|n| {
            let new = !seen.contains(&n.token.content);
            seen.push(n.token.content.clone());
            new
        })
        .map(|n| {
            let mut token = n.token.clone();
            token.special |= specials
                .roles
                .iter()
                .any(|(_, r)| r.token.content == token.content);
            token
        })
        .collect();
    tokenizer
        .add_tokens(tokens)
        .map_err(|err| Error::model_caused(vocabulary, "cannot add its special tokens", err))?;
    Ok(())
}

/// vocab.txt as `BertTokenizer` reads it: WordPiece with `##`
/// continuations, BERT's normalizer and pre-tokenizer, and
/// `[CLS] $A [SEP] $B:1 [SEP]:1`.
fn wordpiece(vocab: &FileBytes, settings: &Settings, specials: &Specials) -> Result<Tokenizer> {
    let tokens = WordPiece::read_bytes(&vocab.bytes).map_err(|err| {
        Error::model_caused(
            &vocab.origin,
            "is not a vocab.txt (one token per line, UTF-8)",
            err,
        )
    })?;
    if tokens.is_empty() {
        return Err(invalid(vocab, "holds no tokens"));
    }
    let unk = specials.content("unk_token", &vocab.origin)?;
    if !tokens.contains_key(&unk) {
        return Err(invalid(vocab, format!("has no {unk:?}, the unknown token")));
    }
    let model = WordPiece::builder()
        .vocab(tokens)
        .unk_token(unk)
        .continuing_subword_prefix("##".into())
        .max_input_chars_per_word(100)
        .build()
        .map_err(|err| Error::model_caused(&vocab.origin, "cannot be read as WordPiece", err))?;
    let mut tokenizer = Tokenizer::new(model);
    let lowercase = settings.do_lower_case.unwrap_or(true);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(
            true,
            settings.tokenize_chinese_chars.unwrap_or(true),
            settings.strip_accents,
            lowercase,
        )))
        .map_err(|err| Error::model_caused(&vocab.origin, "cannot build its normalizer", err))?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_decoder(Some(WordPieceDecoder::new("##".into(), true)));
    let (cls, sep) = (
        specials.content("cls_token", &vocab.origin)?,
        specials.content("sep_token", &vocab.origin)?,
    );
    let id = |token: &str| special_id(&tokenizer, token, vocab);
    let template = TemplateProcessing::builder()
        .try_single(format!("{cls}:0 $A:0 {sep}:0"))
        .and_then(|b| b.try_pair(format!("{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1")))
        .map_err(|err| invalid(vocab, format!("its special tokens make no template: {err}")))?
        .special_tokens(vec![(cls.clone(), id(&cls)?), (sep.clone(), id(&sep)?)])
        .build()
        .map_err(|err| invalid(vocab, format!("its special tokens make no template: {err}")))?;
    tokenizer.with_post_processor(Some(template));
    Ok(tokenizer)
}

/// vocab.json and merges.txt as `RobertaTokenizer` reads them: byte-level
/// BPE with RoBERTa's `<s> $A </s> </s> $B </s>`.
fn byte_level_bpe(
    vocab: &FileBytes,
    merges: &FileBytes,
    settings: &Settings,
    specials: &Specials,
) -> Result<Tokenizer> {
    let tokens = match serde_json::from_slice::<serde_json::Value>(&vocab.bytes) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .map(
                |(token, id)| match id.as_u64().and_then(|id| u32::try_from(id).ok()) {
                    Some(id) => Ok((token, id)),
                    None => Err(invalid(
                        vocab,
                        format!("gives {token:?} the id {id}, not a token id"),
                    )),
                },
            )
            .collect::<Result<tokenizers::models::bpe::Vocab>>()?,
        Ok(other) => {
            return Err(invalid(
                vocab,
                format!(
                    "should map tokens to ids, not be {}",
                    crate::json::json_kind(&other)
                ),
            ))
        }
        Err(err) => return Err(Error::model_caused(&vocab.origin, "is not valid JSON", err)),
    };
    let text = std::str::from_utf8(&merges.bytes)
        .map_err(|err| Error::model_caused(&merges.origin, "is not UTF-8 text", err))?;
    // As the tokenizers crate reads the file: `#version` lines skipped,
    // every other line two tokens and a space.
    let mut pairs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.starts_with("#version") {
            continue;
        }
        match line.split(' ').collect::<Vec<_>>()[..] {
            [left, right] => pairs.push((left.to_string(), right.to_string())),
            _ => {
                return Err(invalid(
                    merges,
                    format!(
                        "line {} is not two tokens and a space: {line:?}",
                        number + 1
                    ),
                ))
            }
        }
    }
    let model = BPE::builder()
        .vocab_and_merges(tokens, pairs)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .fuse_unk(false)
        .build()
        .map_err(|err| Error::model_caused(&merges.origin, "does not fit vocab.json", err))?;
    let mut tokenizer = Tokenizer::new(model);
    let add_prefix_space = settings.add_prefix_space.unwrap_or(false);
    let trim_offsets = settings.trim_offsets.unwrap_or(true);
    tokenizer.with_pre_tokenizer(Some(
        ByteLevel::default().add_prefix_space(add_prefix_space),
    ));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let (cls, sep) = (
        specials.content("cls_token", &vocab.origin)?,
        specials.content("sep_token", &vocab.origin)?,
    );
    let id = |token: &str| special_id(&tokenizer, token, vocab);
    let processing = RobertaProcessing::new((sep.clone(), id(&sep)?), (cls.clone(), id(&cls)?))
        .trim_offsets(trim_offsets)
        .add_prefix_space(add_prefix_space);
    tokenizer.with_post_processor(Some(processing));
    Ok(tokenizer)
}
