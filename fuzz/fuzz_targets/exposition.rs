#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shardmetrics_fuzz::exposition(data));
