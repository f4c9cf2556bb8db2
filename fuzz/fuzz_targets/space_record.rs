//! Fuzz target `space_record`: see [`cosmic_fuzz::space_record`] for the decoder and the property checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cosmic_fuzz::space_record(data);
});
