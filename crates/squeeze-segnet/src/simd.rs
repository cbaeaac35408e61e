//! Run-time dispatch to the widest x86-64 vector extension the CPU has, for the host kernels'
//! own loops (transforms, epilogues, copies). The crate is compiled for baseline x86-64, whose
//! vectors are SSE2's four floats; a loop only gets AVX2's eight or AVX-512's sixteen inside a
//! function compiled with those features. [`multiversion!`] writes a function three times —
//! AVX-512, AVX2 + FMA, baseline — over one `#[inline(always)]` body, and calls the one
//! [`level`] picks. GEMMs are the `gemm` crate's, which dispatches on its own.
//!
//! AVX-512 is used only with the `avx512` feature (on by default), as for `gemm`'s kernels:
//! `--no-default-features` measures the AVX2 path on an AVX-512 machine. The environment
//! variable [`SIMD_ENV`] (`avx2` or `baseline`) caps this crate's own level at run time (not
//! `gemm`'s): how the tests run every path on one machine.

use std::sync::OnceLock;

use crate::SegNetError;

/// A vector extension level, in increasing width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    /// SSE2 (every x86-64), or another architecture.
    Baseline,
    /// AVX2 with FMA.
    Avx2,
    /// AVX-512 F, BW, VL and DQ.
    Avx512,
}

/// The widest level this CPU supports (and this build allows), detected once.
pub(crate) fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(detect)
}

/// Caps this crate's vector level: `avx512`, `avx2` or `baseline` (another value is an error,
/// reported by [`check_simd_env`]).
pub const SIMD_ENV: &str = "SQUEEZE_SEGNET_SIMD";

/// The level [`SIMD_ENV`] names, `None` when it is unset.
///
/// # Errors
/// The value, when it names no level.
pub(crate) fn env_cap() -> Result<Option<Level>, String> {
    match std::env::var(SIMD_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Ok(v) if v == "avx512" => Ok(Some(Level::Avx512)),
        Ok(v) if v == "avx2" => Ok(Some(Level::Avx2)),
        Ok(v) if v == "baseline" => Ok(Some(Level::Baseline)),
        Ok(v) => Err(v),
        Err(std::env::VarError::NotUnicode(v)) => Err(v.to_string_lossy().into_owned()),
    }
}

/// Checks [`SIMD_ENV`] (called with the Burn device check when a backend's device is made).
///
/// # Errors
/// [`SegNetError::Config`] naming the variable, its value and the accepted ones.
pub fn check_simd_env() -> Result<(), SegNetError> {
    env_cap().map(|_| ()).map_err(|v| {
        SegNetError::Config(format!(
            "{SIMD_ENV}={v:?}: expected avx512, avx2 or baseline (or leave it unset)"
        ))
    })
}

fn detect() -> Level {
    // A bad value falls back to the CPU's level; `check_simd_env` names it.
    let cap = env_cap().ok().flatten().unwrap_or(Level::Avx512);
    detect_cpu().min(cap)
}

fn detect_cpu() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if cfg!(feature = "avx512")
            && has!("avx512f")
            && has!("avx512bw")
            && has!("avx512vl")
            && has!("avx512dq")
        {
            return Level::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

/// `multiversion! { [attributes] [pub(..)] [unsafe] fn name<T: Bound>(arg: Type, ...) -> Ret = body; }`
/// defines `name`, which calls the `#[inline(always)]` function `body` (same arguments, `unsafe`
/// when `name` is) compiled for [`level`]'s extension. Arguments must be plain identifiers. The
/// safe form is the unsafe one around a safe body.
macro_rules! multiversion {
    (
        $(#[$attr:meta])*
        $vis:vis unsafe fn $name:ident<$t:ident: $bound:path>($($arg:ident: $ty:ty),* $(,)?)
            $(-> $ret:ty)? = $body:path;
    ) => {
        $(#[$attr])*
        #[allow(clippy::too_many_arguments, unused_unsafe)]
        $vis unsafe fn $name<$t: $bound>($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
                #[allow(clippy::too_many_arguments, unused_unsafe)]
                unsafe fn avx512<$t: $bound>($($arg: $ty),*) $(-> $ret)? {
                    // SAFETY: the caller's contract, passed on.
                    unsafe { $body($($arg),*) }
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments, unused_unsafe)]
                unsafe fn avx2<$t: $bound>($($arg: $ty),*) $(-> $ret)? {
                    // SAFETY: the caller's contract, passed on.
                    unsafe { $body($($arg),*) }
                }
                match $crate::simd::level() {
                    // SAFETY: the CPU has these features (`level`).
                    $crate::simd::Level::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::simd::Level::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::Level::Baseline => {}
                }
            }
            // SAFETY: the caller's contract, passed on.
            unsafe { $body($($arg),*) }
        }
    };
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident<$t:ident: $bound:path>($($arg:ident: $ty:ty),* $(,)?)
            $(-> $ret:ty)? = $body:path;
    ) => {
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name<$t: $bound>($($arg: $ty),*) $(-> $ret)? {
            $crate::simd::multiversion! {
                unsafe fn dispatch<$t: $bound>($($arg: $ty),*) $(-> $ret)? = $body;
            }
            // SAFETY: `$body` is a safe function; `dispatch` only picks its compiled form.
            unsafe { dispatch($($arg),*) }
        }
    };
}
pub(crate) use multiversion;
