//! The one concurrency facade every other module imports from.
//!
//! Under `--cfg shardmetrics_loom` the atomics, `Arc`, `Mutex`, thread-locals and the
//! snapshot cell come from [loom], so the models in `loom-tests/` run the real protocol code;
//! otherwise they are the `std` (and `arc-swap`) types. The cfg is crate-prefixed because
//! RUSTFLAGS reach every crate in the graph and other crates switch on a bare `loom`.

#[cfg(not(shardmetrics_loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard,
};

/// Remote write's last-sent timestamp (the exporters are not built under loom).
#[cfg(all(feature = "remote-write", not(shardmetrics_loom)))]
pub(crate) use std::sync::atomic::AtomicI64;

#[cfg(shardmetrics_loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard,
};

/// Declares the per-thread shard binding: `const`-initialised under std (no lazy-init branch
/// beyond the destructor-registration state), loom's own macro under the model checker.
macro_rules! shard_thread_local {
    ($(#[$m:meta])* static $name:ident: $t:ty = $init:expr;) => {
        #[cfg(not(shardmetrics_loom))]
        std::thread_local! { $(#[$m])* static $name: $t = const { $init }; }
        #[cfg(shardmetrics_loom)]
        loom::thread_local! { $(#[$m])* static $name: $t = $init; }
    };
}
pub(crate) use shard_thread_local;

/// Locks a mutex, recovering from poisoning: every structure guarded here is left consistent
/// by the code that holds the lock (no user code runs under it), so a panic elsewhere must not
/// turn into a panic on a recording or exporting thread.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(not(shardmetrics_loom))]
    {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    #[cfg(shardmetrics_loom)]
    {
        m.lock().unwrap()
    }
}

/// The published-snapshot cell: `arc_swap::ArcSwap` normally (wait-free `load`), a loom-visible
/// mutex stand-in under loom (arc-swap's debt lists use std atomics loom cannot see, so loom
/// could not check the publish/read ordering through it).
pub(crate) struct Published<T> {
    #[cfg(not(shardmetrics_loom))]
    inner: arc_swap::ArcSwap<T>,
    #[cfg(shardmetrics_loom)]
    inner: Mutex<Arc<T>>,
}

impl<T> Published<T> {
    pub(crate) fn new(value: Arc<T>) -> Self {
        #[cfg(not(shardmetrics_loom))]
        {
            Self { inner: arc_swap::ArcSwap::new(value) }
        }
        #[cfg(shardmetrics_loom)]
        {
            Self { inner: Mutex::new(value) }
        }
    }

    /// Wait-free (arc-swap `load_full`): an owned `Arc`, so no guard is held while the caller
    /// renders or writes to a slow client.
    #[inline]
    pub(crate) fn load(&self) -> Arc<T> {
        #[cfg(not(shardmetrics_loom))]
        {
            self.inner.load_full()
        }
        #[cfg(shardmetrics_loom)]
        {
            lock(&self.inner).clone()
        }
    }

    /// Runs `f` on the current value without touching its reference count (arc-swap's
    /// debt-list `load`), for hot read paths shared by many threads (the facade's key cache).
    #[cfg_attr(not(feature = "metrics-facade"), allow(dead_code))] // used by the facade only
    #[inline]
    pub(crate) fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        #[cfg(not(shardmetrics_loom))]
        {
            f(&self.inner.load())
        }
        #[cfg(shardmetrics_loom)]
        {
            let v = lock(&self.inner).clone();
            f(&v)
        }
    }

    /// Publishes `value`; pairs (Release inside arc-swap / the mutex) with the Acquire in `load`.
    pub(crate) fn store(&self, value: Arc<T>) {
        #[cfg(not(shardmetrics_loom))]
        {
            self.inner.store(value)
        }
        #[cfg(shardmetrics_loom)]
        {
            *lock(&self.inner) = value;
        }
    }
}

/// A lazily allocated, never-moving, boxed slice published once through an `AtomicPtr`.
///
/// The slice's length is not stored (one word per slot less on the shard's chunk tables): the
/// owner uses each slot with one length, fixed by where the slot is (a chunk's size follows
/// from its number, a bucket group's from its histogram's precision). The accessors are
/// therefore `unsafe fn`s whose contract is that length.
///
/// # Synchronization
/// The allocating thread writes the (zeroed) slice, then publishes the pointer with a
/// `Release` CAS; every reader loads it with `Acquire`, so it sees the initialised memory.
/// The slice is freed only in `free` (exclusive access), so a `&[T]` handed out by `get`
/// lives as long as `&self`.
pub(crate) struct LazySlice<T> {
    ptr: AtomicPtr<T>,
}

impl<T> LazySlice<T> {
    pub(crate) fn new() -> Self {
        Self { ptr: AtomicPtr::new(std::ptr::null_mut()) }
    }

    /// The slice, if it was allocated.
    ///
    /// # Safety
    /// `len` must be the length this slot is always used with: the `len` of every
    /// [`get_or_init`](Self::get_or_init) call on it.
    #[inline(always)]
    pub(crate) unsafe fn get(&self, len: usize) -> Option<&[T]> {
        // Acquire: pairs with the Release CAS in `get_or_init`, making the slice's initialised
        // contents visible.
        let p = self.ptr.load(Ordering::Acquire);
        if p.is_null() {
            None
        } else {
            // SAFETY: a non-null pointer was produced by `Box::<[T]>::into_raw` in
            // `get_or_init` with `len` elements (the caller's contract: one length per slot)
            // and is freed only in `free`, which needs `&mut self`.
            Some(unsafe { std::slice::from_raw_parts(p, len) })
        }
    }

    /// The slice, allocated with `make` if no thread has yet.
    ///
    /// # Safety
    /// As for [`get`](Self::get): `len` is the one length of this slot. (`make` returning
    /// another length is caught by an assertion.)
    #[cold]
    pub(crate) unsafe fn get_or_init(&self, len: usize, make: impl FnOnce() -> Box<[T]>) -> &[T] {
        // SAFETY: the caller's contract is `get`'s.
        if let Some(s) = unsafe { self.get(len) } {
            return s;
        }
        let fresh = make();
        assert_eq!(fresh.len(), len, "LazySlice length mismatch");
        let raw = Box::into_raw(fresh) as *mut T;
        // Release: publishes the initialised slice to the Acquire loads in `get`.
        // Acquire on failure: we read the winner's slice instead.
        match self.ptr.compare_exchange(std::ptr::null_mut(), raw, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {}
            Err(_) => {
                // SAFETY: `raw` came from `Box::into_raw` above with `len` elements and was
                // never shared (the CAS failed), so we own it.
                drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(raw, len)) });
            }
        }
        // SAFETY: as above; the slot now holds a slice of `len` elements (ours or the winner's,
        // which used the same length by the caller's contract).
        unsafe { self.get(len) }.expect("published above")
    }

    /// Frees the slice.
    ///
    /// # Safety
    /// As for [`get`](Self::get): `len` is the length the slice was allocated with.
    pub(crate) unsafe fn free(&mut self, len: usize) {
        let p = self.ptr.load(Ordering::Relaxed);
        if !p.is_null() {
            self.ptr.store(std::ptr::null_mut(), Ordering::Relaxed);
            // SAFETY: `&mut self` gives exclusive access; `p` came from `Box::into_raw` with
            // `len` elements (the caller's contract) and is not used again.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, len)) });
        }
    }
}

/// A value set at most once and then read lock-free: `once_cell::race::OnceBox`, on the
/// facade's atomics so loom checks it.
///
/// # Synchronization
/// The initialising thread boxes the value, then publishes the pointer with a `Release` CAS;
/// readers load it with `Acquire`, so they see the value's contents. A thread that loses the
/// race frees its own box and returns the winner's. The box is freed only in `Drop`.
pub(crate) struct OnceBox<T> {
    ptr: AtomicPtr<T>,
    /// The box the pointer owns, for the auto traits and drop check.
    _owns: std::marker::PhantomData<Box<T>>,
}

impl<T> OnceBox<T> {
    pub(crate) fn new() -> Self {
        OnceBox { ptr: AtomicPtr::new(std::ptr::null_mut()), _owns: std::marker::PhantomData }
    }

    /// The value, if it was set.
    #[inline]
    pub(crate) fn get(&self) -> Option<&T> {
        // Acquire: pairs with the Release CAS in `get_or_init`.
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: a non-null pointer came from `Box::into_raw` in `get_or_init` and is freed
        // only in `Drop` (`&mut self`), so it is valid for as long as `&self`.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// The value, set to `make()` first if no thread has set it.
    pub(crate) fn get_or_init(&self, make: impl FnOnce() -> T) -> &T {
        if let Some(v) = self.get() {
            return v;
        }
        let fresh = Box::into_raw(Box::new(make()));
        // Release on success: publishes the value to the Acquire loads in `get`. Acquire on
        // failure: we read the winner's value instead.
        match self.ptr.compare_exchange(std::ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            // SAFETY: `fresh` is now owned by `self` and freed only in `Drop`.
            Ok(_) => unsafe { &*fresh },
            Err(winner) => {
                // SAFETY: `fresh` came from `Box::into_raw` above and was never shared.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: `winner` is the published, non-null pointer (as in `get`).
                unsafe { &*winner }
            }
        }
    }
}

impl<T: Clone> Clone for OnceBox<T> {
    /// A new box holding a copy of the value, if one was set.
    fn clone(&self) -> Self {
        let copy = OnceBox::new();
        if let Some(v) = self.get() {
            copy.get_or_init(|| v.clone());
        }
        copy
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for OnceBox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("OnceBox").field(&self.get()).finish()
    }
}

impl<T> Default for OnceBox<T> {
    fn default() -> Self {
        OnceBox::new()
    }
}

impl<T> Drop for OnceBox<T> {
    fn drop(&mut self) {
        let p = self.ptr.load(Ordering::Relaxed);
        if !p.is_null() {
            // SAFETY: `&mut self` gives exclusive access; `p` came from `Box::into_raw` and is
            // freed exactly once, here.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

/// An optional `Arc` that one thread replaces while others take copies:
/// `arc_swap::ArcSwapOption` normally, a loom-visible mutex stand-in under loom (as for
/// [`Published`]). The `Arc` is std's in both builds (it is handed to users); under loom the
/// mutex carries the publication that the model checks.
pub(crate) struct ArcCell<T> {
    #[cfg(not(shardmetrics_loom))]
    inner: arc_swap::ArcSwapOption<T>,
    #[cfg(shardmetrics_loom)]
    inner: Mutex<Option<std::sync::Arc<T>>>,
}

impl<T> Default for ArcCell<T> {
    fn default() -> Self {
        #[cfg(not(shardmetrics_loom))]
        {
            ArcCell { inner: arc_swap::ArcSwapOption::empty() }
        }
        #[cfg(shardmetrics_loom)]
        {
            ArcCell { inner: Mutex::new(None) }
        }
    }
}

impl<T> ArcCell<T> {
    /// Replaces the value; pairs (Release inside arc-swap / the mutex) with `load`.
    pub(crate) fn store(&self, value: Option<std::sync::Arc<T>>) {
        #[cfg(not(shardmetrics_loom))]
        {
            self.inner.store(value)
        }
        #[cfg(shardmetrics_loom)]
        {
            *lock(&self.inner) = value;
        }
    }

    /// A copy of the current value (arc-swap `load_full`).
    pub(crate) fn load(&self) -> Option<std::sync::Arc<T>> {
        #[cfg(not(shardmetrics_loom))]
        {
            self.inner.load_full()
        }
        #[cfg(shardmetrics_loom)]
        {
            lock(&self.inner).clone()
        }
    }
}
