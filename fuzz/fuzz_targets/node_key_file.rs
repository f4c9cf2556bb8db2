//! Fuzz target `node_key_file`: see [`cosmic_fuzz::node_key_file`] for the decoder and the property checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cosmic_fuzz::node_key_file(data);
});
