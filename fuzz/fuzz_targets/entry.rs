//! Fuzz target `entry`: see [`cosmic_fuzz::entry`] for the decoder and the property checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cosmic_fuzz::entry(data);
});
