//! Fuzz target `keystore`: see [`cosmic_fuzz::keystore`] for the decoder and the property checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cosmic_fuzz::keystore(data);
});
