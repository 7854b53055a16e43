#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| posthorn::fuzzing::echo_canonical(data));
