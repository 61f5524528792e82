//! Text pairs as HF's `tokenizer(first, second, truncation=True)` cuts
//! them: longest-first, decided on each side's whole length.
//!
//! The `tokenizers` crate (0.23.2) stops tokenizing each side at the
//! truncation length before it cuts a pair (its early exit), so two sides
//! over the limit look equally long, and on an odd budget (BERT's 509) the
//! odd token goes to the wrong side. transformers decides on the whole
//! lengths. Here a side's length is known exactly wherever the cut depends
//! on it, and counted (a piece at a time, never held) only where it does.

use std::cmp::Ordering;

use tokenizers::{Encoding, TruncationDirection};

use super::{into_encoded, pieces, Encoded, TextTokenizer, TokenizerError, LONG_TEXT_BYTES};

/// What is known of one side's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Length {
    Exact(usize),
    /// More than the pair's room: how many more is counted only where it
    /// decides the cut.
    Over,
}

impl TextTokenizer {
    /// A pair of texts, as HF's `tokenizer(first, second, truncation=True)`
    /// encodes it: both with the special tokens of the tokenizer's pair
    /// template, and where they are too long together, tokens cut from the
    /// longer one first (`longest_first`), from its end, or from its start
    /// with `keep_end`. A long side is tokenized a bounded piece at a time,
    /// as [`Self::encode`] does.
    pub fn encode_pair(
        &self,
        first: &str,
        second: &str,
        keep_end: bool,
    ) -> Result<Encoded, TokenizerError> {
        let room = self.room(true);
        let (mut a, a_len, a_read_cut) = self.side(first, room, keep_end)?;
        let (mut b, b_len, b_read_cut) = self.side(second, room, keep_end)?;
        // Lengths past the room stand in for "longer" where only the order
        // matters: both sides then keep half the room, and on an even room
        // the order does not matter either.
        let even = room.is_multiple_of(2);
        let (la, lb) = match (a_len, b_len) {
            (Length::Exact(x), Length::Exact(y)) => (x, y),
            (Length::Exact(x), Length::Over) if x <= room || even => (x, room + 1),
            (Length::Over, Length::Exact(y)) if y <= room || even => (room + 1, y),
            (Length::Over, Length::Over) if even => (room + 1, room + 1),
            (Length::Exact(x), Length::Over) => (x, self.count_up_to(second, x + 1)?),
            (Length::Over, Length::Exact(y)) => (self.count_up_to(first, y + 1)?, y),
            (Length::Over, Length::Over) => match self.compare_lengths(first, second)? {
                Ordering::Greater => (room + 2, room + 1),
                Ordering::Less => (room + 1, room + 2),
                Ordering::Equal => (room + 1, room + 1),
            },
        };
        let (keep_a, keep_b) = longest_first(room, la, lb);
        let direction = match keep_end {
            true => TruncationDirection::Left,
            false => TruncationDirection::Right,
        };
        a.truncate(keep_a, 0, direction);
        b.truncate(keep_b, 0, direction);
        let mut encoded = into_encoded(self.inner.post_process(a, Some(b), true)?);
        encoded.truncated = a_read_cut || b_read_cut || keep_a < la || keep_b < lb;
        Ok(encoded)
    }

    /// One side's tokens, without special tokens: the whole text when it is
    /// short, else at most `room` tokens read a piece at a time from its
    /// start (or end); what is known of its length; and whether reading
    /// stopped short of the text (past MAX_PREFIX_BYTES, with fewer tokens
    /// than the room: what was read is then the side, as for one text).
    fn side(
        &self,
        text: &str,
        room: usize,
        from_end: bool,
    ) -> Result<(Encoding, Length, bool), TokenizerError> {
        if text.len() <= LONG_TEXT_BYTES {
            let whole = self.untruncated.encode(text, false)?;
            let length = Length::Exact(whole.len());
            return Ok((whole, length, false));
        }
        let (content, cut) = self.bounded_content(text, room, from_end)?;
        let length = content.len();
        Ok(match (cut, length >= room) {
            (false, _) => (content, Length::Exact(length), false),
            (true, true) => (content, Length::Over, false),
            (true, false) => (content, Length::Exact(length), true),
        })
    }

    /// The text's tokens, counted a piece at a time until `limit`: the count,
    /// or `limit` where there are at least that many.
    fn count_up_to(&self, text: &str, limit: usize) -> Result<usize, TokenizerError> {
        let mut count = 0;
        for piece in pieces(text) {
            count += self.untruncated.encode(piece, false)?.len();
            if count >= limit {
                return Ok(limit);
            }
        }
        Ok(count)
    }

    /// Which of two texts has more tokens, counted a piece of each at a time
    /// in step, so the cost is that of the shorter.
    fn compare_lengths(&self, first: &str, second: &str) -> Result<Ordering, TokenizerError> {
        let (mut a, mut b) = (pieces(first), pieces(second));
        let (mut na, mut nb) = (0usize, 0usize);
        let (mut a_done, mut b_done) = (false, false);
        let count =
            |piece: &str| Ok::<_, TokenizerError>(self.untruncated.encode(piece, false)?.len());
        loop {
            match (a_done, b_done) {
                (true, true) => return Ok(na.cmp(&nb)),
                (true, false) if nb > na => return Ok(Ordering::Less),
                (false, true) if na > nb => return Ok(Ordering::Greater),
                _ => {}
            }
            if !a_done && (na <= nb || b_done) {
                match a.next() {
                    Some(piece) => na += count(piece)?,
                    None => a_done = true,
                }
            } else {
                match b.next() {
                    Some(piece) => nb += count(piece)?,
                    None => b_done = true,
                }
            }
        }
    }
}

/// The longest-first cut of two sides of `la` and `lb` tokens into `room`,
/// as transformers (and `tokenizers::utils::truncation`) computes it: the
/// tokens to keep of each. The shorter side is kept whole if it leaves the
/// longer at least as much; else each keeps half the room, the longer one
/// (the second, when they tie) the odd token.
pub(super) fn longest_first(room: usize, la: usize, lb: usize) -> (usize, usize) {
    if la + lb <= room {
        return (la, lb);
    }
    let swap = la > lb;
    let mut short = la.min(lb);
    let mut long = if short > room {
        short
    } else {
        short.max(room - short)
    };
    if short + long > room {
        short = room / 2;
        long = short + room % 2;
    }
    let (keep_a, keep_b) = if swap { (long, short) } else { (short, long) };
    (keep_a.min(la), keep_b.min(lb))
}

#[cfg(test)]
mod tests {
    use super::longest_first;

    #[test]
    fn the_longer_side_keeps_the_odd_token() {
        // BERT's odd budget, 512 less three special tokens.
        assert_eq!(longest_first(509, 900, 600), (255, 254));
        assert_eq!(longest_first(509, 600, 900), (254, 255));
        assert_eq!(longest_first(509, 700, 700), (254, 255));
        assert_eq!(longest_first(508, 900, 600), (254, 254));
        // Only the longer cut; nothing cut.
        assert_eq!(longest_first(509, 100, 900), (100, 409));
        assert_eq!(longest_first(509, 900, 100), (409, 100));
        assert_eq!(longest_first(509, 200, 300), (200, 300));
        assert_eq!(longest_first(509, 0, 0), (0, 0));
    }
}
