//! Fuzz target `config`: see [`cosmic_fuzz::config`] for the decoder and the property checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cosmic_fuzz::config(data);
});
