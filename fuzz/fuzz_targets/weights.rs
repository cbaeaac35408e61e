#![no_main]
//! Fuzz target `weights`: see `squeeze_segnet_workspace::fuzz`.
use libfuzzer_sys::fuzz_target;
use squeeze_segnet_workspace::fuzz;

fuzz_target!(|data: &[u8]| fuzz::run("weights", data));
