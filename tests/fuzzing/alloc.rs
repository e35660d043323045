//! The fuzz tests' global allocator: the system's, refusing (with a report naming the
//! current input) any single allocation above [`MAX_ALLOCATION`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Largest single allocation a loader may ask for while it reads a fuzz input (every input
/// is a few kilobytes; anything near this size was sized by a value read from the input).
pub const MAX_ALLOCATION: usize = 64 << 20;

/// The system allocator, refusing (with a report) any allocation above [`MAX_ALLOCATION`].
struct Guarded;

/// Size of the last refused allocation (0: none).
static REFUSED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The input this thread is feeding to a loader, for reports from the allocator.
    static INPUT: Cell<(*const u8, usize)> = const { Cell::new((std::ptr::null(), 0)) };
}

impl Guarded {
    /// Whether an allocation of `size` bytes is allowed; a refused one is recorded and
    /// reported with the current input (without allocating: the report goes straight to
    /// stderr, and a caller that cannot handle the failure then aborts).
    fn allows(size: usize) -> bool {
        if size <= MAX_ALLOCATION {
            return true;
        }
        REFUSED.store(size, Ordering::SeqCst);
        let (ptr, len) = INPUT.try_with(Cell::get).unwrap_or((std::ptr::null(), 0));
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "fuzz: refused an allocation of {size} bytes; input: ");
        if !ptr.is_null() {
            // SAFETY: `watching` sets the pointer to a live input for the duration of the
            // loader call and clears it afterwards; this thread is inside that call.
            let input = unsafe { std::slice::from_raw_parts(ptr, len) };
            let _ = write!(err, "b\"{}\"", input.escape_ascii());
        }
        let _ = writeln!(err);
        false
    }
}

// SAFETY: every method forwards to `System` unchanged, or returns null (allocation failure)
// for sizes it refuses, which the `GlobalAlloc` contract allows.
unsafe impl GlobalAlloc for Guarded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::allows(layout.size()) {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        } else {
            std::ptr::null_mut()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::allows(layout.size()) {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        } else {
            std::ptr::null_mut()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::allows(new_size) {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.realloc(ptr, layout, new_size) }
        } else {
            std::ptr::null_mut()
        }
    }
}

#[global_allocator]
static ALLOCATOR: Guarded = Guarded;

/// Runs `f` with `input` as this thread's current input (named by allocation reports);
/// returns its result and the size of an allocation refused meanwhile, if any.
pub fn watching<T>(input: &[u8], f: impl FnOnce() -> T) -> (T, Option<usize>) {
    REFUSED.store(0, Ordering::SeqCst);
    INPUT.with(|c| c.set((input.as_ptr(), input.len())));
    let result = f();
    INPUT.with(|c| c.set((std::ptr::null(), 0)));
    let refused = REFUSED.load(Ordering::SeqCst);
    (result, (refused > 0).then_some(refused))
}
