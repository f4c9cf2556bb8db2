//! Signing and verification throughput (items per second): sign, verify, and batch
//! verification of 8, 64 and 256 signatures by distinct keys, and of 256 and 4,096 by one
//! key (a batch of one author's entries), over 128-byte messages.

use cosmic_auth::{AuthorKey, PublicKey, Signature};

fn main() {
    divan::main();
}

const MESSAGE: &[u8] = &[7u8; 128];

#[divan::bench]
fn sign(bencher: divan::Bencher) {
    let key = AuthorKey::generate();
    bencher
        .counter(divan::counter::ItemsCount::new(1usize))
        .bench(|| key.sign(divan::black_box(MESSAGE)));
}

#[divan::bench]
fn verify(bencher: divan::Bencher) {
    let key = AuthorKey::generate();
    let public = key.public();
    let signature = key.sign(MESSAGE);
    bencher
        .counter(divan::counter::ItemsCount::new(1usize))
        .bench(|| cosmic_auth::verify(&public, divan::black_box(MESSAGE), &signature));
}

#[divan::bench(args = [8, 64, 256])]
fn verify_batch(bencher: divan::Bencher, n: usize) {
    let keys: Vec<AuthorKey> = (0..n).map(|_| AuthorKey::generate()).collect();
    let publics: Vec<PublicKey> = keys.iter().map(AuthorKey::public).collect();
    let signatures: Vec<Signature> = keys.iter().map(|key| key.sign(MESSAGE)).collect();
    let messages: Vec<&[u8]> = vec![MESSAGE; n];
    bencher
        .counter(divan::counter::ItemsCount::new(n))
        .bench(|| cosmic_auth::verify_batch(&messages, &publics, &signatures));
}

#[divan::bench(args = [256, 4096])]
fn verify_batch_one_author(bencher: divan::Bencher, n: usize) {
    let key = AuthorKey::generate();
    let publics: Vec<PublicKey> = vec![key.public(); n];
    let messages: Vec<Vec<u8>> = (0..n).map(|i| [MESSAGE, &i.to_be_bytes()].concat()).collect();
    let signatures: Vec<Signature> = messages.iter().map(|message| key.sign(message)).collect();
    let messages: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    bencher
        .counter(divan::counter::ItemsCount::new(n))
        .bench(|| cosmic_auth::verify_batch(&messages, &publics, &signatures));
}
