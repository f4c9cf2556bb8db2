//! Fuzz target `blob_where`: see [`cosmic_fuzz::blob_where`] for the decoder and the property checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cosmic_fuzz::blob_where(data);
});
