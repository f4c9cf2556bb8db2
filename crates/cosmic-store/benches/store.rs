//! Store benchmarks: durable writes, batches, reads, whole-space fingerprints, memory.
//!
//! `cargo bench -p cosmic-store` builds a space of `COSMIC_STORE_BENCH_ENTRIES` entries
//! (default 1,000,000; 10,000 when run by `cargo test --benches`, which passes no `--bench`) once, in a temporary
//! directory, and prints its build time, file size and resident memory to stderr.

use std::sync::OnceLock;
use std::time::Instant;

use cosmic_auth::{AuthorKey, PublicKey, SpaceKey, SpaceMode};
use cosmic_store::{Entry, Hlc, Options, Store, Value};

fn main() {
    divan::main();
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    space: PublicKey,
    n_entries: u64,
}

fn author() -> AuthorKey {
    AuthorKey::from_secret_bytes(&[2; 32])
}

fn fresh_store() -> (tempfile::TempDir, Store, PublicKey) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(dir.path().join("bench.redb"), options()).expect("open");
    let space =
        store.create_space(&SpaceKey::from_secret_bytes(&[1; 32]), SpaceMode::Open).expect("space");
    (dir, store, space.space)
}

fn options() -> Options {
    let cache_size = std::env::var("COSMIC_STORE_BENCH_CACHE_MIB")
        .ok()
        .and_then(|mib| mib.parse::<usize>().ok())
        .map(|mib| mib << 20);
    Options { cache_size, ..Options::default() }
}

fn batch(space: PublicKey, start: u64, n: u64) -> Vec<Entry> {
    let author = author();
    (start..start + n)
        .map(|i| {
            let doc = format!("docs/{:08}", i / 4);
            let field = format!("field{}", i % 4);
            let hlc = Hlc::new(1_700_000_000_000 + i, 0);
            Entry::sign(&author, space, &doc, &field, Value::Int(i as i64), hlc).expect("entry")
        })
        .collect()
}

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn large() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // `cargo bench` passes `--bench`; `cargo test --benches` runs each bench once without it.
        let testing = !std::env::args().any(|arg| arg == "--bench");
        let n_entries = std::env::var("COSMIC_STORE_BENCH_ENTRIES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(if testing { 10_000 } else { 1_000_000 });
        let (dir, store, space) = fresh_store();
        let rss_before = resident_kib();
        let started = Instant::now();
        let chunk = 10_000;
        let mut at = 0;
        while at < n_entries {
            let n = chunk.min(n_entries - at);
            store.insert_batch(batch(space, at, n)).expect("batch");
            at += n;
        }
        let elapsed = started.elapsed();
        let path = dir.path().join("bench.redb");
        let file = std::fs::metadata(&path).map_or(0, |m| m.len());
        let rss_built = resident_kib();
        // Reopen, as a node does after a restart: resident memory then shows what reading
        // needs, without what the writes left behind in the allocator.
        drop(store);
        let store = Store::open(&path, options()).expect("reopen");
        eprintln!(
            "fixture: {n_entries} entries in {elapsed:.1?} ({:.0} entries/s incl. signing), \
             file {} MiB, VmRSS {} MiB after writing, {} MiB after reopening (before: {} MiB)",
            n_entries as f64 / elapsed.as_secs_f64(),
            file / (1 << 20),
            rss_built / 1024,
            resident_kib() / 1024,
            rss_before / 1024,
        );
        Fixture { _dir: dir, store, space, n_entries }
    })
}

#[divan::bench(sample_count = 200)]
fn durable_single_write(bencher: divan::Bencher) {
    let (_dir, store, space) = fresh_store();
    let author = author();
    let mut i = 0u64;
    bencher.bench_local(|| {
        i += 1;
        store
            .write(&author, &space, &format!("docs/{i}"), vec![("f".into(), Value::Int(1))])
            .expect("write")
    });
}

#[divan::bench(sample_count = 20, args = [100, 1000])]
fn batched_insert(bencher: divan::Bencher, size: u64) {
    let (_dir, store, space) = fresh_store();
    let mut start = 0;
    bencher
        .counter(divan::counter::ItemsCount::new(size))
        .with_inputs(|| {
            start += size;
            batch(space, start, size)
        })
        .bench_local_values(|entries| store.insert_batch(entries).expect("batch"));
}

#[divan::bench(sample_count = 1000)]
fn get_doc(bencher: divan::Bencher) {
    let fixture = large();
    let doc = format!("docs/{:08}", fixture.n_entries / 8);
    bencher.bench(|| fixture.store.get_doc(&fixture.space, &doc).expect("get").expect("a doc"));
}

#[divan::bench(sample_count = 200)]
fn fingerprint_whole_space(bencher: divan::Bencher) {
    let fixture = large();
    let fingerprint = fixture.store.fingerprint(&fixture.space, None, None).expect("fingerprint");
    assert_eq!(fingerprint.count, fixture.n_entries);
    bencher.bench(|| fixture.store.fingerprint(&fixture.space, None, None).expect("fingerprint"));
}

#[divan::bench(sample_count = 200)]
fn fingerprint_half_space(bencher: divan::Bencher) {
    let fixture = large();
    let lo = cosmic_store::RangeKey {
        doc: format!("docs/{:08}", fixture.n_entries / 16),
        field: "field1".into(),
    };
    let hi = cosmic_store::RangeKey {
        doc: format!("docs/{:08}", fixture.n_entries / 16 * 3),
        field: "field2".into(),
    };
    bencher.bench(|| {
        fixture.store.fingerprint(&fixture.space, Some(&lo), Some(&hi)).expect("fingerprint")
    });
}

#[divan::bench(sample_count = 200)]
fn nth_item_middle(bencher: divan::Bencher) {
    let fixture = large();
    let middle = fixture.n_entries / 2;
    bencher.bench(|| fixture.store.nth_item(&fixture.space, None, middle).expect("seek"));
}

#[divan::bench(sample_count = 1)]
fn resident_memory_after_fingerprints(bencher: divan::Bencher) {
    let fixture = large();
    bencher.bench(|| fixture.store.fingerprint(&fixture.space, None, None).expect("fingerprint"));
    eprintln!(
        "VmRSS with {} entries after fingerprints: {} MiB",
        fixture.n_entries,
        resident_kib() / 1024
    );
}
