//! Fuzz target `gossip`: see [`cosmic_fuzz::gossip`] for the decoder and the property checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cosmic_fuzz::gossip(data);
});
