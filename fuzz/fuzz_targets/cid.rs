//! Fuzz target `cid`: see [`cosmic_fuzz::cid`] for the decoder and the property checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cosmic_fuzz::cid(data);
});
