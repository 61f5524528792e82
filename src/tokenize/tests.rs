//! The tokenizer's long-text and pair paths against the tokenizer's own
//! handling of the whole text.

use super::*;
use tokenizers::utils::truncation::truncate_encodings;

fn tokenizer() -> TextTokenizer {
    let json = include_bytes!("../../tests/fixtures/tiny-distilbert/tokenizer.json");
    TextTokenizer::from_json(json, 512).unwrap()
}

/// Long texts of every kind that splitting could get wrong: plain
/// words, punctuation, CJK (split per character), emoji, accents to
/// strip, whitespace runs, and words too long to have whitespace near.
fn long_texts() -> Vec<String> {
    vec![
        "the movie was great , and i loved it ! ".repeat(3000),
        "电影很好看。我喜欢它！".repeat(4000),
        "café naïve 😀 ok\t\n  ".repeat(5000),
        "x".repeat(100_000) + " then words " + &"y".repeat(50_000),
        "short words ".repeat(2730) + &"é".repeat(10_000),
        "a ".repeat(20_000),
    ]
}

/// The tokenizer's own truncation to 512 tokens from the left (HF's
/// `truncation_side="left"`), on whole texts.
fn left_truncating(tokenizer: &TextTokenizer) -> Tokenizer {
    let mut left = tokenizer.inner.clone();
    left.with_truncation(Some(TruncationParams {
        max_length: 512,
        strategy: TruncationStrategy::LongestFirst,
        stride: 0,
        direction: TruncationDirection::Left,
    }))
    .unwrap();
    left
}

/// Keeping the end matches the tokenizer's own left truncation (HF's
/// `truncation_side="left"`) on the whole text, for long texts read a
/// suffix at a time and for short ones.
#[test]
fn keeping_the_end_matches_left_truncation_of_the_whole_text() {
    let tokenizer = tokenizer();
    let left = left_truncating(&tokenizer);
    let mut texts = long_texts();
    texts.extend(["", "short", &"the end matters . ".repeat(200)].map(String::from));
    for text in texts {
        let whole = into_encoded(left.encode(text.as_str(), true).unwrap());
        let kept = tokenizer.encode_keeping_end(&text).unwrap();
        assert_eq!(kept, whole, "{}", &text[..text.len().min(40)]);
    }
}

/// HF's pair cut on the whole texts: both tokenized whole, then
/// longest-first on their true lengths (the `tokenizers` crate's own
/// truncation stops each side at the limit first, which ties two long
/// sides; transformers does not).
fn whole_pair(
    tokenizer: &TextTokenizer,
    a: &str,
    b: &str,
    direction: TruncationDirection,
) -> Encoded {
    let whole = |text: &str| tokenizer.untruncated.encode(text, false).unwrap();
    let params = TruncationParams {
        max_length: tokenizer.room(true),
        strategy: TruncationStrategy::LongestFirst,
        stride: 0,
        direction,
    };
    let (a, b) = truncate_encodings(whole(a), Some(whole(b)), &params).unwrap();
    into_encoded(tokenizer.inner.post_process(a, b, true).unwrap())
}

/// A pair with a long side, read a piece at a time, is cut longest-first
/// exactly as from the whole texts, from either end; two sides over the
/// limit keep the odd token of BERT's odd budget on the longer side.
#[test]
fn a_long_pair_is_cut_exactly_as_from_the_whole_texts() {
    let tokenizer = tokenizer();
    let long = long_texts();
    let short = ["", "a short hypothesis", &"medium words here ".repeat(60)].map(String::from);
    let over = ["word ".repeat(700), "word ".repeat(900)];
    let mut pairs: Vec<(&str, &str)> = vec![
        (&over[0], &over[1]),
        (&over[1], &over[0]),
        (&over[0], &over[0]),
    ];
    for (i, a) in long.iter().enumerate() {
        pairs.push((a, &short[i % short.len()]));
        pairs.push((&short[(i + 1) % short.len()], a));
        pairs.push((a, &long[(i + 1) % long.len()]));
        pairs.push((&over[i % 2], a));
        pairs.push((a, &over[i % 2]));
    }
    let mut cut = 0;
    let count = pairs.len();
    for (a, b) in pairs {
        let start = |text: &str| text.chars().take(12).collect::<String>();
        let what = format!("{:?} / {:?}", start(a), start(b));
        let whole = whole_pair(&tokenizer, a, b, TruncationDirection::Right);
        let pair = tokenizer.encode_pair(a, b, false).unwrap();
        cut += usize::from(pair.truncated);
        assert_eq!(pair, whole, "{what}");
        let whole_left = whole_pair(&tokenizer, a, b, TruncationDirection::Left);
        assert_eq!(
            tokenizer.encode_pair(a, b, true).unwrap(),
            whole_left,
            "{what}"
        );
    }
    // Only "x...x then words y...y" (a few [UNK]s) fits whole.
    assert!(cut >= count - 3, "{cut} of {count} pairs cut");
    let first_longer = tokenizer.encode_pair(&over[1], &over[0], false).unwrap();
    let sep = first_longer.ids.iter().position(|&id| id == 102).unwrap();
    assert_eq!((sep - 1, first_longer.len() - sep - 2), (255, 254));
    let pair = tokenizer.encode_pair("a b", "c", true).unwrap();
    assert_eq!(
        pair,
        into_encoded(tokenizer.inner.encode(("a b", "c"), true).unwrap())
    );
    assert_eq!(pair.type_ids, [0, 0, 0, 0, 1, 1]);
}

#[test]
fn a_long_text_truncates_exactly_as_from_the_whole_text() {
    let tokenizer = tokenizer();
    for text in long_texts() {
        assert!(text.len() > LONG_TEXT_BYTES);
        let whole = into_encoded(tokenizer.inner.encode(text.as_str(), true).unwrap());
        assert_eq!(tokenizer.encode(&text).unwrap(), whole, "{}", &text[..40]);
        let batch = tokenizer
            .encode_batch(&[text.as_str().into(), "short".into()])
            .unwrap();
        assert_eq!(batch[0], whole);
    }
}

#[test]
fn long_text_windows_match_windows_of_the_whole_encoding() {
    let tokenizer = tokenizer();
    let room = tokenizer.room(false);
    let (cls, sep) = (
        tokenizer.inner.token_to_id("[CLS]").unwrap(),
        tokenizer.inner.token_to_id("[SEP]").unwrap(),
    );
    for text in long_texts() {
        let whole = tokenizer.untruncated.encode(text.as_str(), false).unwrap();
        let whole = whole.get_ids();
        assert_eq!(
            tokenizer.content_ids(&text).unwrap(),
            whole,
            "{}",
            &text[..40]
        );
        for stride in [0, 128, 509] {
            let got = tokenizer.encode_windows(&text, stride).unwrap();
            let starts: Vec<usize> = (0..whole.len()).step_by(room - stride).collect();
            let count = starts
                .iter()
                .position(|&s| s + room >= whole.len())
                .unwrap()
                + 1;
            assert_eq!(got.len(), count, "{} stride {stride}", &text[..40]);
            for (window, &start) in got.iter().zip(&starts) {
                let stop = whole.len().min(start + room);
                let want: Vec<u32> = std::iter::once(cls)
                    .chain(whole[start..stop].iter().copied())
                    .chain(std::iter::once(sep))
                    .collect();
                assert_eq!(window.ids, want);
                assert!(window.attention_mask.iter().all(|&m| m == 1));
                assert!(!window.truncated);
            }
        }
    }
    assert_eq!(tokenizer.encode_windows("", 0).unwrap().len(), 1);
}
