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
//! 4. **raw iroh stream**: the same bytes from memory over one QUIC stream between two
//!    iroh endpoints set up as [`Blobs`] sets up its own (same preset, same transport
//!    settings, iroh's QUIC implementation), read and dropped: the transport the fetch
//!    runs on, without the blob protocol, the verification and the stores;
//! 5. **TCP**: the same bytes from memory over one tokio TCP stream on 127.0.0.1.
//!
//! Each transfer runs [`ROUNDS`] times, interleaved, and reports its best and median;
//! the ratios compare medians, to raw quinn and to the raw iroh stream. Sizes are MB/s
//! (10^6 bytes).
//! Next to the rate it reports the CPU time the process spent per GiB moved (user +
//! system, all threads, median): on a shared machine that cost varies far less than the
//! wall-clock rate, and on a machine whose cores are all busy it is what bounds the rate.
//! Run with `cargo bench -p cosmic-blobs --bench transfer`; `BLOBS_BENCH_MIB` changes
//! the size, `BLOBS_BENCH_ROUNDS` the rounds, and `BLOBS_BENCH_ONLY` (a comma-separated
//! list of `disk`, `memory`, `quic`, `iroh`, `tcp`) picks the transfers, e.g. to profile one.
//! Without `--bench` (under `cargo test --benches`) it runs 8 MiB once, as a smoke test.
#![allow(clippy::disallowed_methods, reason = "benchmark tasks end with the run")]
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

/// An iroh endpoint bound to 127.0.0.1 as [`Blobs`] binds its own (the `Minimal` preset,
/// no relays, iroh's default transport settings), accepting [`RAW_ALPN`].
async fn iroh_endpoint() -> iroh::Endpoint {
    iroh::Endpoint::builder(iroh::endpoint::presets::Minimal)
        .clear_ip_transports()
        .bind_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .unwrap()
        .alpns(vec![RAW_ALPN.to_vec()])
        .bind()
        .await
        .unwrap()
}

/// The protocol of the raw iroh stream: one uni stream of bytes, dropped on arrival.
const RAW_ALPN: &[u8] = b"cosmic-blobs/bench-raw/0";

async fn raw_iroh(payload: Arc<Vec<u8>>) -> Duration {
    let server = iroh_endpoint().await;
    let client = iroh_endpoint().await;
    let addr = iroh::EndpointAddr::from_parts(
        server.id(),
        server.bound_sockets().into_iter().map(iroh::TransportAddr::Ip),
    );
    let sender = tokio::spawn({
        let server = server.clone();
        async move {
            let connection = server.accept().await.unwrap().await.unwrap();
            let mut stream = connection.open_uni().await.unwrap();
            for chunk in payload.chunks(256 * 1024) {
                stream.write_all(chunk).await.unwrap();
            }
            stream.finish().unwrap();
            connection.closed().await;
        }
    });
    let connection = client.connect(addr, RAW_ALPN).await.unwrap();
    let started = Instant::now();
    let mut stream = connection.accept_uni().await.unwrap();
    let mut buffer = vec![0u8; 256 * 1024];
    while stream.read(&mut buffer).await.unwrap().is_some() {}
    let elapsed = started.elapsed();
    connection.close(0u32.into(), b"done");
    sender.await.unwrap();
    client.close().await;
    server.close().await;
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

/// CPU time (user + system, all threads) this process has used so far, from
/// `/proc/self/stat` in clock ticks of 10 ms; `None` where that file does not exist.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces):
    // state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Runs one transfer, returning its wall-clock time and the process CPU time it used.
async fn measure<F: Future<Output = Duration>>(transfer: F) -> (Duration, Option<Duration>) {
    let before = cpu_time();
    let elapsed = transfer.await;
    let used = cpu_time().zip(before).map(|(after, before)| after.saturating_sub(before));
    (elapsed, used)
}

struct Row {
    name: &'static str,
    /// MB/s of each round.
    samples: Vec<f64>,
    /// CPU seconds per GiB of each round.
    cpu: Vec<f64>,
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

impl Row {
    fn new(name: &'static str) -> Self {
        Self { name, samples: Vec::new(), cpu: Vec::new() }
    }

    fn push(&mut self, size: usize, (elapsed, cpu): (Duration, Option<Duration>)) {
        self.samples.push(mbps(size, elapsed));
        if let Some(cpu) = cpu {
            self.cpu.push(cpu.as_secs_f64() * (1u64 << 30) as f64 / size as f64);
        }
    }

    fn median(&self) -> f64 {
        median(&self.samples)
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
    let rounds = match std::env::var("BLOBS_BENCH_ROUNDS") {
        Ok(value) => value.parse().unwrap(),
        Err(_) if full => ROUNDS,
        Err(_) => 1,
    };
    let only =
        std::env::var("BLOBS_BENCH_ONLY").unwrap_or_else(|_| "disk,memory,quic,iroh,tcp".into());
    let runs = |name: &str| only.split(',').any(|item| item.trim() == name);
    let size = mib * MIB;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let payload = Arc::new(data(size));
        let source = dir.path().join("source.bin");
        std::fs::write(&source, payload.as_slice()).unwrap();

        let provider = open(&dir.path().join("provider")).await;
        let mut add = Row::new("add_file (hash + store)");
        let (added, measured) = {
            let before = cpu_time();
            let started = Instant::now();
            let added = provider.add_file(&source, Visibility::Public).await.unwrap();
            let used = cpu_time().zip(before).map(|(after, before)| after.saturating_sub(before));
            (added, (started.elapsed(), used))
        };
        add.push(size, measured);

        let mut fetch = Row::new("iroh-blobs fetch to disk");
        let mut fetch_memory = Row::new("iroh-blobs fetch to memory");
        let mut quic = Row::new("raw QUIC (quinn) stream");
        let mut iroh = Row::new("raw iroh QUIC stream");
        let mut tcp = Row::new("TCP copy");
        for _ in 0..rounds {
            if runs("disk") {
                fetch.push(
                    size,
                    measure(iroh_blobs_fetch(dir.path(), &provider, &added.cid, false)).await,
                );
            }
            if runs("memory") {
                fetch_memory.push(
                    size,
                    measure(iroh_blobs_fetch(dir.path(), &provider, &added.cid, true)).await,
                );
            }
            if runs("quic") {
                quic.push(size, measure(raw_quic(payload.clone())).await);
            }
            if runs("iroh") {
                iroh.push(size, measure(raw_iroh(payload.clone())).await);
            }
            if runs("tcp") {
                tcp.push(size, measure(tcp_copy(payload.clone())).await);
            }
        }
        provider.shutdown().await.unwrap();

        println!("cosmic-blobs transfer bench: {mib} MiB, {rounds} round(s), MB/s = 10^6 bytes/s");
        println!(
            "{:<26} {:>7} {:>7} {:>9} {:>9} {:>10} {:>9}",
            "", "median", "best", "vs quinn", "vs iroh", "CPU s/GiB", "CPU/quinn"
        );
        let percent = |value: f64, base: f64| format!("{:.0}%", 100.0 * value / base);
        for row in [&add, &fetch, &fetch_memory, &quic, &iroh, &tcp] {
            if row.samples.is_empty() {
                continue;
            }
            println!(
                "{:<26} {:>7.0} {:>7.0} {:>9} {:>9} {:>10.2} {:>9}",
                row.name,
                row.median(),
                row.best(),
                percent(row.median(), quic.median()),
                percent(row.median(), iroh.median()),
                median(&row.cpu),
                percent(median(&row.cpu), median(&quic.cpu)),
            );
        }
    });
}
