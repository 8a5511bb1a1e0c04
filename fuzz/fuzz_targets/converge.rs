#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| syncline::testing::fuzz::converge(data));
