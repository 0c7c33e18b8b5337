//! The look-up table behind [`crate::Family::with`]: label values → series, with lock-free
//! reads that write nothing shared (no lock, no reference count, no arc-swap debt slot).
//!
//! # Structure
//! An open-addressing table (linear probing, load factor ≤ 1/2) of pointers to entries. Each
//! entry (hash, series, and a key of words: per value a three-word [`View`] that the look-up
//! compares instead of the text, plus the packed text of values too long for a view to
//! determine) is boxed once and never moves or changes; tables only grow
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
/// The key is one allocation of words: per value its [`View`] (`lo`, `hi`, `len`), then the
/// bytes of every value longer than [`SHORT`], each packed little-endian into whole words (a
/// shorter value is determined by its view, so its text is not kept). A look-up compares three
/// words per value, and words of text only for long values.
struct Entry {
    hash: u64,
    store: Store,
    arity: u32,
    key: Box<[u64]>,
}

/// A label value as the hash and the comparison see it: its length and two words. For values
/// of at most [`SHORT`] bytes the words are read from the bytes by [`words`], which is
/// injective for a fixed length, so equal views mean equal values. Longer values get their
/// foldhash in `lo` and must be compared byte by byte.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct View {
    lo: u64,
    hi: u64,
    len: usize,
}

/// Up to eight bytes as one little-endian word, zero-padded.
#[inline(always)]
fn pack(chunk: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..chunk.len()].copy_from_slice(chunk);
    u64::from_le_bytes(w)
}

impl Entry {
    fn new(hash: u64, store: Store, views: impl Iterator<Item = View>, values: &[&str]) -> Entry {
        let long_words: usize = values.iter().filter(|v| v.len() > SHORT).map(|v| v.len().div_ceil(8)).sum();
        let mut key = Vec::with_capacity(3 * values.len() + long_words);
        for q in views {
            key.extend([q.lo, q.hi, q.len as u64]);
        }
        for v in values.iter().filter(|v| v.len() > SHORT) {
            key.extend(v.as_bytes().chunks(8).map(pack));
        }
        Entry { hash, store, arity: values.len() as u32, key: key.into() }
    }

    /// Whether the key is exactly `values`, whose views are `q`.
    #[inline(always)]
    fn matches(&self, q: &[View], values: &[&str]) -> bool {
        let n = q.len();
        if self.arity as usize != n || self.key.len() < 3 * n {
            return false;
        }
        let views = &self.key[..3 * n];
        let mut long = false;
        for (w, q) in views.chunks_exact(3).zip(q) {
            if w[0] != q.lo || w[1] != q.hi || w[2] != q.len as u64 {
                return false;
            }
            long |= q.len > SHORT;
        }
        !long || self.texts_eq(values)
    }

    /// Whether the packed texts of the long values are `values`' (views already equal).
    #[cold]
    #[inline(never)]
    fn texts_eq(&self, values: &[&str]) -> bool {
        let mut text = &self.key[3 * values.len()..];
        for v in values.iter().filter(|v| v.len() > SHORT) {
            let (own, rest) = text.split_at(v.len().div_ceil(8));
            if !long_eq(own, v) {
                return false;
            }
            text = rest;
        }
        true
    }
}

/// Whether `v`'s bytes are the packed words `own` (lengths already known equal).
#[inline(always)]
fn long_eq(own: &[u64], v: &str) -> bool {
    v.as_bytes().chunks(8).zip(own).all(|(c, &w)| pack(c) == w)
}

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

/// The writer's side, kept under the index's mutex: every entry and every retired table,
/// freed when the index drops.
#[derive(Default)]
struct Writer {
    entries: Vec<*mut Entry>,
    retired: Vec<*mut Table>,
}

// SAFETY: the raw pointers in `Writer` are owned allocations (from `Box::into_raw`) that are
// only dereferenced by the index they belong to, under its mutex or in `Drop`; moving the
// bookkeeping to another thread is as safe as moving the boxes themselves.
unsafe impl Send for Writer {}

/// A grow-only map from label values to series with lock-free, write-free reads.
pub(crate) struct LabelIndex {
    table: AtomicPtr<Table>,
    /// Random per index, so label values chosen by a client cannot be crafted to collide.
    seeds: [u64; 2],
    /// Hashes values longer than [`SHORT`] bytes (foldhash, randomly seeded).
    hasher: LongHasher,
    /// Serialises inserts and owns every entry and table (see [`IndexWriter`]).
    writer: Mutex<Writer>,
    /// The tables and entries the pointers own (see the `Send`/`Sync` note below).
    _owns: PhantomData<(Box<Table>, Box<Entry>)>,
}

/// The hasher of long values: foldhash with a random seed; under loom a fixed one (SipHash with
/// zero keys), because loom replays a model many times and needs every run to probe the same
/// slots.
#[cfg(not(shardmetrics_loom))]
type LongHasher = hashbrown::DefaultHashBuilder;
#[cfg(shardmetrics_loom)]
type LongHasher = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;

/// Values up to this many bytes are hashed and compared as two machine words.
const SHORT: usize = 16;

/// A value of at most [`SHORT`] bytes as two words read with (possibly overlapping) unaligned
/// loads: bytes `0..8` and `n-8..n`, or `0..4` and `n-4..n`, or bytes `0`, `n/2` and `n-1`.
/// Every byte is covered, so for a fixed length `n` the map is injective (foldhash and wyhash
/// read short inputs the same way).
#[inline(always)]
fn words(b: &[u8]) -> (u64, u64) {
    let n = b.len();
    debug_assert!(n <= SHORT);
    if n >= 8 {
        (read_u64(&b[..8]), read_u64(&b[n - 8..]))
    } else if n >= 4 {
        (u64::from(read_u32(&b[..4])), u64::from(read_u32(&b[n - 4..])))
    } else if n > 0 {
        (u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16, 0)
    } else {
        (0, 0)
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
            hasher,
            writer: Mutex::new(Writer::default()),
            _owns: PhantomData,
        }
    }

    /// The [`View`] of one value: two words read straight from its bytes (no copy) when it
    /// has at most [`SHORT`] bytes, else its randomly seeded foldhash.
    #[inline(always)]
    fn view(&self, v: &str) -> View {
        let (lo, hi) = if v.len() <= SHORT { words(v.as_bytes()) } else { (self.hash_long(v), 0) };
        View { lo, hi, len: v.len() }
    }

    #[cold]
    #[inline(never)]
    fn hash_long(&self, v: &str) -> u64 {
        self.hasher.hash_one(v.as_bytes())
    }

    /// Folds one value's view into the running hash with a 64×64→128-bit multiply
    /// (foldhash-style). The length goes into every step, so the tuple's encoding is
    /// unambiguous (`("ab", "c")` and `("a", "bc")` feed different words) and the arity is
    /// the number of steps.
    #[inline(always)]
    fn mix(&self, acc: u64, q: View) -> u64 {
        folded_multiply(q.lo ^ acc, q.hi ^ self.seeds[1] ^ (q.len as u64).rotate_right(8))
    }

    /// The hash of a tuple of label values (keys are hashed the same way).
    fn hash(&self, values: &[&str]) -> u64 {
        values.iter().fold(self.seeds[0], |acc, v| self.mix(acc, self.view(v)))
    }

    /// The series for `values`, if it was inserted (and published to this reader).
    ///
    /// # Performance characteristics
    /// Wait-free and write-free: each value is read once into a [`View`] (two words and a
    /// length, from at most four loads), the views are folded into the hash with one
    /// multiply each, then one Acquire load of the table and a linear probe that compares
    /// the stored hash and views (no `memcmp` for values of at most 16 bytes). Tuples of up
    /// to four values take a path specialised for their arity (loops unrolled, views kept in
    /// registers); longer tuples re-read the values when comparing.
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
        debug_assert_eq!(values.len(), N);
        let q: [View; N] = std::array::from_fn(|i| self.view(values[i]));
        let hash = q.iter().fold(self.seeds[0], |acc, &v| self.mix(acc, v));
        self.probe(hash, |e| e.matches(&q, values))
    }

    #[inline(never)]
    fn get_any(&self, values: &[&str]) -> Option<Store> {
        let hash = self.hash(values);
        // Views on the stack for up to 16 labels (no allocation on a look-up), else a Vec.
        const STACK: usize = 16;
        let mut stack = [View { lo: 0, hi: 0, len: 0 }; STACK];
        let heap: Vec<View>;
        let q: &[View] = if values.len() <= STACK {
            for (q, v) in stack.iter_mut().zip(values) {
                *q = self.view(v);
            }
            &stack[..values.len()]
        } else {
            heap = values.iter().map(|v| self.view(v)).collect();
            &heap
        };
        self.probe(hash, |e| e.matches(q, values))
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
        let hash = self.hash(values);
        let entry = Box::into_raw(Box::new(Entry::new(hash, store, values.iter().map(|v| self.view(v)), values)));
        writer.entries.push(entry);
        // Relaxed: this thread is the only writer of `table` (serialised by the caller).
        let current = self.table.load(Ordering::Relaxed);
        // SAFETY: as in `get`; the writer also owns the right to read it under the mutex.
        let cap = unsafe { &*current }.slots.len();
        if writer.entries.len() * 2 > cap {
            let grown = Table::with_capacity(cap * 2);
            for &e in &writer.entries {
                // SAFETY: every entry pointer in `writer` is a live allocation owned by it.
                grown.place(e, unsafe { (*e).hash });
            }
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
        for t in writer.retired.drain(..).chain(std::iter::once(current)) {
            // SAFETY: each table pointer came from `Box::into_raw` and is freed exactly once
            // here (the current one is not in `retired`); `&mut self` excludes readers.
            drop(unsafe { Box::from_raw(t) });
        }
        self.table.store(std::ptr::null_mut(), Ordering::Relaxed);
        for e in writer.entries.drain(..) {
            // SAFETY: each entry came from `Box::into_raw` and is freed exactly once here.
            drop(unsafe { Box::from_raw(e) });
        }
    }
}

// `LabelIndex` is `Send + Sync` by the auto traits, not by an `unsafe impl`: its raw pointers
// sit in `AtomicPtr`s (always `Send + Sync`) and `_owns` makes the auto traits follow what it
// owns, so a future `!Send`/`!Sync` field of an entry or table takes them away instead of being
// covered silently. Shared access is the read protocol in the module docs.
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
            let hash = idx.hash(&k);
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

    #[test]
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
