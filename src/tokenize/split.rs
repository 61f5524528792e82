//! Where a long text may be cut into pieces the tokenizer reads one at a
//! time, and how big the pieces are.

/// Texts longer than this are tokenized in pieces: truncation looks at a
/// prefix only, window mode keeps only ids. Pieces are cut just before a
/// whitespace character, where every pre-tokenizer in use (BERT's,
/// whitespace, byte-level, metaspace) splits anyway, so the tokens before
/// the cut are the whole text's.
pub const LONG_TEXT_BYTES: usize = 32 << 10;

/// The longest prefix of a text the tokenizer reads when truncating: a
/// text is cut there even where its prefix holds fewer tokens than the
/// model keeps (one word of megabytes), so no text costs more than this.
pub const MAX_PREFIX_BYTES: usize = 2 << 20;

/// Tokens a truncation prefix must hold beyond the model's limit, so that a
/// cut inside a word (when no whitespace is near) cannot reach the tokens
/// the model keeps.
pub(super) const SPLIT_MARGIN_TOKENS: usize = 64;

/// How far past a wanted cut the next whitespace is looked for. Only a
/// "word" longer than this is cut inside (its pieces may then tokenize
/// differently at the cut, where BERT's WordPiece makes one `[UNK]` of
/// any word over 100 characters anyway).
const SPLIT_SEARCH_BYTES: usize = 1 << 20;

/// Where to cut `text` at or after byte `at`: just before the first
/// whitespace character within [`SPLIT_SEARCH_BYTES`], else at the next
/// character boundary, or the end of the text.
pub(super) fn split_point(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    let mut at = at;
    while !text.is_char_boundary(at) {
        at += 1;
    }
    let mut near = (at + SPLIT_SEARCH_BYTES).min(text.len());
    while !text.is_char_boundary(near) {
        near -= 1;
    }
    match text[at..near].find(char::is_whitespace) {
        Some(offset) => at + offset,
        // The end of the text is as good a cut as a space.
        None if near == text.len() => near,
        None => at,
    }
}

/// The pieces of about [`LONG_TEXT_BYTES`] a long text is tokenized in, cut
/// where it may be split (an empty text is one empty piece).
pub(super) fn pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let end = split_point(text, start + LONG_TEXT_BYTES);
        let piece = &text[start..end];
        start = end;
        done = end >= text.len();
        Some(piece)
    })
}
