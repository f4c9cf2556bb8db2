//! Fuzz target `net_frame`: see [`cosmic_fuzz::net_frame`] for the decoder and the property checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cosmic_fuzz::net_frame(data);
});
