#![no_main]
// The target's body is keyfort::fuzzing::software_statement, where the corpus replay test calls it too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keyfort::fuzzing::software_statement(data));
