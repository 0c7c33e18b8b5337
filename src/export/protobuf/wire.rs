//! The protobuf wire format, written straight into the response buffer: no message structs
//! are built, so encoding a series allocates nothing.
//!
//! A nested message is written in place behind a one-byte length placeholder; when the message
//! turns out to be 128 bytes or longer, the body moves up by the extra length bytes
//! (`copy_within`). Series messages are mostly short, and a family moves once, so this costs
//! less than sizing every message first or encoding it into a scratch buffer to copy.
//! Lengths are always the minimal varint.

/// Wire types.
const VARINT: u32 = 0;
const I64: u32 = 1;
const LEN: u32 = 2;

/// Appends `v` as a base-128 varint.
#[inline]
pub(super) fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes [`varint`] takes for `v`.
#[inline]
fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits, 1 for 0.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
fn key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
    varint(out, u64::from(field << 3 | wire_type));
}

/// A `uint64` (or enum) field.
#[inline]
pub(super) fn uint64(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, VARINT);
    varint(out, v);
}

/// An `int64` field (two's complement: a negative value takes 10 bytes).
#[inline]
pub(super) fn int64(out: &mut Vec<u8>, field: u32, v: i64) {
    uint64(out, field, v as u64);
}

/// An `int32` field (sign-extended to 64 bits, as the wire format wants).
#[inline]
pub(super) fn int32(out: &mut Vec<u8>, field: u32, v: i32) {
    int64(out, field, i64::from(v));
}

/// A `sint32` / `sint64` field (zigzag).
#[inline]
pub(super) fn sint64(out: &mut Vec<u8>, field: u32, v: i64) {
    uint64(out, field, zigzag(v));
}

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// A `double` field.
#[inline]
pub(super) fn double(out: &mut Vec<u8>, field: u32, v: f64) {
    key(out, field, I64);
    out.extend_from_slice(&v.to_le_bytes());
}

/// A `string` field.
#[inline]
pub(super) fn string(out: &mut Vec<u8>, field: u32, s: &str) {
    key(out, field, LEN);
    varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A `LabelPair` message field (`string name = 1; string value = 2;`), sized up front: no
/// length placeholder, one capacity check (labels are most of a counter's bytes; ~4 ns/series
/// less than through [`message`] in a 200k-counter render).
#[inline]
pub(super) fn label_pair(out: &mut Vec<u8>, field: u32, name: &str, value: &str) {
    let len = 2 + varint_len(name.len() as u64) + name.len() + varint_len(value.len() as u64) + value.len();
    out.reserve(len + 6);
    key(out, field, LEN);
    varint(out, len as u64);
    string(out, 1, name);
    string(out, 2, value);
}

/// A message field whose body `body` writes.
#[inline]
pub(super) fn message(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    key(out, field, LEN);
    delimited(out, body);
}

/// What `body` writes, preceded by its length as a varint (a message field's payload, or one
/// message of a length-delimited stream).
#[inline]
pub(super) fn delimited(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.push(0);
    body(out);
    let end = out.len();
    let len = end - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
        return;
    }
    let n = varint_len(len as u64);
    out.resize(end + n - 1, 0);
    out.copy_within(at + 1..end, at + n);
    let mut v = len as u64;
    for b in &mut out[at..at + n] {
        *b = v as u8 | 0x80;
        v >>= 7;
    }
    out[at + n - 1] &= 0x7f;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_prost() {
        for v in [0, 1, 127, 128, 300, 16_383, 16_384, u64::from(u32::MAX), u64::MAX] {
            let mut ours = Vec::new();
            varint(&mut ours, v);
            let mut theirs = Vec::new();
            prost::encoding::encode_varint(v, &mut theirs);
            assert_eq!(ours, theirs, "{v}");
            assert_eq!(varint_len(v), theirs.len(), "{v}");
        }
    }

    #[test]
    fn long_bodies_get_minimal_length_prefixes() {
        for len in [0, 1, 127, 128, 129, 16_383, 16_384, 70_000] {
            let mut out = vec![9];
            delimited(&mut out, |out| out.extend(std::iter::repeat_n(7u8, len)));
            let mut rest = &out[1..];
            assert_eq!(prost::encoding::decode_varint(&mut rest).unwrap(), len as u64);
            assert_eq!(rest.len(), len);
            assert!(rest.iter().all(|&b| b == 7));
            assert_eq!(out[0], 9);
            assert_eq!(out.len(), 1 + varint_len(len as u64) + len);
        }
    }

    #[test]
    fn scalars_decode_with_prost() {
        use crate::export::protobuf::proto::{Exemplar, Timestamp};
        use prost::Message;
        let mut out = Vec::new();
        label_pair(&mut out, 1, "trace_id", "abc");
        let long = "x".repeat(200);
        label_pair(&mut out, 1, "long", &long);
        double(&mut out, 2, -0.25);
        message(&mut out, 3, |out| {
            int64(out, 1, -5);
            int32(out, 2, -7);
        });
        let e = Exemplar::decode(out.as_slice()).unwrap();
        assert_eq!(e.label[0].name.as_deref(), Some("trace_id"));
        assert_eq!(e.label[0].value.as_deref(), Some("abc"));
        assert_eq!((e.label[1].name.as_deref(), e.label[1].value.as_deref()), (Some("long"), Some(long.as_str())));
        assert_eq!(e.value, Some(-0.25));
        assert_eq!(e.timestamp, Some(Timestamp { seconds: -5, nanos: -7 }));
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }
}
