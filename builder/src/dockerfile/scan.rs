//! Byte searches that read eight bytes at a time ("SWAR": a `u64` holds
//! eight bytes, and a little arithmetic tests all of them at once). The
//! parser searches many short strings (lines, flag values), where setting up
//! `memchr` costs more than it saves, and a few long ones (the whole file),
//! where a byte-by-byte loop is slow.

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const LOWS: u64 = u64::from_ne_bytes([0x7f; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Eight bytes of `chunk` (which has at least eight) as a little-endian word,
/// so that the lowest set bit belongs to the first byte.
fn word(chunk: &[u8]) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&chunk[..8]);
    u64::from_le_bytes(bytes)
}

/// The bytes of `word` that are zero, as their high bits. Exact for every
/// byte: no borrow crosses from one byte into the next.
fn zero_bytes(word: u64) -> u64 {
    !(((word & LOWS) + LOWS) | word | LOWS)
}

/// The bytes of `word` that equal `byte`, as their high bits.
fn bytes_equal(word: u64, byte: u8) -> u64 {
    zero_bytes(word ^ (ONES * u64::from(byte)))
}

/// The bytes of `word` below `limit` (at most 0x80), as their high bits.
fn bytes_below(word: u64, limit: u8) -> u64 {
    // Bytes with the high bit set are never below the limit; for the others,
    // adding `0x80 - limit` sets the high bit exactly when they are not.
    !((word & LOWS) + ONES * u64::from(0x80 - limit)) & !word & HIGHS
}

/// The offset of the first byte of `bytes` whose high bit is set in the
/// per-chunk `mask`, or `None`.
fn find_by(bytes: &[u8], mask: impl Fn(u64) -> u64, test: impl Fn(u8) -> bool) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(8);
    let mut start = 0;
    for chunk in &mut chunks {
        let hits = mask(word(chunk));
        if hits != 0 {
            return Some(start + (hits.trailing_zeros() / 8) as usize);
        }
        start += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| test(b))
        .map(|i| start + i)
}

/// The offset of the first `byte` in `bytes`.
pub(crate) fn find_byte(bytes: &[u8], byte: u8) -> Option<usize> {
    find_by(bytes, |w| bytes_equal(w, byte), |b| b == byte)
}

/// The offset of the first `a` or `b` in `bytes`.
pub(crate) fn find_either(bytes: &[u8], a: u8, b: u8) -> Option<usize> {
    find_by(
        bytes,
        |w| bytes_equal(w, a) | bytes_equal(w, b),
        |c| c == a || c == b,
    )
}

/// The offset of the first byte that a JSON string must escape: a control
/// character, `"` or `\`.
pub(crate) fn find_json_escape(bytes: &[u8]) -> Option<usize> {
    find_by(
        bytes,
        |w| bytes_below(w, 0x20) | bytes_equal(w, b'"') | bytes_equal(w, b'\\'),
        |c| c < 0x20 || c == b'"' || c == b'\\',
    )
}

/// The offset of the first byte that may end a word: a space or control
/// character (below `!`), a byte of a non-ASCII char, or one of `stops`.
/// Words are mostly plain ASCII, so this skips them eight bytes at a time;
/// the caller decides exactly what the byte found means.
pub(crate) fn find_word_end(bytes: &[u8], stops: [u8; 3]) -> Option<usize> {
    let [a, b, c] = stops;
    find_by(
        bytes,
        |w| {
            bytes_below(w, b'!')
                | (w & HIGHS)
                | bytes_equal(w, a)
                | bytes_equal(w, b)
                | bytes_equal(w, c)
        },
        |x| !(b'!'..0x80).contains(&x) || x == a || x == b || x == c,
    )
}

/// How many times `byte` occurs in `bytes`.
pub(crate) fn count_byte(bytes: &[u8], byte: u8) -> usize {
    let mut chunks = bytes.chunks_exact(8);
    let mut count = 0;
    for chunk in &mut chunks {
        count += bytes_equal(word(chunk), byte).count_ones() as usize;
    }
    count + chunks.remainder().iter().filter(|&&b| b == byte).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_and_counts() {
        let text = b"0123456789abcdef\nx\"y\\z\x01";
        assert_eq!(find_byte(text, b'\n'), Some(16));
        assert_eq!(find_byte(text, b'q'), None);
        assert_eq!(find_either(text, b'"', b'\\'), Some(18));
        assert_eq!(find_json_escape(text), Some(16));
        assert_eq!(
            find_json_escape(b"plain text, no escapes \x7f\xc3\xa9"),
            None
        );
        assert_eq!(count_byte(b"a\nb\n\n0123456789\n", b'\n'), 4);
        assert_eq!(count_byte(b"", b'\n'), 0);
    }

    proptest! {
        #[test]
        fn same_as_byte_by_byte(bytes in prop::collection::vec(any::<u8>(), 0..40), byte: u8, other: u8) {
            prop_assert_eq!(find_byte(&bytes, byte), bytes.iter().position(|&b| b == byte));
            prop_assert_eq!(
                find_either(&bytes, byte, other),
                bytes.iter().position(|&b| b == byte || b == other)
            );
            prop_assert_eq!(
                find_json_escape(&bytes),
                bytes.iter().position(|&b| b < 0x20 || b == b'"' || b == b'\\')
            );
            prop_assert_eq!(count_byte(&bytes, byte), bytes.iter().filter(|&&b| b == byte).count());
            let stops = [byte, other, b'"'];
            prop_assert_eq!(
                find_word_end(&bytes, stops),
                bytes.iter().position(|&b| !(b'!'..0x80).contains(&b) || stops.contains(&b))
            );
        }
    }
}
