#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| posthorn::fuzzing::envelope(data));
