#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| syncline::testing::fuzz::drive_session(data));
