//! Add and loopback transfer throughput of one large blob, next to raw QUIC and TCP.
//!
//! In one process and one run:
//! 1. **add**: [`Blobs::add_file`] of a 1 GiB file into a persistent store (hashing,
//!    outboard, copy into the store);
//! 2. **iroh-blobs fetch**: [`Blobs::fetch_from`] of that blob over iroh endpoints on
//!    127.0.0.1 (verified streaming), into a fresh persistent store (written to disk)
//!    and into a fresh memory store;
//! 3. **raw QUIC**: the same bytes from memory over one quinn stream on 127.0.0.1, read
//!    and dropped (quinn defaults, a self-signed certificate);
//! 4. **TCP**: the same bytes from memory over one tokio TCP stream on 127.0.0.1.
//!
//! Each transfer runs [`ROUNDS`] times, interleaved, and reports
//! its best and median; the ratio compares medians. Sizes are MB/s (10^6 bytes).
//! Run with `cargo bench -p cosmic-blobs --bench transfer`; `BLOBS_BENCH_MIB` changes
//! the size. Without `--bench` (under `cargo test --benches`) it runs 8 MiB once, as a
//! smoke test.

#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]
#![expect(clippy::unwrap_used, reason = "a benchmark fails loudly")]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cosmic_auth::NodeKey;
use cosmic_blobs::{Blobs, Config, Visibility};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUNDS: usize = 5;
const MIB: usize = 1 << 20;

fn data(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for word in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
    }
    data
}

async fn open(dir: &Path) -> Blobs {
    let config = Config { max_blob_size: u64::MAX, ..Config::loopback() };
    Blobs::builder(&NodeKey::generate()).config(config).open(dir).await.unwrap()
}

fn mbps(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

async fn iroh_blobs_fetch(
    dir: &Path,
    provider: &Blobs,
    cid: &cosmic_blobs::Cid,
    in_memory: bool,
) -> Duration {
    let receiver_dir = tempfile::tempdir_in(dir).unwrap();
    let receiver = if in_memory {
        let config = Config { max_blob_size: u64::MAX, ..Config::loopback() };
        Blobs::builder(&NodeKey::generate()).config(config).open_in_memory().await.unwrap()
    } else {
        open(receiver_dir.path()).await
    };
    let started = Instant::now();
    receiver.fetch_from(cid, provider.peer_addr()).await.unwrap();
    let elapsed = started.elapsed();
    receiver.shutdown().await.unwrap();
    elapsed
}

fn quinn_endpoints() -> (quinn::Endpoint, quinn::Endpoint, SocketAddr) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key =
        quinn::rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let server_config = quinn::ServerConfig::with_single_cert(vec![cert.clone()], key).unwrap();
    let server =
        quinn::Endpoint::server(server_config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let mut roots = quinn::rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client_config = quinn::ClientConfig::with_root_certificates(Arc::new(roots)).unwrap();
    let mut client = quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    client.set_default_client_config(client_config);
    let addr = server.local_addr().unwrap();
    (server, client, addr)
}

async fn raw_quic(payload: Arc<Vec<u8>>) -> Duration {
    let (server, client, addr) = quinn_endpoints();
    let sender = tokio::spawn(async move {
        let connection = server.accept().await.unwrap().await.unwrap();
        let mut stream = connection.open_uni().await.unwrap();
        for chunk in payload.chunks(256 * 1024) {
            stream.write_all(chunk).await.unwrap();
        }
        stream.finish().unwrap();
        connection.closed().await;
        server.wait_idle().await;
    });
    let connection = client.connect(addr, "localhost").unwrap().await.unwrap();
    let started = Instant::now();
    let mut stream = connection.accept_uni().await.unwrap();
    let mut buffer = vec![0u8; 256 * 1024];
    while stream.read(&mut buffer).await.unwrap().is_some() {}
    let elapsed = started.elapsed();
    connection.close(0u32.into(), b"done");
    sender.await.unwrap();
    elapsed
}

async fn tcp_copy(payload: Arc<Vec<u8>>) -> Duration {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sender = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.write_all(&payload).await.unwrap();
        stream.shutdown().await.unwrap();
    });
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut buffer = vec![0u8; 256 * 1024];
    while stream.read(&mut buffer).await.unwrap() > 0 {}
    let elapsed = started.elapsed();
    sender.await.unwrap();
    elapsed
}

struct Row {
    name: &'static str,
    samples: Vec<f64>,
}

impl Row {
    fn median(&self) -> f64 {
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    fn best(&self) -> f64 {
        self.samples.iter().copied().fold(0.0, f64::max)
    }
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let mib: usize = match std::env::var("BLOBS_BENCH_MIB") {
        Ok(value) => value.parse().unwrap(),
        Err(_) if full => 1024,
        Err(_) => 8,
    };
    let rounds = if full { ROUNDS } else { 1 };
    let size = mib * MIB;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let payload = Arc::new(data(size));
        let source = dir.path().join("source.bin");
        std::fs::write(&source, payload.as_slice()).unwrap();

        let provider = open(&dir.path().join("provider")).await;
        let started = Instant::now();
        let added = provider.add_file(&source, Visibility::Public).await.unwrap();
        let add =
            Row { name: "add_file (hash + store)", samples: vec![mbps(size, started.elapsed())] };

        let mut fetch = Row { name: "iroh-blobs fetch to disk", samples: Vec::new() };
        let mut fetch_memory = Row { name: "iroh-blobs fetch to memory", samples: Vec::new() };
        let mut quic = Row { name: "raw QUIC (quinn) stream", samples: Vec::new() };
        let mut tcp = Row { name: "TCP copy", samples: Vec::new() };
        for _ in 0..rounds {
            let elapsed = iroh_blobs_fetch(dir.path(), &provider, &added.cid, false).await;
            fetch.samples.push(mbps(size, elapsed));
            let elapsed = iroh_blobs_fetch(dir.path(), &provider, &added.cid, true).await;
            fetch_memory.samples.push(mbps(size, elapsed));
            quic.samples.push(mbps(size, raw_quic(payload.clone()).await));
            tcp.samples.push(mbps(size, tcp_copy(payload.clone()).await));
        }
        provider.shutdown().await.unwrap();

        println!("cosmic-blobs transfer bench: {mib} MiB, {rounds} round(s), MB/s = 10^6 bytes/s");
        println!("{:<26} {:>10} {:>10} {:>14}", "", "median", "best", "vs raw QUIC");
        let quic_median = quic.median();
        for row in [&add, &fetch, &fetch_memory, &quic, &tcp] {
            println!(
                "{:<26} {:>10.0} {:>10.0} {:>13.0}%",
                row.name,
                row.median(),
                row.best(),
                100.0 * row.median() / quic_median
            );
        }
    });
}
