//! A process-wide allocator setting that makes the CPU backends faster.
//!
//! A forward pass at 360×480 allocates tensors of 1–11 MB per layer. glibc's `malloc` serves
//! blocks that large with `mmap` and hands them back to the OS on `free`, so every layer of
//! every forward pass pays for fresh pages: page faults, zeroing and `munmap` (what that costs
//! is measured in `BENCHMARKS.md`). [`retain_freed_memory`] asks glibc to keep
//! such blocks for reuse instead.

/// The largest block glibc still serves from its reusable heap (`M_MMAP_THRESHOLD`): glibc's
/// own upper limit on 64-bit systems, 32 MiB. Larger blocks are still mapped and unmapped.
pub const RETAINED_BLOCK_LIMIT: usize = 32 << 20;

/// How much free memory the heap may keep before glibc gives some back (`M_TRIM_THRESHOLD`):
/// 1 GiB, more than a forward pass or a training step of this network at 360×480 allocates,
/// so nothing is returned between layers.
pub const RETAINED_FREE_LIMIT: usize = 1 << 30;

/// Tells the C allocator to keep freed blocks up to [`RETAINED_BLOCK_LIMIT`] for reuse rather
/// than return them to the OS, keeping up to [`RETAINED_FREE_LIMIT`] free (glibc's
/// `M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD`). Returns whether the setting was applied: `false`
/// on systems without glibc, where it does nothing.
///
/// It changes the whole process, not only this crate: memory freed by the program stays
/// reserved (resident memory after a forward pass stays near its peak instead of falling back),
/// which is what an inference or training loop wants. The examples and benchmarks of this
/// project call it first thing; a library user opts in by calling it once at start-up. It is
/// safe to call more than once and from any thread.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only changes allocator parameters; glibc serialises it internally.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, RETAINED_BLOCK_LIMIT as libc::c_int) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, RETAINED_FREE_LIMIT as libc::c_int) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_setting() {
        assert!(super::retain_freed_memory());
        // Idempotent.
        assert!(super::retain_freed_memory());
    }
}
