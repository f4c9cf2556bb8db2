//! Large transfers, resume, corrupt providers and crashes, with persistent stores and
//! real endpoints on loopback.
#![allow(clippy::disallowed_methods, reason = "test tasks end with the test")]
#![allow(clippy::unwrap_used, reason = "a test fails loudly, helpers included")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use cosmic_auth::NodeKey;
use cosmic_blobs::{
    BlobEvent, BlobState, Blobs, CancellationToken, Cid, Config, Error, FetchOptions, Visibility,
};
use futures::StreamExt;

const MIB: usize = 1 << 20;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut data = vec![0u8; len];
    // A cheap, non-repeating-per-chunk filler (so that every 1 KiB chunk differs).
    let mut state = u64::from(seed) | 1;
    for word in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bytes = state.to_le_bytes();
        word.copy_from_slice(&bytes[..word.len()]);
    }
    data
}

async fn open(dir: &Path, key: &NodeKey) -> Blobs {
    Blobs::builder(key).config(Config::loopback()).open(dir).await.unwrap()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_blob_is_transferred_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let alice = open(&dir.path().join("alice"), &NodeKey::generate()).await;
    let bob = open(&dir.path().join("bob"), &NodeKey::generate()).await;
    let data = pattern(100 * MIB, 1);
    let source = dir.path().join("big.bin");
    std::fs::write(&source, &data).unwrap();
    let added = alice.add_file(&source, Visibility::Public).await.unwrap();
    assert_eq!(added.cid, Cid::of_bytes(&data));
    let fetched = tokio::time::timeout(
        Duration::from_secs(60),
        bob.fetch_from(&added.cid, alice.peer_addr()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(fetched.size, data.len() as u64);
    assert_eq!(fetched.received, data.len() as u64);
    let target = dir.path().join("copy.bin");
    bob.export(&added.cid, &target).await.unwrap();
    assert!(std::fs::read(&target).unwrap() == data, "exported copy differs");
    alice.shutdown().await.unwrap();
    bob.shutdown().await.unwrap();
}

/// Cancels `bob`'s fetch once at least half of `size` bytes have arrived.
async fn fetch_half(bob: &Blobs, cid: &Cid, provider: cosmic_blobs::PeerAddr, size: u64) {
    let token = CancellationToken::new();
    let mut events = bob.bus().subscribe::<BlobEvent>();
    let watcher = {
        let token = token.clone();
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                if let BlobEvent::FetchProgress { received, .. } = event
                    && received >= size / 2
                {
                    token.cancel();
                    return;
                }
            }
        })
    };
    let options = FetchOptions::new().provider(provider).cancel(token);
    let error = tokio::time::timeout(Duration::from_secs(30), bob.fetch(cid, options))
        .await
        .unwrap()
        .err()
        .unwrap();
    assert!(matches!(error, Error::Cancelled { .. }), "{error}");
    watcher.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_fetch_resumes_after_a_restart_without_refetching() {
    let dir = tempfile::tempdir().unwrap();
    let alice = open(&dir.path().join("alice"), &NodeKey::generate()).await;
    let bob_key = NodeKey::generate();
    let bob_dir = dir.path().join("bob");
    let bob = open(&bob_dir, &bob_key).await;
    let size = 32 * MIB;
    let data = pattern(size, 2);
    let added = alice.add_bytes(data.clone(), Visibility::Public).await.unwrap();

    fetch_half(&bob, &added.cid, alice.peer_addr(), size as u64).await;
    assert!(matches!(bob.stat(&added.cid).await.unwrap(), BlobState::Partial { .. }));
    // The partial blob is held against garbage collection.
    bob.gc().await.unwrap();
    assert!(matches!(bob.stat(&added.cid).await.unwrap(), BlobState::Partial { .. }));

    // Restart the receiving store; the partial blob is still there and resumes.
    bob.shutdown().await.unwrap();
    drop(bob);
    let bob = open(&bob_dir, &bob_key).await;
    assert!(matches!(bob.stat(&added.cid).await.unwrap(), BlobState::Partial { .. }));
    let mut events = bob.bus().subscribe::<BlobEvent>();
    let fetched = bob.fetch_from(&added.cid, alice.peer_addr()).await.unwrap();
    let present = match events.recv().await.unwrap() {
        BlobEvent::FetchStarted { present, .. } => present,
        other => panic!("expected FetchStarted, got {other:?}"),
    };
    assert!(present >= size as u64 / 2, "only {present} bytes kept");
    // Exactly the missing bytes travel the second time.
    assert_eq!(fetched.received, size as u64 - present);
    assert!(bob.read_to_bytes(&added.cid).await.unwrap() == data);
    alice.shutdown().await.unwrap();
    bob.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_provider_is_detected_and_the_next_one_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let size = 4 * MIB;
    let data = pattern(size, 3);
    let cid = Cid::of_bytes(&data);

    // Mallory stores the blob, then its data file is damaged on disk in the middle.
    let mallory_key = NodeKey::generate();
    let mallory_dir = dir.path().join("mallory");
    let mallory = open(&mallory_dir, &mallory_key).await;
    mallory.add_bytes(data.clone(), Visibility::Public).await.unwrap();
    mallory.shutdown().await.unwrap();
    drop(mallory);
    let data_file = files_under(&mallory_dir)
        .into_iter()
        .find(|path| std::fs::metadata(path).unwrap().len() == size as u64)
        .expect("the blob's data file");
    let mut damaged = std::fs::read(&data_file).unwrap();
    damaged[size / 2] ^= 0xff;
    std::fs::write(&data_file, damaged).unwrap();
    let mallory = open(&mallory_dir, &mallory_key).await;

    let carol = open(&dir.path().join("carol"), &NodeKey::generate()).await;
    carol.add_bytes(data.clone(), Visibility::Public).await.unwrap();
    let bob = open(&dir.path().join("bob"), &NodeKey::generate()).await;
    let mut events = bob.bus().subscribe::<BlobEvent>();

    // Mallory alone: the damaged group is refused, so the blob cannot complete.
    let options = FetchOptions::new().provider(mallory.peer_addr()).timeout(Duration::from_secs(3));
    let error = bob.fetch(&cid, options).await.err().unwrap();
    assert!(matches!(error, Error::Timeout { .. }), "{error}");
    assert!(matches!(bob.stat(&cid).await.unwrap(), BlobState::Partial { .. }));
    let mut saw_failure = false;
    while let Ok(Some(event)) = events.try_recv() {
        if let BlobEvent::FetchProviderFailed { provider, .. } = event {
            assert_eq!(provider, mallory.node());
            saw_failure = true;
        }
    }
    assert!(saw_failure);

    // Mallory first, then Carol: the fetch falls through and completes with good bytes.
    let options = FetchOptions::new().provider(mallory.peer_addr()).provider(carol.peer_addr());
    let fetched = bob.fetch(&cid, options).await.unwrap();
    assert_eq!(fetched.provider, Some(carol.node()));
    assert!(fetched.received < size as u64, "kept verified bytes were fetched again");
    assert!(bob.read_to_bytes(&cid).await.unwrap() == data);
    for node in [mallory, carol, bob] {
        node.shutdown().await.unwrap();
    }
}

const CHILD_DIR_VAR: &str = "COSMIC_BLOBS_TEST_KILL_DIR";
const CHILD_KEY_VAR: &str = "COSMIC_BLOBS_TEST_KILL_KEY";
const CHILD_READY: &str = "child-adding";

/// Run as a child process by `kill_during_add_leaves_a_store_that_reopens`: adds an endless
/// stream to the store and never finishes. Does nothing when run as a normal test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_adds_an_endless_stream() {
    let Ok(dir) = std::env::var(CHILD_DIR_VAR) else { return };
    let key = std::env::var(CHILD_KEY_VAR).unwrap();
    let mut secret = [0u8; 32];
    for (index, byte) in secret.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&key[2 * index..2 * index + 2], 16).unwrap();
    }
    let blobs = open(Path::new(&dir), &NodeKey::from_secret_bytes(secret)).await;
    // 32 MiB, then a stream that never ends: the add stays in progress until killed.
    let chunks = (0..32u8).map(|index| Ok(bytes::Bytes::from(pattern(MIB, index))));
    let stream = futures::stream::iter(chunks).chain(futures::stream::pending());
    let adding = tokio::spawn(async move { blobs.add_stream(stream, Visibility::Private).await });
    // Tell the parent once the store holds a good part of the data.
    let temp = Path::new(&dir).join("temp");
    loop {
        let written: u64 = files_under(&temp).iter().map(|p| p.metadata().unwrap().len()).sum();
        if written >= 16 * MIB as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    {
        use std::io::Write;
        let mut stdout = std::io::stdout();
        stdout.write_all(format!("\n{CHILD_READY}\n").as_bytes()).unwrap();
        stdout.flush().unwrap();
    }
    adding.await.unwrap().unwrap();
    unreachable!("an endless stream never finishes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_add_leaves_a_store_that_reopens() {
    use std::io::BufRead;

    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("blobs");
    let key = NodeKey::generate();
    let kept_data = pattern(3 * MIB, 4);
    let blobs = open(&store_dir, &key).await;
    let kept = blobs.add_bytes(kept_data.clone(), Visibility::Public).await.unwrap();
    let small = blobs.add_bytes(&b"small and inline"[..], Visibility::Private).await.unwrap();
    blobs.shutdown().await.unwrap();
    drop(blobs);

    let key_hex: String = key.secret_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_adds_an_endless_stream", "--nocapture", "--test-threads", "1"])
        .env(CHILD_DIR_VAR, &store_dir)
        .env(CHILD_KEY_VAR, key_hex)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .any(|line| line.is_ok_and(|l| l.contains(CHILD_READY)))
    });
    let ready = tokio::time::timeout(Duration::from_secs(60), ready).await.unwrap().unwrap();
    // SIGKILL: no destructor, no flush.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ready, "the child never started adding");

    let leftover: u64 =
        files_under(&store_dir.join("temp")).iter().map(|p| p.metadata().unwrap().len()).sum();
    assert!(leftover >= 16 * MIB as u64, "the add was not in progress");
    let blobs = open(&store_dir, &key).await;
    // The interrupted add's temporary file is gone, and nothing of it is in the store.
    assert!(files_under(&store_dir.join("temp")).is_empty());
    assert_eq!(blobs.list().await.unwrap().len(), 2);
    assert_eq!(blobs.stat(&kept.cid).await.unwrap(), BlobState::Complete { size: kept.size });
    assert!(blobs.read_to_bytes(&kept.cid).await.unwrap() == kept_data);
    assert_eq!(blobs.read_to_bytes(&small.cid).await.unwrap(), &b"small and inline"[..]);
    let mut pins = blobs.pins().await.unwrap();
    pins.sort();
    let mut expected = vec![(kept.cid, Visibility::Public), (small.cid, Visibility::Private)];
    expected.sort();
    assert_eq!(pins, expected);
    // The store still works: add, collect garbage, read.
    let after = blobs.add_bytes(pattern(2 * MIB, 5), Visibility::Private).await.unwrap();
    blobs.gc().await.unwrap();
    assert!(blobs.has(&after.cid).await.unwrap());
    assert!(blobs.has(&kept.cid).await.unwrap());
    blobs.shutdown().await.unwrap();
}
