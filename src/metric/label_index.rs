//! The look-up table behind [`crate::Family::with`]: label values → series, with lock-free
//! reads that write nothing shared (no lock, no reference count, no arc-swap debt slot).
//!
//! # Structure
//! An open-addressing table (linear probing, load factor ≤ 1/2) of pointers to entries. Each
//! entry (hash, series, and its label values [encoded](encode) as a few words, which a look-up
//! compares as one slice) is written once into the index's arenas (chunks that never move:
//! 40 bytes plus the key's words, no allocation of its own) and never changes; tables only grow
//! (×2), and a replaced table is kept, not freed, until the index is dropped. Tables double, so
//! all tables together hold fewer than twice the slots of the current one: memory stays O(n).
//!
//! # Synchronization
//! * Writers are serialised by the index's own mutex: inserting needs the [`IndexWriter`] guard
//!   from [`LabelIndex::write`], so there is one writer at a time by construction.
//! * An entry is fully written before its pointer is stored into a slot with **Release**; a
//!   reader loads slots with **Acquire**, so it sees the entry's contents.
//! * A grown table is filled completely before it is published with a **Release** store of
//!   `table`; readers load it with **Acquire**.
//! * Nothing a reader can reach is freed before `Drop` (which needs `&mut self`), so every
//!   pointer a reader loads stays valid for the `&self` it holds. A reader still probing an
//!   older table may miss an entry inserted since; it then takes the caller's slow path, which
//!   looks again under the mutex.

use std::{hash::BuildHasher, marker::PhantomData};

use crate::{
    store::Store,
    sync::{lock, AtomicPtr, Mutex, MutexGuard, Ordering},
};

/// One label set and its series. Immutable once published.
///
/// The key is its [encoding](encode) in words: the values' lengths (two `u32` a word), then
/// each value's bytes packed little-endian, zero-padded (an empty value takes no word). A look-up
/// encodes the values it is given the same way (on the stack), hashes the words and compares
/// them with an entry's key as one slice.
///
/// Entries and key words live in the index's arenas (chunks that never move or shrink), not in
/// an allocation each: 40 bytes of entry and the key's words, no allocator header.
struct Entry {
    hash: u64,
    store: Store,
    arity: u32,
    key_len: u32,
    /// `key_len` words in the index's key arena.
    key: *const u64,
}

impl Entry {
    #[inline(always)]
    fn key(&self) -> &[u64] {
        // SAFETY: `key` points at `key_len` initialised words in the key arena of the index
        // this entry belongs to; arena chunks never move, shrink or change once written, and
        // are freed only when the index drops (which needs `&mut`, so no `&Entry` is alive).
        unsafe { std::slice::from_raw_parts(self.key, self.key_len as usize) }
    }
}

// SAFETY: `key` is a shared pointer into immutable arena memory owned by the same index (see
// `Entry::key`); an `Entry` is never written after it is published, so sharing or sending it is
// as safe as sharing a `&[u64]` into that arena.
unsafe impl Send for Entry {}
// SAFETY: as above.
unsafe impl Sync for Entry {}

/// Append-only storage for the writer: chunks of fixed capacity, a new one when the last is
/// full, so an element never moves once written and pointers to it stay valid until the arena
/// drops. Elements are only ever appended with `Vec::push` (which writes past the initialised part
/// and never forms a reference to it), so readers holding pointers to earlier elements are
/// not disturbed.
struct Arena<T> {
    chunks: Vec<Vec<T>>,
    chunk: usize,
}

impl<T> Arena<T> {
    const fn new(chunk: usize) -> Arena<T> {
        Arena { chunks: Vec::new(), chunk }
    }

    /// Appends the `n` items `fill` pushes, contiguously; returns them (in the arena).
    fn push_with(&mut self, n: usize, fill: impl FnOnce(&mut dyn FnMut(T))) -> &[T] {
        if self.chunks.last().is_none_or(|c| c.capacity() - c.len() < n) {
            self.chunks.push(Vec::with_capacity(self.chunk.max(n)));
        }
        let chunk = self.chunks.last_mut().expect("a chunk with room");
        let (start, cap) = (chunk.len(), chunk.capacity());
        fill(&mut |item| chunk.push(item));
        assert!(chunk.len() - start == n && chunk.capacity() == cap, "exactly the reserved room was filled");
        &chunk[start..]
    }
}

/// Words of the packed lengths of `arity` values.
#[inline(always)]
fn len_words(arity: usize) -> usize {
    arity.div_ceil(2)
}

/// The words of a key: the values' lengths two to a word, then the values. When every value
/// has at most [`SHORT`] bytes, each takes exactly two words (its bytes by [`words`]), so a
/// look-up of a given arity has a fixed layout (loops unrolled); otherwise each value's bytes
/// are packed into `⌈len / 8⌉` words. Either way the bytes are little-endian, zero-padded and
/// read with (possibly overlapping) unaligned loads; the lengths come first, so the encoding of
/// a tuple of a given arity is injective.
#[inline(always)]
fn encode(values: &[&str], mut push: impl FnMut(u64)) {
    for pair in values.chunks(2) {
        push(pair.iter().enumerate().fold(0u64, |w, (i, v)| w | (v.len() as u64) << (32 * i)));
    }
    if values.iter().all(|v| v.len() <= SHORT) {
        for v in values {
            let (lo, hi) = words(v.as_bytes());
            push(lo);
            push(hi);
        }
    } else {
        for v in values {
            for c in v.as_bytes().chunks(8) {
                push(upto8(c));
            }
        }
    }
}

/// The number of words [`encode`] writes for `values`.
#[inline(always)]
fn encoded_len(values: &[&str]) -> usize {
    let text = if values.iter().all(|v| v.len() <= SHORT) {
        2 * values.len()
    } else {
        values.iter().map(|v| v.len().div_ceil(8)).sum::<usize>()
    };
    len_words(values.len()) + text
}

/// Keys of up to this many words are encoded on the stack by a look-up (two labels of up to
/// ~55 bytes each, four of ~24); longer ones take [`LabelIndex::get_heap`].
const INLINE: usize = 16;

struct Table {
    slots: Box<[AtomicPtr<Entry>]>,
    mask: usize,
}

impl Table {
    fn with_capacity(slots: usize) -> Box<Table> {
        debug_assert!(slots.is_power_of_two());
        let slots: Box<[AtomicPtr<Entry>]> = (0..slots).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect();
        let mask = slots.len() - 1;
        Box::new(Table { slots, mask })
    }

    /// Stores `e` in the first free slot of its probe sequence. Writer only.
    fn place(&self, e: *mut Entry, hash: u64) {
        let mut i = hash as usize & self.mask;
        loop {
            let slot = &self.slots[i];
            // Relaxed: only the (single, serialised) writer stores slots, and it sees its own
            // stores.
            if slot.load(Ordering::Relaxed).is_null() {
                // Release: publishes the entry's contents to readers' Acquire slot loads.
                slot.store(e, Ordering::Release);
                return;
            }
            i = (i + 1) & self.mask;
        }
    }
}

/// The writer's side, kept under the index's mutex: the entry count and every retired table
/// (freed, with the entries, when the index drops).
struct Writer {
    /// Entries inserted (every one is in the current table and in `entries`).
    len: usize,
    retired: Vec<*mut Table>,
    entries: Arena<Entry>,
    keys: Arena<u64>,
}

impl Default for Writer {
    fn default() -> Writer {
        Writer { len: 0, retired: Vec::new(), entries: Arena::new(1024), keys: Arena::new(8192) }
    }
}

// SAFETY: the raw pointers in `Writer` (retired tables, from `Box::into_raw`, and the
// entries' key pointers in its arena) are owned by the index they belong to and dereferenced
// only by it, under its mutex, by readers as the module docs describe, or in `Drop`; moving the
// bookkeeping to another thread is as safe as moving the allocations themselves.
unsafe impl Send for Writer {}

/// A grow-only map from label values to series with lock-free, write-free reads.
pub(crate) struct LabelIndex {
    table: AtomicPtr<Table>,
    /// Random per index, so label values chosen by a client cannot be crafted to collide.
    seeds: [u64; 2],
    /// Serialises inserts and owns every entry and table (see [`IndexWriter`]).
    writer: Mutex<Writer>,
    /// The tables and entries the pointers own (see the `Send`/`Sync` note below).
    _owns: PhantomData<(Box<Table>, Box<Entry>)>,
}

/// Draws the index's hash seeds: foldhash's random state; under loom a fixed one (SipHash with
/// zero keys), because loom replays a model many times and needs every run to probe the same
/// slots.
#[cfg(not(shardmetrics_loom))]
type LongHasher = hashbrown::DefaultHashBuilder;
#[cfg(shardmetrics_loom)]
type LongHasher = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;

/// Values up to this many bytes are encoded with [`words`] (two loads a word, no copy).
const SHORT: usize = 16;

/// A value of at most [`SHORT`] bytes as two words: its bytes packed little-endian and
/// zero-padded (bytes `0..8` in the first, `8..` in the second), read with (possibly
/// overlapping) unaligned loads instead of a copy. Exact, so injective for a fixed length.
#[inline(always)]
fn words(b: &[u8]) -> (u64, u64) {
    let n = b.len();
    debug_assert!(n <= SHORT);
    if n > 8 {
        (read_u64(&b[..8]), upto8(&b[8..]))
    } else {
        (upto8(b), 0)
    }
}

/// At most eight bytes packed little-endian, zero-padded: overlapping loads put every byte at
/// its own position (overlapped bytes are the same byte, so OR-ing them is exact).
#[inline(always)]
fn upto8(b: &[u8]) -> u64 {
    let n = b.len();
    debug_assert!(n <= 8);
    if n == 8 {
        read_u64(b)
    } else if n >= 4 {
        u64::from(read_u32(&b[..4])) | u64::from(read_u32(&b[n - 4..])) << (8 * (n - 4))
    } else if n > 0 {
        u64::from(b[0]) | u64::from(b[n / 2]) << (8 * (n / 2)) | u64::from(b[n - 1]) << (8 * (n - 1))
    } else {
        0
    }
}

#[inline(always)]
fn read_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("8 bytes"))
}

#[inline(always)]
fn read_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b.try_into().expect("4 bytes"))
}

/// The full 128-bit product folded to 64 bits (foldhash's and wyhash's mixing step).
#[inline(always)]
fn folded_multiply(x: u64, y: u64) -> u64 {
    let full = u128::from(x) * u128::from(y);
    (full as u64) ^ ((full >> 64) as u64)
}

impl LabelIndex {
    pub(crate) fn new() -> LabelIndex {
        let hasher = LongHasher::default();
        LabelIndex {
            table: AtomicPtr::new(Box::into_raw(Table::with_capacity(8))),
            seeds: [hasher.hash_one(0u64), hasher.hash_one(1u64) | 1],
            writer: Mutex::new(Writer::default()),
            _owns: PhantomData,
        }
    }

    /// The hash of an encoded key of `arity` values: one 64×64→128-bit multiply per two words
    /// (foldhash-style), randomly seeded per index; the arity goes into the seed (a key of one
    /// value and one of two values whose second is empty have the same words).
    #[inline(always)]
    fn hash(&self, key: &[u64], arity: usize) -> u64 {
        // Two words a multiply; a missing last word reads as 0, which is unambiguous because the
        // lengths (the first words) fix how many words follow.
        key.chunks(2).fold(self.seeds[0] ^ arity as u64, |acc, c| {
            folded_multiply(c[0] ^ acc, c.get(1).copied().unwrap_or(0) ^ self.seeds[1])
        })
    }

    /// The series for `values`, if it was inserted (and published to this reader).
    ///
    /// # Performance characteristics
    /// Wait-free and write-free: the values are encoded once into a few words on the stack
    /// (each read with at most four loads), the words folded into the hash with one multiply
    /// per two, then one Acquire load of the table and a linear probe that compares the stored
    /// hash, then the key words as one slice. Tuples of up to four values take a path
    /// specialised for their arity (loops unrolled).
    #[inline(always)]
    pub(crate) fn get(&self, values: &[&str]) -> Option<Store> {
        match values.len() {
            1 => self.get_n::<1>(values),
            2 => self.get_n::<2>(values),
            3 => self.get_n::<3>(values),
            4 => self.get_n::<4>(values),
            _ => self.get_any(values),
        }
    }

    #[inline(always)]
    fn get_n<const N: usize>(&self, values: &[&str]) -> Option<Store> {
        let values: &[&str; N] = values.try_into().ok()?;
        if values.iter().any(|v| v.len() > SHORT) {
            return self.get_inline(values);
        }
        // The fixed layout: length words, then two words per value (N ≤ 4).
        let mut buf = [0u64; 10];
        let lens = len_words(N);
        for (w, pair) in buf.iter_mut().zip(values.chunks(2)) {
            *w = pair.iter().enumerate().fold(0u64, |w, (i, v)| w | (v.len() as u64) << (32 * i));
        }
        for (i, v) in values.iter().enumerate() {
            (buf[lens + 2 * i], buf[lens + 2 * i + 1]) = words(v.as_bytes());
        }
        self.find(&buf[..lens + 2 * N], N)
    }

    #[inline(never)]
    fn get_any(&self, values: &[&str]) -> Option<Store> {
        self.get_inline(values)
    }

    #[inline(always)]
    fn get_inline(&self, values: &[&str]) -> Option<Store> {
        if encoded_len(values) > INLINE {
            return self.get_heap(values);
        }
        let mut buf = [0u64; INLINE];
        let mut k = 0;
        encode(values, |w| {
            buf[k] = w;
            k += 1;
        });
        self.find(&buf[..k], values.len())
    }

    /// The entry whose key is `key` (an encoding of `arity` values).
    #[inline(always)]
    fn find(&self, key: &[u64], arity: usize) -> Option<Store> {
        let hash = self.hash(key, arity);
        self.probe(hash, |e| {
            let own = e.key();
            e.arity as usize == arity && own.len() == key.len() && own.iter().zip(key).all(|(a, b)| a == b)
        })
    }

    /// A look-up whose key does not fit on the stack.
    #[cold]
    #[inline(never)]
    fn get_heap(&self, values: &[&str]) -> Option<Store> {
        let mut key = Vec::with_capacity(encoded_len(values));
        encode(values, |w| key.push(w));
        self.find(&key, values.len())
    }

    /// Linear probe from `hash` for the entry with that hash whose key satisfies `is_key`.
    #[inline(always)]
    fn probe(&self, hash: u64, is_key: impl Fn(&Entry) -> bool) -> Option<Store> {
        // Acquire: pairs with the Release publish of a grown table in `insert`.
        let table = self.table.load(Ordering::Acquire);
        // SAFETY: `table` is never null and is freed only in `Drop` (see the module docs).
        let table = unsafe { &*table };
        let mut i = hash as usize & table.mask;
        loop {
            // SAFETY: `i` is masked by `mask = slots.len() - 1` (a power of two minus one).
            let slot = unsafe { table.slots.get_unchecked(i) };
            // Acquire: pairs with the Release slot store in `Table::place`.
            let e = slot.load(Ordering::Acquire);
            if e.is_null() {
                return None;
            }
            // SAFETY: a non-null slot points at an entry that is fully written before it was
            // published and is freed only in `Drop`.
            let e = unsafe { &*e };
            if e.hash == hash && is_key(e) {
                return Some(e.store);
            }
            i = (i + 1) & table.mask;
        }
    }

    /// The writer: the index's mutex, held until the guard drops (the family holds it while it
    /// checks for a label set and registers it).
    pub(crate) fn write(&self) -> IndexWriter<'_> {
        IndexWriter { index: self, writer: lock(&self.writer) }
    }

    /// Adds `values → store`; `writer` is the index's own (held through its mutex).
    fn insert(&self, writer: &mut Writer, values: &[&str], store: Store) {
        // The key is encoded straight into the arena (no temporary).
        let words = writer.keys.push_with(encoded_len(values), |push| encode(values, push));
        let hash = self.hash(words, values.len());
        let entry = Entry { hash, store, arity: values.len() as u32, key_len: words.len() as u32, key: words.as_ptr() };
        // Readers only ever read through this pointer (`AtomicPtr` wants `*mut`).
        let entry = writer.entries.push_with(1, |push| push(entry)).as_ptr().cast_mut();
        writer.len += 1;
        // Relaxed: this thread is the only writer of `table` (serialised by the caller).
        let current = self.table.load(Ordering::Relaxed);
        // SAFETY: as in `get`; the writer also owns the right to read it under the mutex.
        let cap = unsafe { &*current }.slots.len();
        if writer.len * 2 > cap {
            let grown = Table::with_capacity(cap * 2);
            // SAFETY: `current` is live (freed only in `Drop`).
            for slot in unsafe { &*current }.slots.iter() {
                // Relaxed: this thread wrote every slot (under the mutex).
                let e = slot.load(Ordering::Relaxed);
                if !e.is_null() {
                    // SAFETY: a non-null slot is a live entry, freed only in `Drop`.
                    grown.place(e, unsafe { (*e).hash });
                }
            }
            grown.place(entry, hash);
            // Release: the grown table (and every slot in it) is complete before readers can
            // load it.
            self.table.store(Box::into_raw(grown), Ordering::Release);
            writer.retired.push(current);
        } else {
            // SAFETY: `current` is live (freed only in `Drop`).
            unsafe { &*current }.place(entry, hash);
        }
    }
}

/// One writer of a [`LabelIndex`] at a time: the guard of its mutex.
pub(crate) struct IndexWriter<'a> {
    index: &'a LabelIndex,
    writer: MutexGuard<'a, Writer>,
}

impl IndexWriter<'_> {
    /// The series for `values`, if inserted (under the lock: sees every insert).
    pub(crate) fn get(&self, values: &[&str]) -> Option<Store> {
        self.index.get(values)
    }

    /// Adds `values → store`. The caller has checked that `values` is absent (with `get`
    /// under this guard).
    pub(crate) fn insert(&mut self, values: &[&str], store: Store) {
        self.index.insert(&mut self.writer, values, store);
    }
}

impl Drop for LabelIndex {
    /// Frees every table and entry (`&mut self`: no reader or writer is left).
    fn drop(&mut self) {
        let writer = self.writer.get_mut();
        #[cfg(not(shardmetrics_loom))]
        let writer = writer.unwrap_or_else(std::sync::PoisonError::into_inner);
        #[cfg(shardmetrics_loom)]
        let writer = writer.unwrap();
        let current = self.table.load(Ordering::Relaxed);
        // The entries and keys are freed with the writer's arenas, after this.
        writer.len = 0;
        for t in writer.retired.drain(..).chain(std::iter::once(current)) {
            // SAFETY: each table pointer came from `Box::into_raw` and is freed exactly once
            // here (the current one is not in `retired`); `&mut self` excludes readers.
            drop(unsafe { Box::from_raw(t) });
        }
        self.table.store(std::ptr::null_mut(), Ordering::Relaxed);
    }
}

// `LabelIndex` is `Send + Sync` by the auto traits, not by an `unsafe impl`: its raw pointers
// sit in `AtomicPtr`s (always `Send + Sync`) and `_owns` makes the auto traits follow what it
// owns, so a future `!Send`/`!Sync` field of a table takes them away instead of being covered
// silently (an entry's one raw pointer is covered by the `unsafe impl`s on `Entry`). Shared
// access is the read protocol in the module docs.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<LabelIndex>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::CounterLoc;

    fn store(i: usize) -> Store {
        Store::Counter { index: i as u32, loc: CounterLoc::new(i).unwrap() }
    }

    #[test]
    #[cfg_attr(miri, ignore = "too slow under Miri")]
    fn grows_and_finds_everything() {
        let idx = LabelIndex::new();
        let keys: Vec<String> = (0..5000).map(|i| format!("v{i}")).collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(idx.get(&[k, "x"]), None);
            idx.write().insert(&[k, "x"], store(i));
            assert_eq!(idx.get(&[k, "x"]), Some(store(i)));
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(idx.get(&[k, "x"]), Some(store(i)));
            assert_eq!(idx.get(&[k]), None, "arity is part of the key");
            assert_eq!(idx.get(&["x", k]), None, "order is part of the key");
        }
        // Tuples too long for the packed hash take the value-by-value path, consistently.
        let long = "x".repeat(100);
        idx.write().insert(&[&long, "y"], store(9999));
        assert_eq!(idx.get(&[&long, "y"]), Some(store(9999)));
        assert_eq!(idx.get(&[&long, "z"]), None);
        // Packing is unambiguous: ("ab", "c") is not ("a", "bc").
        idx.write().insert(&["ab", "c"], store(1));
        assert_eq!(idx.get(&["a", "bc"]), None);
        // Arity is part of the key even where the words agree: ("q") is not ("q", "").
        idx.write().insert(&["q"], store(2));
        assert_eq!(idx.get(&["q", ""]), None);
        assert_eq!(idx.get(&["q"]), Some(store(2)));
        // Keys too long to encode on the stack take the heap path, consistently.
        let huge = "h".repeat(300);
        idx.write().insert(&[&huge, "y"], store(3));
        assert_eq!(idx.get(&[&huge, "y"]), Some(store(3)));
        let mut other = huge.clone();
        other.replace_range(299.., "i");
        assert_eq!(idx.get(&[&other, "y"]), None);
    }

    /// Up to eight bytes as one little-endian word, zero-padded (the obvious way).
    fn pack(chunk: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        u64::from_le_bytes(w)
    }

    #[test]
    fn words_are_the_bytes_packed_and_zero_padded() {
        let bytes: Vec<u8> = (1..=SHORT as u8).map(|b| b.wrapping_mul(37) | 1).collect();
        for n in 0..=SHORT {
            let b = &bytes[..n];
            let lo = pack(&b[..n.min(8)]);
            let hi = if n > 8 { pack(&b[8..]) } else { 0 };
            assert_eq!(words(b), (lo, hi), "length {n}");
        }
    }

    #[test]
    fn words_tell_apart_every_one_byte_change_of_every_short_length() {
        for n in 0..=SHORT {
            let base = vec![b'a'; n];
            let mut seen = vec![words(&base)];
            for i in 0..n {
                for b in [b'b', 0x00, 0x7f] {
                    let mut v = base.clone();
                    v[i] = b;
                    let w = words(&v);
                    assert!(!seen.contains(&w), "length {n}: byte {i} = {b:#x} collides");
                    seen.push(w);
                }
            }
        }
    }

    #[test]
    fn every_arity_finds_its_own_key_and_nothing_else() {
        let idx = LabelIndex::new();
        // Arities 1..=4 take `get_n`, longer ones `get_any`; values cover every `words` case
        // (empty, 1–3, 4–7, 8–16 bytes) and long ones (foldhash plus a byte compare).
        let pool = ["", "a", "200", "/api", "GET /x", "exactly8", "sixteen-bytes-ok", "a-value-longer-than-16-bytes"];
        let mut keys = Vec::new();
        for arity in 1..=7 {
            for start in 0..pool.len() {
                let key: Vec<&str> = (0..arity).map(|i| pool[(start + i * 3) % pool.len()]).collect();
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        for (i, k) in keys.iter().enumerate() {
            idx.write().insert(k, store(i));
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(idx.get(k), Some(store(i)), "{k:?}");
            for j in 0..k.len() {
                // Same length, last byte changed (or a byte added to an empty value).
                let mut changed = k[j].to_string();
                match changed.pop() {
                    Some(c) => changed.push(if c == 'z' { 'y' } else { 'z' }),
                    None => changed.push('z'),
                }
                let mut other = k.clone();
                other[j] = &changed;
                assert!(!keys.contains(&other) || idx.get(&other) != Some(store(i)), "{other:?} found as {k:?}");
                if !keys.contains(&other) {
                    assert_eq!(idx.get(&other), None, "{other:?}");
                }
            }
        }
    }

    /// The hash spreads realistic label sets (routes × status codes, sequential ids of equal
    /// length, values differing in one middle byte) over the table: linear-probe chains stay
    /// short. A hash that ignored bytes or lengths would pile them onto few slots.
    #[test]
    #[cfg_attr(miri, ignore = "too slow under Miri")]
    fn probe_chains_stay_short_for_similar_values() {
        let idx = LabelIndex::new();
        let mut keys: Vec<Vec<String>> = Vec::new();
        for r in 0..400 {
            for status in ["200", "404", "500"] {
                keys.push(vec![format!("/api/v1/item{r:04}"), status.to_string()]);
            }
        }
        for i in 0..2000 {
            keys.push(vec![format!("{i:08}")]);
            keys.push(vec![format!("abc{}xyz", char::from(b'!' + (i % 90) as u8)), format!("{i}")]);
        }
        for (i, k) in keys.iter().enumerate() {
            let k: Vec<&str> = k.iter().map(String::as_str).collect();
            if idx.get(&k).is_none() {
                idx.write().insert(&k, store(i));
            }
        }
        // SAFETY: the table is live (freed only when `idx` drops) and no writer runs.
        let table = unsafe { &*idx.table.load(Ordering::Acquire) };
        let (mut total, mut longest) = (0usize, 0usize);
        for k in &keys {
            let k: Vec<&str> = k.iter().map(String::as_str).collect();
            let mut key = Vec::new();
            encode(&k, |w| key.push(w));
            let hash = idx.hash(&key, k.len());
            let mut i = hash as usize & table.mask;
            let mut steps = 1;
            // SAFETY: slots are non-null entries owned by the index until it drops.
            while unsafe { &*table.slots[i].load(Ordering::Acquire) }.hash != hash {
                i = (i + 1) & table.mask;
                steps += 1;
            }
            total += steps;
            longest = longest.max(steps);
        }
        let mean = total as f64 / keys.len() as f64;
        // Linear probing at load factor ≤ 1/2 averages ≤ 1.5 probes for a uniform hash.
        assert!(mean < 2.0 && longest < 40, "mean probe length {mean:.2}, longest {longest}");
    }

    /// Small enough for Miri (`cargo +nightly miri test --lib label_index::tests::small`): entries
    /// and keys written into the arenas across several table growths and arena chunks, read
    /// back from another thread while the writer appends, and freed on drop.
    #[test]
    fn small_arena_and_growth_under_a_concurrent_reader() {
        let idx = LabelIndex::new();
        let keys: Vec<String> = (0..300).map(|i| format!("key-{i}-{}", "x".repeat(i % 40))).collect();
        let inserted = crate::sync::AtomicUsize::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                for (i, k) in keys.iter().enumerate() {
                    idx.write().insert(&[k, "v"], store(i));
                    inserted.store(i + 1, crate::sync::Ordering::Release);
                }
            });
            s.spawn(|| {
                while inserted.load(crate::sync::Ordering::Acquire) < keys.len() {
                    let n = inserted.load(crate::sync::Ordering::Acquire);
                    for (i, k) in keys[..n].iter().enumerate().rev().take(5) {
                        assert_eq!(idx.get(&[k, "v"]), Some(store(i)));
                    }
                }
            });
        });
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(idx.get(&[k, "v"]), Some(store(i)));
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "too slow under Miri; see the small test above")]
    fn readers_during_growth_find_what_was_inserted_before_they_looked() {
        let idx = LabelIndex::new();
        let keys: Vec<String> = (0..3000).map(|i| format!("k{i}")).collect();
        let inserted = crate::sync::AtomicUsize::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                for (i, k) in keys.iter().enumerate() {
                    idx.write().insert(&[k], store(i));
                    inserted.store(i + 1, crate::sync::Ordering::Release);
                }
            });
            s.spawn(|| {
                while inserted.load(crate::sync::Ordering::Acquire) < keys.len() {
                    let n = inserted.load(crate::sync::Ordering::Acquire);
                    for (i, k) in keys[..n].iter().enumerate().rev().take(50) {
                        assert_eq!(idx.get(&[k]), Some(store(i)));
                    }
                }
            });
        });
    }
}
