//! A floating-point mode that keeps x86 CPUs fast on weights that decayed to almost nothing.
//!
//! A network trained for long with weight decay keeps channels that stopped learning, and their
//! weights and batch-norm statistics shrink into the subnormal range (below `f32::MIN_POSITIVE`,
//! about 1.2e-38): the shipped CamVid weights hold about 2.7 million such values of their 3.0
//! million. x86 CPUs, Intel's most of all, compute on subnormal numbers through slow microcode
//! assists, so training from those weights ran at 1.3 images/s instead of 6.5 on an Intel Xeon
//! (`BENCHMARKS.md`). [`flush_subnormals`] turns on the SSE "flush to zero" and "denormals are
//! zero" modes, which treat such values as zero: results change only where a value below 1.2e-38
//! would have been kept.

/// The MXCSR bits: flush-to-zero (results) and denormals-are-zero (inputs).
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = 0x8000 | 0x0040;

/// Treats subnormal `f32`/`f64` values as zero on the calling thread and on every thread of
/// Rayon's global pool (where this crate's kernels, Burn's CPU backends and `gemm` compute).
/// Returns whether the mode was set: `false` on CPUs other than x86-64, where it does nothing.
///
/// The mode is per thread and stays set: threads created later (other thread pools, a data
/// loader's workers) keep the default unless they call it too. The examples and benchmarks of
/// this project call it first thing, with [`crate::retain_freed_memory`]; a library user opts in
/// the same way. Safe to call more than once and from any thread.
pub fn flush_subnormals() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        fn set() {
            let mut csr: u32 = 0;
            // SAFETY: `stmxcsr` stores this thread's MXCSR (SSE rounding, exception masks and
            // flush modes) into `csr`; `ldmxcsr` loads it back with FTZ and DAZ set, the other
            // bits as they were. No memory but `csr` is touched.
            unsafe {
                std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
                csr |= FTZ_DAZ;
                std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly, preserves_flags));
            }
        }
        set();
        rayon::broadcast(|_| set());
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
