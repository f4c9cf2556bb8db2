//! Fuzz target `recon_message`: see [`cosmic_fuzz::recon_message`] for the decoder and the property checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cosmic_fuzz::recon_message(data);
});
