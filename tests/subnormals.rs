//! `flush_subnormals` (its own test binary: the mode is per thread and stays set, so it must
//! not leak into the other tests' threads): subnormal results become zero on the calling thread
//! and on every thread of Rayon's global pool, and normal arithmetic is untouched.

use std::hint::black_box;

/// Half the smallest normal f32: a subnormal result unless the thread flushes it to zero;
/// and the same subnormal taken as input (zero under "denormals are zero").
fn probe() -> (f32, f32) {
    let tiny = black_box(f32::MIN_POSITIVE);
    let half = black_box(tiny * 0.5);
    let sub = black_box(f32::from_bits(1)); // the smallest subnormal, built from its bits
    (half, black_box(sub * 2.0))
}

#[test]
fn subnormals_become_zero_on_the_caller_and_the_rayon_pool() {
    if !cfg!(target_arch = "x86_64") {
        assert!(!squeeze_segnet::flush_subnormals());
        return;
    }
    // A fresh thread of this test binary computes subnormals as IEEE 754 says.
    let (half, double) = std::thread::spawn(probe).join().unwrap();
    assert_eq!(half, f32::MIN_POSITIVE / 2.0);
    assert!(half > 0.0 && double > 0.0);
    assert!(squeeze_segnet::flush_subnormals());
    assert_eq!(probe(), (0.0, 0.0), "calling thread");
    let pool = rayon::broadcast(|_| probe());
    assert_eq!(pool.len(), rayon::current_num_threads());
    assert!(
        pool.iter().all(|&p| p == (0.0, 0.0)),
        "pool threads: {pool:?}"
    );
    // Normal numbers are untouched.
    assert_eq!(black_box(1.5f32) * black_box(2.0f32), 3.0);
    assert_eq!(
        black_box(f32::MIN_POSITIVE) * black_box(2.0),
        2.0 * f32::MIN_POSITIVE
    );
    // Idempotent.
    assert!(squeeze_segnet::flush_subnormals());
    assert_eq!(probe(), (0.0, 0.0));
}
