//! The look-up table behind [`crate::Family::with`]: label values → series, with lock-free
//! reads that write nothing shared (no lock, no reference count, no arc-swap debt slot).
//!
//! # Structure
//! An open-addressing table (linear probing, load factor ≤ 1/2) of pointers to entries. Each
//! entry (hash, series, and its label values [encoded](Entry) as a few words, which a look-up
//! compares word by word) is written once into the index's arenas (chunks that never move:
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

use std::{hash::BuildHasher, marker::PhantomData, ptr::NonNull};

use crate::{
    store::Store,
    sync::{lock, AtomicPtr, Mutex, MutexGuard, Ordering},
};

/// One label set and its series. Immutable once published.
///
/// The key is the label values encoded as words, in one of two layouts (the values decide which,
/// so a look-up and the insert of the same tuple always agree; `shape` records it):
///
/// * **fixed** — at most [`FIXED_ARITY`] values of at most [`SHORT`] bytes each (nearly every
///   label set): a header word holding the lengths (a byte each), then exactly two words per
///   value ([`words`]). A look-up of a given arity has one layout: no loop over the words, one
///   multiply per value for the hash.
/// * **general** — anything else: the lengths two `u32` to a word, then each value's bytes
///   packed eight to a word ([`encode_general`]).
///
/// Entries and key words live in the index's arenas (chunks that never move or shrink), not in
/// an allocation each: 40 bytes of entry and the key's words, no allocator header.
struct Entry {
    hash: u64,
    store: Store,
    /// The layout and arity ([`shape`]).
    shape: u32,
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

/// Tuples of one to this many values, each of at most [`SHORT`] bytes, take the fixed layout.
const FIXED_ARITY: usize = 4;

/// The longest value of the fixed layout (two words).
const SHORT: usize = 16;

/// Words of a fixed-layout key of `arity` values: the header and two per value.
const fn fixed_len(arity: usize) -> usize {
    1 + 2 * arity
}

/// An entry's `shape`: its arity, with [`GENERAL`] set for the general layout.
#[inline(always)]
const fn shape(arity: usize, general: bool) -> u32 {
    arity as u32 | if general { GENERAL } else { 0 }
}

const GENERAL: u32 = 1 << 31;

/// Whether `values` take the fixed layout.
#[inline(always)]
fn is_fixed(values: &[&str]) -> bool {
    (1..=FIXED_ARITY).contains(&values.len()) && values.iter().all(|v| v.len() <= SHORT)
}

/// The header word of a fixed-layout key: value `i`'s length in byte `i`.
#[inline(always)]
fn header(values: &[&str]) -> u64 {
    values.iter().enumerate().fold(0, |h, (i, v)| h | (v.len() as u64) << (8 * i))
}

/// A value of at most [`SHORT`] bytes as two words, read with (possibly overlapping) unaligned
/// loads, no copy:
///
/// * 8–16 bytes: bytes `0..8` and bytes `n−8..n` (overlapping: together every byte);
/// * 4–7 bytes: bytes `0..4` and `n−4..n` in the first word, 0;
/// * 1–3 bytes: bytes `0`, `n/2` and `n−1` in the first word, 0;
/// * empty: 0, 0.
///
/// Injective for each length (every byte is read, each at a fixed position); the key's header
/// holds the lengths. One branch per class boundary: predicted for a label whose values stay in
/// one class. (A branch-free version — every class loaded, from a zero block where the value is
/// too short, and selected — was measured: +25 instructions a value, and no gain in the hot
/// loop, whose cost is the recording's instruction count; see BENCHMARKS.md.)
#[inline(always)]
fn words(b: &[u8]) -> (u64, u64) {
    let n = b.len();
    debug_assert!(n <= SHORT);
    if n >= 8 {
        (read_u64(&b[..8]), read_u64(&b[n - 8..]))
    } else if n >= 4 {
        (u64::from(read_u32(&b[..4])) | u64::from(read_u32(&b[n - 4..])) << 32, 0)
    } else if n > 0 {
        (u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16, 0)
    } else {
        (0, 0)
    }
}

/// The general layout's words: the values' lengths two to a word, then each value's bytes
/// packed little-endian eight to a word, zero-padded; injective for a given arity.
#[inline(always)]
fn encode_general(values: &[&str], mut push: impl FnMut(u64)) {
    for pair in values.chunks(2) {
        push(pair.iter().enumerate().fold(0u64, |w, (i, v)| w | (v.len() as u64) << (32 * i)));
    }
    for v in values {
        for c in v.as_bytes().chunks(8) {
            push(upto8(c));
        }
    }
}

/// The number of words [`encode_general`] writes for `values`.
#[inline(always)]
fn general_len(values: &[&str]) -> usize {
    values.len().div_ceil(2) + values.iter().map(|v| v.len().div_ceil(8)).sum::<usize>()
}

/// General keys of up to this many words are encoded on the stack by a look-up (two labels of
/// up to ~55 bytes each, four of ~24); longer ones take [`LabelIndex::get_heap`].
const INLINE: usize = 16;

/// Eight slots, one cache line: the unit a table is allocated in, so its slots start on a
/// 64-byte boundary and the low six bits of their address are free for the capacity's log
/// (see [`Table::tagged`]).
#[repr(align(64))]
struct Line([AtomicPtr<Entry>; LINE]);

/// Slots per [`Line`].
const LINE: usize = 8;

/// A table's lines, owned like a `Box<[Line]>` but held through a raw pointer (from
/// `Box::into_raw`): moving a `Box` asserts unique access to what it points at, which readers
/// holding the published pointer would contradict (Miri's Stacked Borrows reports it when the
/// writer retires a table).
struct Lines(NonNull<[Line]>);

impl Drop for Lines {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::into_raw` and is freed once, here. A table drops
        // only with its index (`&mut`: no reader is left) — retired tables are kept until then.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

// SAFETY: `Lines` owns its allocation like a `Box<[Line]>`, which is `Send` and `Sync` (the
// slots are atomics); only the pointer's type differs. (The rest of a `Table` gets its `Send`
// and `Sync` from the auto traits.)
unsafe impl Send for Lines {}
// SAFETY: as above; shared access only ever reads or atomically writes the slots.
unsafe impl Sync for Lines {}

/// An open-addressing table of entry pointers, probed linearly from `hash & mask`. Owned by the
/// writer (under the index's mutex); readers reach its slots only through the tagged pointer
/// the index publishes ([`Table::tagged`]), so a look-up loads one word, then the slot.
struct Table {
    lines: Lines,
}

impl Table {
    fn with_capacity(slots: usize) -> Table {
        debug_assert!(slots.is_power_of_two() && slots >= LINE);
        let lines: Box<[Line]> =
            (0..slots / LINE).map(|_| Line(std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())))).collect();
        // SAFETY: `Box::into_raw` never returns null.
        Table { lines: Lines(unsafe { NonNull::new_unchecked(Box::into_raw(lines)) }) }
    }

    fn cap(&self) -> usize {
        self.lines.0.len() * LINE
    }

    fn slot(&self, i: usize) -> &AtomicPtr<Entry> {
        // SAFETY: the lines are a live allocation this table owns (freed only when it drops),
        // only ever accessed through shared references (the slots are atomics).
        let lines = unsafe { self.lines.0.as_ref() };
        &lines[i / LINE].0[i % LINE]
    }

    /// The first slot's address with log₂ of the capacity in its low six bits (the lines are
    /// 64-byte aligned and the capacity is below 2⁶⁴): what a reader needs, in one word.
    fn tagged(&self) -> *mut AtomicPtr<Entry> {
        let base = self.lines.0.as_ptr().cast::<AtomicPtr<Entry>>();
        base.map_addr(|a| a | self.cap().trailing_zeros() as usize)
    }

    /// Stores `e` in the first free slot of its probe sequence. Writer only.
    fn place(&self, e: *mut Entry, hash: u64) {
        let mask = self.cap() - 1;
        let mut i = hash as usize & mask;
        loop {
            let slot = self.slot(i);
            // Relaxed: only the (single, serialised) writer stores slots, and it sees its own
            // stores.
            if slot.load(Ordering::Relaxed).is_null() {
                // Release: publishes the entry's contents to readers' Acquire slot loads.
                slot.store(e, Ordering::Release);
                return;
            }
            i = (i + 1) & mask;
        }
    }
}

/// The writer's side, kept under the index's mutex: the entry count, the current table and
/// every retired one (kept until the index drops: a reader may still be probing it), and the
/// arenas of entries and key words.
struct Writer {
    /// Entries inserted (every one is in the current table and in `entries`).
    len: usize,
    current: Table,
    retired: Vec<Table>,
    entries: Arena<Entry>,
    keys: Arena<u64>,
}

/// Random seeds per index: two for the general layout's hash, two per value position of the
/// fixed one's.
const SEEDS: usize = 2 + 2 * FIXED_ARITY;

/// A grow-only map from label values to series with lock-free, write-free reads.
pub(crate) struct LabelIndex {
    /// The current table's slots, tagged with log₂ of its capacity ([`Table::tagged`]).
    table: AtomicPtr<AtomicPtr<Entry>>,
    /// Random per index, so label values chosen by a client cannot be crafted to collide.
    seeds: [u64; SEEDS],
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
        let mut seeds = [0; SEEDS];
        for (i, s) in seeds.iter_mut().enumerate() {
            // Odd: a multiply by a seed never loses the low bit.
            *s = hasher.hash_one(i as u64) | 1;
        }
        let current = Table::with_capacity(8);
        LabelIndex {
            table: AtomicPtr::new(current.tagged()),
            seeds,
            writer: Mutex::new(Writer {
                len: 0,
                current,
                retired: Vec::new(),
                entries: Arena::new(1024),
                keys: Arena::new(8192),
            }),
            _owns: PhantomData,
        }
    }

    /// The hash of the fixed-layout key of `n` values in `key` (its first `1 + 2n` words): one
    /// 64×64→128-bit multiply per value, each with its own pair of seeds (so the position of a
    /// value counts) and the header mixed into the first, XOR-ed together. The multiplies are
    /// independent (foldhash's parallel lanes): the hash is ready one multiply after the words,
    /// not one per value. `n` is a constant where a look-up inlines this (loop unrolled).
    #[inline(always)]
    fn hash_fixed(&self, key: &[u64; fixed_len(FIXED_ARITY)], n: usize) -> u64 {
        let s = &self.seeds;
        let mut hash = 0;
        for i in 0..n.min(FIXED_ARITY) {
            let header = if i == 0 { key[0] } else { 0 };
            hash ^= folded_multiply(key[1 + 2 * i] ^ s[2 + 2 * i], key[2 + 2 * i] ^ s[3 + 2 * i] ^ header);
        }
        hash
    }

    /// The fixed-layout key of `values` (at most [`FIXED_ARITY`] values of at most [`SHORT`]
    /// bytes): `[header, lo₀, hi₀, lo₁, hi₁, …]`, zeros after `fixed_len(values.len())` words.
    #[inline(always)]
    fn fixed_key(values: &[&str]) -> [u64; fixed_len(FIXED_ARITY)] {
        let mut key = [0u64; fixed_len(FIXED_ARITY)];
        key[0] = header(values);
        for (i, v) in values.iter().take(FIXED_ARITY).enumerate() {
            (key[1 + 2 * i], key[2 + 2 * i]) = words(v.as_bytes());
        }
        key
    }

    /// The hash of a general-layout key of `arity` values: one multiply per two words, in a
    /// chain; the arity goes into the seed (a key of one value and one of two values whose
    /// second is empty can have the same words).
    #[inline(always)]
    fn hash_general(&self, key: &[u64], arity: usize) -> u64 {
        // Two words a multiply; a missing last word reads as 0, which is unambiguous because the
        // lengths (the first words) fix how many words follow.
        key.chunks(2).fold(self.seeds[0] ^ arity as u64, |acc, c| {
            folded_multiply(c[0] ^ acc, c.get(1).copied().unwrap_or(0) ^ self.seeds[1])
        })
    }

    /// The series for `values`, if it was inserted (and published to this reader).
    ///
    /// # Performance characteristics
    /// Wait-free and write-free. For one to four values of up to 16 bytes: the values encoded
    /// into a header and two words each on the stack (a length-class branch per value), one
    /// multiply per value for the hash (independent of each other), one Acquire load of the
    /// table, a linear probe comparing the stored hash, then the shape and the key's words.
    /// Other tuples take the general layout (a loop over the values' words, out of line).
    #[inline(always)]
    pub(crate) fn get(&self, values: &[&str]) -> Option<Store> {
        match values.len() {
            1 => self.get_n::<1>(values),
            2 => self.get_n::<2>(values),
            3 => self.get_n::<3>(values),
            4 => self.get_n::<4>(values),
            _ => self.get_general(values),
        }
    }

    #[inline(always)]
    fn get_n<const N: usize>(&self, values: &[&str]) -> Option<Store> {
        let values: &[&str; N] = values.try_into().ok()?;
        // One branch for all the values (predictable: a label's values are short or not).
        if values.iter().fold(false, |long, v| long | (v.len() > SHORT)) {
            return self.get_general(values);
        }
        let key = Self::fixed_key(values);
        let hash = self.hash_fixed(&key, N);
        self.probe(hash, |e| {
            // Shape first: it fixes the key's length; then every word XOR-ed and OR-ed together
            // into one test (a constant number of words, unrolled).
            e.shape == shape(N, false)
                && (0..fixed_len(N)).fold(0, |d, j| {
                    // SAFETY: an entry of this shape has `fixed_len(N)` key words (`insert`
                    // writes exactly that many for a fixed-layout tuple of N values), immutable
                    // and live as in `Entry::key`.
                    d | (unsafe { *e.key.add(j) } ^ key[j])
                }) == 0
        })
    }

    #[inline(never)]
    fn get_general(&self, values: &[&str]) -> Option<Store> {
        let len = general_len(values);
        if len > INLINE {
            return self.get_heap(values);
        }
        let mut buf = [0u64; INLINE];
        let mut k = 0;
        encode_general(values, |w| {
            buf[k] = w;
            k += 1;
        });
        self.find_general(&buf[..k], values.len())
    }

    /// The general-layout entry whose key is `key` (an encoding of `arity` values).
    #[inline(always)]
    fn find_general(&self, key: &[u64], arity: usize) -> Option<Store> {
        let hash = self.hash_general(key, arity);
        self.probe(hash, |e| e.shape == shape(arity, true) && e.key() == key)
    }

    /// A general look-up whose key does not fit on the stack.
    #[cold]
    #[inline(never)]
    fn get_heap(&self, values: &[&str]) -> Option<Store> {
        let mut key = Vec::with_capacity(general_len(values));
        encode_general(values, |w| key.push(w));
        self.find_general(&key, values.len())
    }

    /// Linear probe from `hash` for the entry with that hash whose key satisfies `is_key`.
    #[inline(always)]
    fn probe(&self, hash: u64, is_key: impl Fn(&Entry) -> bool) -> Option<Store> {
        // Acquire: pairs with the Release publish of a grown table in `insert`.
        let tagged = self.table.load(Ordering::Acquire);
        let mask = (1usize << (tagged.addr() & 63)) - 1;
        let slots = tagged.map_addr(|a| a & !63);
        let mut i = hash as usize & mask;
        loop {
            // SAFETY: `slots` is the first of `mask + 1` contiguous slots of a table the index
            // owns until it drops (current or retired, never freed before: see the module docs),
            // and `i ≤ mask`.
            let slot = unsafe { &*slots.add(i) };
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
            i = (i + 1) & mask;
        }
    }

    /// The writer: the index's mutex, held until the guard drops (the family holds it while it
    /// checks for a label set and registers it).
    pub(crate) fn write(&self) -> IndexWriter<'_> {
        IndexWriter { index: self, writer: lock(&self.writer) }
    }

    /// Adds `values → store`; `writer` is the index's own (held through its mutex).
    fn insert(&self, writer: &mut Writer, values: &[&str], store: Store) {
        // The key, in the layout a look-up of the same values takes, goes into the arena.
        let (words, hash, shape) = if is_fixed(values) {
            let key = Self::fixed_key(values);
            let key_words = &key[..fixed_len(values.len())];
            let words = writer.keys.push_with(key_words.len(), |push| key_words.iter().for_each(|&w| push(w)));
            (words, self.hash_fixed(&key, values.len()), shape(values.len(), false))
        } else {
            let words = writer.keys.push_with(general_len(values), |push| encode_general(values, push));
            (words, self.hash_general(words, values.len()), shape(values.len(), true))
        };
        let entry = Entry { hash, store, shape, key_len: words.len() as u32, key: words.as_ptr() };
        // Readers only ever read through this pointer (`AtomicPtr` wants `*mut`).
        let entry = writer.entries.push_with(1, |push| push(entry)).as_ptr().cast_mut();
        writer.len += 1;
        let cap = writer.current.cap();
        if writer.len * 2 > cap {
            let grown = Table::with_capacity(cap * 2);
            for i in 0..cap {
                // Relaxed: this thread wrote every slot (under the mutex).
                let e = writer.current.slot(i).load(Ordering::Relaxed);
                if !e.is_null() {
                    // SAFETY: a non-null slot is a live entry of the arena, freed only when the
                    // index drops.
                    grown.place(e, unsafe { (*e).hash });
                }
            }
            grown.place(entry, hash);
            // Release: the grown table (and every slot in it) is complete before readers can
            // load it.
            self.table.store(grown.tagged(), Ordering::Release);
            let old = std::mem::replace(&mut writer.current, grown);
            writer.retired.push(old);
        } else {
            writer.current.place(entry, hash);
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

// `LabelIndex` is `Send + Sync` by the auto traits, not by an `unsafe impl`: its raw pointers
// sit in `AtomicPtr`s (always `Send + Sync`) and `_owns` makes the auto traits follow what
// readers share (the mutex alone would ask only `Send` of what it guards), so a future
// `!Send`/`!Sync` field of a table takes them away instead of being covered silently (an
// entry's one raw pointer and a table's lines are covered by the `unsafe impl`s on `Entry` and
// `Lines`). Shared access is the read protocol in the module docs.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<LabelIndex>();
};

#[cfg(test)]
impl LabelIndex {
    /// The hash a look-up of `values` probes with (either layout).
    fn hash_of(&self, values: &[&str]) -> u64 {
        if is_fixed(values) {
            self.hash_fixed(&Self::fixed_key(values), values.len())
        } else {
            let mut key = Vec::new();
            encode_general(values, |w| key.push(w));
            self.hash_general(&key, values.len())
        }
    }
}

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
        // The empty tuple (general layout, like every arity the fixed one does not cover).
        assert_eq!(idx.get(&[]), None);
        idx.write().insert(&[], store(4));
        assert_eq!(idx.get(&[]), Some(store(4)));
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

    /// The classes of [`words`], the obvious way.
    fn words_reference(b: &[u8]) -> (u64, u64) {
        let n = b.len();
        match n {
            0 => (0, 0),
            1..=3 => (u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16, 0),
            4..=7 => (pack(&b[..4]) | pack(&b[n - 4..]) << 32, 0),
            _ => (pack(&b[..8]), pack(&b[n - 8..])),
        }
    }

    #[test]
    fn words_are_the_length_class_loads() {
        let bytes: Vec<u8> = (1..=SHORT as u8).map(|b| b.wrapping_mul(37) | 1).collect();
        for n in 0..=SHORT {
            assert_eq!(words(&bytes[..n]), words_reference(&bytes[..n]), "length {n}");
        }
    }

    /// Every value is its own allocation, exactly as long as the value, so under Miri
    /// (`cargo +nightly miri test --lib label_index`) a load one byte out of bounds in any
    /// length class is reported.
    #[test]
    fn words_read_only_the_values_bytes() {
        for n in 0..=SHORT {
            let boxed: Box<[u8]> = (0..n as u8).map(|b| b ^ 0x5a).collect();
            assert_eq!(words(&boxed), words_reference(&boxed), "length {n}");
        }
        assert_eq!(words(&[]), (0, 0));
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
        let guard = idx.write();
        let table = &guard.writer.current;
        let mask = table.cap() - 1;
        let (mut total, mut longest) = (0usize, 0usize);
        for k in &keys {
            let k: Vec<&str> = k.iter().map(String::as_str).collect();
            let hash = idx.hash_of(&k);
            let mut i = hash as usize & mask;
            let mut steps = 1;
            // SAFETY: slots are non-null entries owned by the index until it drops.
            while unsafe { &*table.slot(i).load(Ordering::Acquire) }.hash != hash {
                i = (i + 1) & mask;
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
