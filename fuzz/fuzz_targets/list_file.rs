#![no_main]
//! Fuzz target `list_file`: see `squeeze_segnet_workspace::fuzz`.
use libfuzzer_sys::fuzz_target;
use squeeze_segnet_workspace::fuzz;

fuzz_target!(|data: &[u8]| fuzz::run("list_file", data));
