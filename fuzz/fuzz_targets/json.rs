//! libFuzzer target `json`: [`shardmetrics_fuzz::json`] on every input. `cargo +nightly fuzz run
//! json` builds it with `--cfg fuzzing`; a plain build (`cargo run -p shardmetrics-fuzz --bin
//! json -- FILE_OR_DIR…`) replays files through the same body on stable, e.g. a crash to debug.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| shardmetrics_fuzz::json(data));

#[cfg(not(fuzzing))]
fn main() {
    shardmetrics_fuzz::replay_args(shardmetrics_fuzz::json);
}
