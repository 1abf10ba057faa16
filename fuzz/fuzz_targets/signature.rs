#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    outpost_proto::fuzzing::signature(data);
});
