//! Fuzz target `net_response`: see [`cosmic_fuzz::net_response`] for the decoder and the property checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cosmic_fuzz::net_response(data);
});
