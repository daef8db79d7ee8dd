//! Computing the key of a call with small arguments allocates nothing: the arguments are
//! serialized straight into the hasher. A counting allocator proves it; it counts only the
//! allocations of the thread under test (the test harness allocates on its own threads).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use memo_cache::Function;

struct Counting;

thread_local! {
    // A const initializer: reading it never allocates, so the allocator may use it.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(serde::Serialize)]
struct Window {
    start: u32,
    len: u32,
    label: &'static str,
}

#[test]
fn small_argument_keys_allocate_nothing() {
    static F: Function = Function::new("alloc_test::features", "v1", "Vec<f64>");
    let path = "data/run-42.csv";
    let samples = [1.5f64, 2.5, 3.5];
    let window = Window {
        start: 3,
        len: 10,
        label: "w",
    };
    F.key(&(path, 7usize)).unwrap(); // the identity digest is computed once, here

    let before = allocations();
    for i in 0..1000u64 {
        std::hint::black_box(
            F.key(&(path, i, &samples[..], Some(&window), (i % 3 == 0, 'x')))
                .unwrap(),
        );
    }
    let allocated = allocations() - before;
    assert_eq!(
        allocated, 0,
        "1000 key computations allocated {allocated} times"
    );

    // Maps are the documented exception: their entries are sorted through buffers.
    let map: std::collections::HashMap<u8, u8> = [(1, 2), (3, 4)].into_iter().collect();
    let before = allocations();
    F.key(&(&map,)).unwrap();
    assert!(allocations() > before, "the counter counts");
}
