//! Fuzz target `capability`: see [`cosmic_fuzz::capability`] for the decoder and the property checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cosmic_fuzz::capability(data);
});
