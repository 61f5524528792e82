//! A bounded dry run of the pickle inside a `pytorch_model.bin`, before
//! candle reads it for real.
//!
//! candle's pickle reader builds a tree of objects, clones memoized ones on
//! every get, and recurses to compare, print and drop them. So a small,
//! hostile file could overflow the stack (a 200,000-level nesting), ask for
//! memory without bound (a string header claiming 4 GB, or memo gets that
//! double an object at every step) or spin quadratically on a huge stack.
//! This pass runs the same opcodes candle knows over a stack of sizes only
//! (how deep and how many objects each entry is) and refuses a pickle that
//! would exceed limits no real checkpoint comes near. Anything it does not
//! refuse, candle reads; anything candle itself rejects is left to candle.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Nesting depth: a state dict is about 5 levels deep.
const MAX_DEPTH: usize = 100;
/// Objects one stack entry may expand to (distilbert-base: ~2,000).
const MAX_OBJECTS: u64 = 1 << 24;
/// Live stack entries and memo slots.
const MAX_ENTRIES: usize = 1 << 20;
/// One string (a tensor name or class name is tens of bytes).
const MAX_STRING: u32 = 1 << 20;
/// The pickle itself (distilbert-base's is 30 KB).
const MAX_PICKLE_BYTES: u64 = 256 << 20;

/// What the dry run keeps per stack entry.
#[derive(Debug, Clone, Copy)]
enum Entry {
    Mark,
    Object { depth: usize, objects: u64 },
}

const LEAF: Entry = Entry::Object {
    depth: 1,
    objects: 1,
};

/// Checks every `*data.pkl` in the archive at `path`. The error says why
/// the file is refused; I/O and format errors are left for candle to report.
pub fn check(path: &Path) -> Result<(), String> {
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(());
    };
    let Ok(mut archive) = zip::ZipArchive::new(BufReader::new(file)) else {
        return Ok(());
    };
    for index in 0..archive.len() {
        let Ok(entry) = archive.by_index(index) else {
            return Ok(());
        };
        let Ok(name) = entry.name().map(|name| name.into_owned()) else {
            return Ok(());
        };
        if !name.ends_with("data.pkl") {
            continue;
        }
        let mut reader = BufReader::new(entry.take(MAX_PICKLE_BYTES + 1));
        match dry_run(&mut reader) {
            Ok(()) => {}
            Err(Refused(why)) => return Err(format!("{name}: {why}")),
        }
    }
    Ok(())
}

/// Checks that every tensor the pickle describes lies inside the bytes its
/// storage entry holds in the archive, before candle allocates it from the
/// pickle's (possibly lying) shape.
pub fn check_storage<'a>(
    path: &Path,
    tensors: impl Iterator<Item = &'a candle_core::pickle::TensorInfo>,
) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|err| err.to_string())?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|err| err.to_string())?;
    for tensor in tensors {
        let stored = archive
            .by_name(&tensor.path)
            .map(|entry| entry.size())
            .map_err(|_| format!("{}: no storage entry {}", tensor.name, tensor.path))?;
        let elements = tensor.layout.shape().elem_count() as u128;
        let needed = (tensor.layout.start_offset() as u128 + elements)
            * tensor.dtype.size_in_bytes() as u128;
        if needed > u128::from(stored) {
            return Err(format!(
                "{} claims shape {:?} ({needed} bytes) but its storage holds {stored} bytes",
                tensor.name,
                tensor.layout.dims()
            ));
        }
    }
    Ok(())
}

/// Why a pickle is refused.
struct Refused(String);

fn refuse<T>(why: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(why.into()))
}

/// A stream that ended early or could not be read is not refused here:
/// candle reports it with its own message.
fn read_bytes<const N: usize>(r: &mut impl Read) -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    r.read_exact(&mut buf).ok().map(|()| buf)
}

struct Machine {
    stack: Vec<Entry>,
    memo: HashMap<u32, Entry>,
}

impl Machine {
    fn push(&mut self, entry: Entry) -> Result<(), Refused> {
        if let Entry::Object { depth, objects } = entry {
            if depth > MAX_DEPTH {
                return refuse(format!("nests deeper than {MAX_DEPTH} levels"));
            }
            if objects > MAX_OBJECTS {
                return refuse(format!("expands to more than {MAX_OBJECTS} objects"));
            }
        }
        if self.stack.len() >= MAX_ENTRIES {
            return refuse(format!(
                "holds more than {MAX_ENTRIES} objects on its stack"
            ));
        }
        self.stack.push(entry);
        Ok(())
    }

    /// Pops an entry (a missing one is candle's error to report).
    fn pop(&mut self) -> Option<Entry> {
        self.stack.pop()
    }

    /// Pops up to the last mark: the popped objects' deepest depth and
    /// their total count, or None without a mark.
    fn pop_to_mark(&mut self) -> Option<(usize, u64)> {
        let mark = self.stack.iter().rposition(|e| matches!(e, Entry::Mark))?;
        let popped = self.stack.split_off(mark + 1);
        self.stack.pop();
        Some(popped.iter().fold((0, 0), |(d, n), e| {
            let (depth, objects) = size(*e);
            (d.max(depth), n.saturating_add(objects))
        }))
    }

    /// The container on top absorbs children of (depth, objects).
    fn absorb(&mut self, depth: usize, objects: u64) -> Result<(), Refused> {
        let Some(top) = self.pop() else { return Ok(()) };
        let (d, n) = size(top);
        self.push(Entry::Object {
            depth: d.max(depth + 1),
            objects: n.saturating_add(objects),
        })
    }
}

fn size(entry: Entry) -> (usize, u64) {
    match entry {
        Entry::Mark => (1, 1),
        Entry::Object { depth, objects } => (depth, objects),
    }
}

/// A new container of the given children.
fn container(children: &[Entry]) -> Entry {
    let (depth, objects) = children.iter().fold((0, 1u64), |(d, n), e| {
        let (depth, objects) = size(*e);
        (d.max(depth), n.saturating_add(objects))
    });
    Entry::Object {
        depth: depth + 1,
        objects,
    }
}

fn dry_run(r: &mut impl BufRead) -> Result<(), Refused> {
    let mut m = Machine {
        stack: Vec::new(),
        memo: HashMap::new(),
    };
    let mut read = 0u64;
    loop {
        let Some([op]) = read_bytes::<1>(r) else {
            return Ok(());
        };
        read += 1;
        if read > MAX_PICKLE_BYTES {
            return refuse(format!("is larger than {MAX_PICKLE_BYTES} bytes"));
        }
        match op {
            0x80 => {
                read_bytes::<1>(r);
            }
            b'c' => {
                for _ in 0..2 {
                    let mut line = Vec::new();
                    let limit = u64::from(MAX_STRING) + 1;
                    if (&mut *r).take(limit).read_until(b'\n', &mut line).is_err() {
                        return Ok(());
                    }
                    if line.len() as u64 >= limit {
                        return refuse(format!("has a class name longer than {MAX_STRING} bytes"));
                    }
                }
                m.push(LEAF)?;
            }
            b'q' => {
                let Some([id]) = read_bytes::<1>(r) else {
                    return Ok(());
                };
                memo_put(&mut m, u32::from(id))?;
            }
            b'r' => {
                let Some(id) = read_bytes::<4>(r) else {
                    return Ok(());
                };
                memo_put(&mut m, u32::from_le_bytes(id))?;
            }
            b'h' | b'j' => {
                let id = if op == b'h' {
                    read_bytes::<1>(r).map(|[id]| u32::from(id))
                } else {
                    read_bytes::<4>(r).map(u32::from_le_bytes)
                };
                let Some(entry) = id.and_then(|id| m.memo.get(&id).copied()) else {
                    return Ok(());
                };
                m.push(entry)?;
            }
            b')' | b']' | b'}' | b'd' | b'N' | 0x88 | 0x89 => {
                // `d` is read as an empty dict by candle 0.11, as here.
                m.push(LEAF)?;
            }
            b'(' => m.push(Entry::Mark)?,
            b'X' => {
                let Some(len) = read_bytes::<4>(r).map(u32::from_le_bytes) else {
                    return Ok(());
                };
                if len > MAX_STRING {
                    return refuse(format!(
                        "has a {len}-byte string (the limit is {MAX_STRING})"
                    ));
                }
                let copied =
                    std::io::copy(&mut (&mut *r).take(u64::from(len)), &mut std::io::sink());
                if copied.ok() != Some(u64::from(len)) {
                    return Ok(());
                }
                read += u64::from(len);
                m.push(LEAF)?;
            }
            b'J' | b'G' | b'K' | b'M' => {
                let skipped = match op {
                    b'J' => read_bytes::<4>(r).is_some(),
                    b'G' => read_bytes::<8>(r).is_some(),
                    b'K' => read_bytes::<1>(r).is_some(),
                    _ => read_bytes::<2>(r).is_some(),
                };
                if !skipped {
                    return Ok(());
                }
                m.push(LEAF)?;
            }
            0x8a => {
                let Some([n]) = read_bytes::<1>(r) else {
                    return Ok(());
                };
                if n > 8 {
                    return refuse(format!("has a {n}-byte integer (candle reads at most 8)"));
                }
                for _ in 0..n {
                    if read_bytes::<1>(r).is_none() {
                        return Ok(());
                    }
                }
                m.push(LEAF)?;
            }
            b't' => {
                let Some((depth, objects)) = m.pop_to_mark() else {
                    return Ok(());
                };
                m.push(Entry::Object {
                    depth: depth + 1,
                    objects: objects.saturating_add(1),
                })?;
            }
            b'Q' => {
                let Some(id) = m.pop() else { return Ok(()) };
                m.push(container(&[id]))?;
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                if m.stack.len() < n {
                    return Ok(());
                }
                let children = m.stack.split_off(m.stack.len() - n);
                m.push(container(&children))?;
            }
            b'R' | b'b' | 0x81 => {
                let (Some(args), Some(callable)) = (m.pop(), m.pop()) else {
                    return Ok(());
                };
                m.push(container(&[callable, args]))?;
            }
            b'a' => {
                let Some(value) = m.pop() else { return Ok(()) };
                let (depth, objects) = size(value);
                m.absorb(depth, objects)?;
            }
            b's' => {
                let (Some(value), Some(key)) = (m.pop(), m.pop()) else {
                    return Ok(());
                };
                let (vd, vn) = size(value);
                let (kd, kn) = size(key);
                m.absorb(vd.max(kd), vn.saturating_add(kn))?;
            }
            b'e' | b'u' => {
                let Some((depth, objects)) = m.pop_to_mark() else {
                    return Ok(());
                };
                m.absorb(depth, objects)?;
            }
            b'.' => return Ok(()),
            // candle rejects any other opcode itself.
            _ => return Ok(()),
        }
    }
}

fn memo_put(m: &mut Machine, id: u32) -> Result<(), Refused> {
    let Some(&top) = m.stack.last() else {
        return Ok(());
    };
    if m.memo.len() >= MAX_ENTRIES && !m.memo.contains_key(&id) {
        return refuse(format!("memoizes more than {MAX_ENTRIES} objects"));
    }
    m.memo.insert(id, top);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pickle: &[u8]) -> Result<(), String> {
        dry_run(&mut &pickle[..]).map_err(|Refused(why)| why)
    }

    #[test]
    fn a_shallow_state_dict_passes() {
        // {"a": (1, [2, 3])}
        let pickle = b"\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01](K\x02K\x03e\x86u.";
        assert_eq!(run(pickle), Ok(()));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut pickle = b"\x80\x02N".to_vec();
        pickle.extend(std::iter::repeat_n(0x85u8, 200_000));
        pickle.push(b'.');
        assert!(run(&pickle).unwrap_err().contains("deeper"));
    }

    #[test]
    fn memo_doubling_is_refused() {
        // x = None; then 40 times: x = (x, x), memoized again.
        let mut pickle = b"\x80\x02Nq\x00".to_vec();
        for _ in 0..40 {
            pickle.extend_from_slice(b"h\x00h\x00\x86q\x00");
        }
        assert!(run(&pickle).unwrap_err().contains("more than"));
    }

    #[test]
    fn a_string_claiming_gigabytes_is_refused() {
        let pickle = b"\x80\x02X\xff\xff\xff\xffabc";
        assert!(run(pickle).unwrap_err().contains("string"));
    }
}
