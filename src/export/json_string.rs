//! JSON string literals, shared by the JSON render (`export::json`) and OTLP/HTTP JSON
//! (`export::otlp::json`), so both escape alike (as `serde_json` does; `export::json`'s tests
//! pin it against serde_json byte for byte).

#![forbid(unsafe_code)]

/// A JSON string literal, escaped exactly as `serde_json` escapes: `"` and `\` with a
/// backslash, `\b \f \n \r \t` by name, other control characters (below U+0020) as `\u00XX`;
/// everything else (including non-ASCII) verbatim.
pub(crate) fn string(out: &mut String, s: &str) {
    out.push('"');
    // Almost every name, label and help text needs no escape: one pass eight bytes at a time
    // decides, then one copy.
    if needs_escaping(s.as_bytes()) {
        escape_into(out, s);
    } else {
        out.push_str(s);
    }
    out.push('"');
}

/// Whether any byte of `s` is a control character (below 0x20), `"` or `\`. Eight bytes at a
/// time with the SWAR tests of "Bit Twiddling Hacks": `(x - n·0x01…) & !x & 0x80…` is non-zero
/// exactly when some byte of `x` is below `n` (`haszero` is the case `n = 1`, applied to `x`
/// xor-ed with the byte sought).
pub(crate) fn needs_escaping(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    fn below(x: u64, n: u8) -> u64 {
        x.wrapping_sub(ONES * u64::from(n)) & !x
    }
    fn word(x: u64) -> u64 {
        below(x, 0x20) | below(x ^ (ONES * u64::from(b'"')), 1) | below(x ^ (ONES * u64::from(b'\\')), 1)
    }
    if s.len() < 8 {
        return s.iter().any(|&b| needs_escape(b));
    }
    let load = |at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().expect("eight bytes"));
    // Whole words, then the last eight bytes (overlapping the last word: a byte tested twice
    // is harmless).
    let mut found = word(load(s.len() - 8));
    for at in (0..s.len() - 8).step_by(8) {
        found |= word(load(at));
    }
    found & HIGH != 0
}

pub(crate) fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

#[cold]
fn escape_into(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        // `b` is ASCII, so `i` and `i + 1` are character boundaries.
        out.push_str(&s[start..i]);
        start = i + 1;
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
        }
    }
    out.push_str(&s[start..]);
}
