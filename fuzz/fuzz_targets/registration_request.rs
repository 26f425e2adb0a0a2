#![no_main]
// The target's body is keyfort::fuzzing::registration_request, where the corpus replay test calls it too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keyfort::fuzzing::registration_request(data));
