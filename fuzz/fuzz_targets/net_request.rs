//! Fuzz target `net_request`: see [`cosmic_fuzz::net_request`] for the decoder and the property checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cosmic_fuzz::net_request(data);
});
