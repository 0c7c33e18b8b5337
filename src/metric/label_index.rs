//! The look-up table behind [`crate::Family::with`]: label values → series, with lock-free
//! reads that write nothing shared (no lock, no reference count, no arc-swap debt slot).
//!
//! # Structure
//! An open-addressing table (linear probing, load factor ≤ 1/2) of pointers to entries. Each
//! entry (hash, owned key, series) is boxed once and never moves or changes; tables only grow
//! (×2), and a replaced table is kept, not freed, until the index is dropped. Tables double, so
//! all tables together hold fewer than twice the slots of the current one: memory stays O(n).
//!
//! # Synchronization
//! * Writers are serialised by the caller (the family's mutex): `insert` takes `&mut Writer`.
//! * An entry is fully written before its pointer is stored into a slot with **Release**; a
//!   reader loads slots with **Acquire**, so it sees the entry's contents.
//! * A grown table is filled completely before it is published with a **Release** store of
//!   `table`; readers load it with **Acquire**.
//! * Nothing a reader can reach is freed before `Drop` (which needs `&mut self`), so every
//!   pointer a reader loads stays valid for the `&self` it holds. A reader still probing an
//!   older table may miss an entry inserted since; it then takes the caller's slow path, which
//!   looks again under the mutex.

use std::hash::{BuildHasher, Hash, Hasher};

use crate::{
    registry::Store,
    sync::{AtomicPtr, Ordering},
};

/// One label set and its series. Immutable once published.
struct Entry {
    hash: u64,
    key: Box<[Box<str>]>,
    store: Store,
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

/// The writer's side, kept under the caller's mutex: every entry and every retired table,
/// freed when the index drops.
#[derive(Default)]
pub(crate) struct Writer {
    entries: Vec<*mut Entry>,
    retired: Vec<*mut Table>,
}

// SAFETY: the raw pointers in `Writer` are owned allocations (from `Box::into_raw`) that are
// only dereferenced by the index they belong to, under the caller's mutex or in `Drop`; moving
// the bookkeeping to another thread is as safe as moving the boxes themselves.
unsafe impl Send for Writer {}

/// A grow-only map from label values to series with lock-free, write-free reads.
pub(crate) struct LabelIndex {
    table: AtomicPtr<Table>,
    hasher: hashbrown::DefaultHashBuilder,
}

/// String equality with the length test inline (label values are short; the byte compare
/// only runs for a real candidate, whose hash already matched).
#[inline(always)]
fn str_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes() == b.as_bytes()
}

/// Hashes label values (keys are hashed through the same function). Short tuples — the usual
/// case — are packed into one stack buffer as `v1 0xFF v2 0xFF …` (0xFF never occurs in UTF-8,
/// so the packing is unambiguous and encodes the arity) and hashed with a single `write`;
/// longer ones are hashed value by value. The hasher is foldhash with a random seed, so label
/// values chosen by a client cannot be crafted to collide.
#[inline]
fn hash_values(hasher: &hashbrown::DefaultHashBuilder, values: &[&str]) -> u64 {
    const PACKED: usize = 64;
    let mut buf = [0u8; PACKED];
    let mut n = 0;
    for v in values {
        let end = n + v.len();
        if end >= PACKED {
            return hash_long(hasher, values);
        }
        buf[n..end].copy_from_slice(v.as_bytes());
        buf[end] = 0xFF;
        n = end + 1;
    }
    let mut h = hasher.build_hasher();
    h.write(&buf[..n]);
    h.finish()
}

#[cold]
fn hash_long(hasher: &hashbrown::DefaultHashBuilder, values: &[&str]) -> u64 {
    let mut h = hasher.build_hasher();
    values.len().hash(&mut h);
    for v in values {
        v.hash(&mut h);
    }
    h.finish()
}

impl LabelIndex {
    pub(crate) fn new() -> LabelIndex {
        LabelIndex {
            table: AtomicPtr::new(Box::into_raw(Table::with_capacity(8))),
            hasher: hashbrown::DefaultHashBuilder::default(),
        }
    }

    /// The series for `values`, if it was inserted (and published to this reader).
    ///
    /// # Performance characteristics
    /// Wait-free: one Acquire load of the table (a plain load on x86-64), one hash of the
    /// values, a short probe with string comparisons. Writes no memory.
    #[inline]
    pub(crate) fn get(&self, values: &[&str]) -> Option<Store> {
        let hash = hash_values(&self.hasher, values);
        // Acquire: pairs with the Release publish of a grown table in `insert`.
        let table = self.table.load(Ordering::Acquire);
        // SAFETY: `table` is never null and is freed only in `Drop` (see the module docs).
        let table = unsafe { &*table };
        let mut i = hash as usize & table.mask;
        loop {
            // Acquire: pairs with the Release slot store in `Table::place`.
            let e = table.slots[i].load(Ordering::Acquire);
            if e.is_null() {
                return None;
            }
            // SAFETY: a non-null slot points at an entry that is fully written before it was
            // published and is freed only in `Drop`.
            let e = unsafe { &*e };
            if e.hash == hash && e.key.len() == values.len() && e.key.iter().zip(values).all(|(k, v)| str_eq(k, v)) {
                return Some(e.store);
            }
            i = (i + 1) & table.mask;
        }
    }

    /// Adds `values → store`. The caller serialises writers (holds the mutex that guards
    /// `writer`) and has checked that `values` is absent.
    pub(crate) fn insert(&self, writer: &mut Writer, values: &[&str], store: Store) {
        let hash = hash_values(&self.hasher, values);
        let entry = Box::into_raw(Box::new(Entry { hash, key: values.iter().map(|v| Box::from(*v)).collect(), store }));
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

    /// Frees every table and entry. Called from the owner's `Drop` with the writer state.
    pub(crate) fn free(&mut self, writer: &mut Writer) {
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

// SAFETY: the index owns its tables and entries (plain data plus atomics); shared access is
// the read protocol described in the module docs, and all mutation goes through atomics or
// through `&mut self`.
unsafe impl Send for LabelIndex {}
// SAFETY: as above: `&LabelIndex` only permits `get` (atomic loads of immutable data) and
// `insert`, whose callers serialise writers through the mutex guarding `Writer`.
unsafe impl Sync for LabelIndex {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::Loc;

    fn store(i: usize) -> Store {
        Store::Counter { index: i, loc: Loc::counter(i).unwrap() }
    }

    #[test]
    fn grows_and_finds_everything() {
        let idx = LabelIndex::new();
        let mut w = Writer::default();
        let keys: Vec<String> = (0..5000).map(|i| format!("v{i}")).collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(idx.get(&[k, "x"]), None);
            idx.insert(&mut w, &[k, "x"], store(i));
            assert_eq!(idx.get(&[k, "x"]), Some(store(i)));
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(idx.get(&[k, "x"]), Some(store(i)));
            assert_eq!(idx.get(&[k]), None, "arity is part of the key");
            assert_eq!(idx.get(&["x", k]), None, "order is part of the key");
        }
        // Tuples too long for the packed hash take the value-by-value path, consistently.
        let long = "x".repeat(100);
        idx.insert(&mut w, &[&long, "y"], store(9999));
        assert_eq!(idx.get(&[&long, "y"]), Some(store(9999)));
        assert_eq!(idx.get(&[&long, "z"]), None);
        // Packing is unambiguous: ("ab", "c") is not ("a", "bc").
        idx.insert(&mut w, &["ab", "c"], store(1));
        assert_eq!(idx.get(&["a", "bc"]), None);
        let mut idx = idx;
        idx.free(&mut w);
    }

    #[test]
    fn readers_during_growth_find_what_was_inserted_before_they_looked() {
        let idx = LabelIndex::new();
        let w = std::sync::Mutex::new(Writer::default());
        let keys: Vec<String> = (0..3000).map(|i| format!("k{i}")).collect();
        let inserted = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                for (i, k) in keys.iter().enumerate() {
                    idx.insert(&mut w.lock().unwrap(), &[k], store(i));
                    inserted.store(i + 1, std::sync::atomic::Ordering::Release);
                }
            });
            s.spawn(|| {
                while inserted.load(std::sync::atomic::Ordering::Acquire) < keys.len() {
                    let n = inserted.load(std::sync::atomic::Ordering::Acquire);
                    for (i, k) in keys[..n].iter().enumerate().rev().take(50) {
                        assert_eq!(idx.get(&[k]), Some(store(i)));
                    }
                }
            });
        });
        let mut idx = idx;
        idx.free(&mut w.into_inner().unwrap());
    }
}
