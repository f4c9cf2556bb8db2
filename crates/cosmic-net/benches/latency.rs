//! Gossip one-way latency and request-response round trip between two local nodes.
//!
//! Two nodes in one process, connected over TCP on 127.0.0.1. Each sample sends one
//! message and waits for it to arrive (or for the answer) before the next, so the
//! figures are latencies, not throughput under queueing. Gossip latency runs from the
//! `publish` call on one node to the `GossipMessage` event on the other node's bus (the
//! validation verdict is sent after the clock stops). Prints percentiles in
//! microseconds. Run with `cargo bench -p cosmic-net`.
#![allow(clippy::disallowed_methods, reason = "benchmark tasks end with the run")]
#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]
#![expect(clippy::unwrap_used, reason = "a benchmark fails loudly")]

use std::time::{Duration, Instant};

use bytes::Bytes;
use libp2p::multiaddr::Protocol;

use cosmic_events::Bus;
use cosmic_net::{Config, GossipMessage, Keypair, Net, Response, TopicSubscribed, Verdict};

const WARMUP: usize = 200;
const SAMPLES: usize = 2000;
const TOPIC: &str = "cosmic/space/1/bench";

async fn spawn_node() -> (Net, Bus) {
    let bus = Bus::new();
    let mut config = Config::local();
    // Sequential round trips run far above the default 100 requests per second.
    config.inbound_request_rate = 1_000_000;
    let net = Net::spawn(Keypair::generate_ed25519(), config, bus.clone()).await.unwrap();
    (net, bus)
}

fn report(name: &str, size: usize, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |quantile: f64| {
        let index = ((samples.len() as f64 - 1.0) * quantile).round() as usize;
        samples[index].as_secs_f64() * 1e6
    };
    let mean = samples.iter().sum::<Duration>().as_secs_f64() * 1e6 / samples.len() as f64;
    println!(
        "{name:<28} {size:>7} B  n={:<5} p50 {:>8.1} µs  p90 {:>8.1} µs  p99 {:>8.1} µs  \
         max {:>8.1} µs  mean {:>8.1} µs",
        samples.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        at(1.0),
        mean
    );
}

async fn gossip(
    a: &Net,
    b: &Net,
    messages: &mut tokio::sync::mpsc::Receiver<GossipMessage>,
    size: usize,
) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(SAMPLES);
    for index in 0..WARMUP + SAMPLES {
        // A distinct payload each time: message ids are content hashes.
        let mut payload = vec![0u8; size];
        payload[..8].copy_from_slice(&(index as u64).to_be_bytes());
        let started = Instant::now();
        a.publish(TOPIC, payload).await.unwrap();
        let message = messages.recv().await.unwrap();
        let elapsed = started.elapsed();
        b.report_validation(message.message_id, message.propagation_source, Verdict::Accept)
            .await
            .unwrap();
        if index >= WARMUP {
            samples.push(elapsed);
        }
    }
    samples
}

async fn round_trips(a: &Net, b: &Net, size: usize) -> Vec<Duration> {
    let body = Bytes::from(vec![1u8; size]);
    let mut samples = Vec::with_capacity(SAMPLES);
    for index in 0..WARMUP + SAMPLES {
        let started = Instant::now();
        let answer = a.request(b.peer_id(), "bench/echo/1", body.clone()).await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(answer.len(), size);
        if index >= WARMUP {
            samples.push(elapsed);
        }
    }
    samples
}

fn main() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let (a, _a_bus) = spawn_node().await;
        let (b, _b_bus) = spawn_node().await;
        let mut subscribed = a.bus().subscribe::<TopicSubscribed>();
        let responder = b.clone();
        let mut requests = b.request_inbox("bench/echo/1", 64).await.unwrap();
        let mut messages = b.gossip_inbox(1024).await.unwrap().messages;
        tokio::spawn(async move {
            while let Some(request) = requests.recv().await {
                let _ = responder.respond(request.request_id, Response::Ok(request.body)).await;
            }
        });
        a.subscribe(TOPIC).await.unwrap();
        b.subscribe(TOPIC).await.unwrap();
        let b_address = b.listen_addrs().await.unwrap().remove(0).with(Protocol::P2p(b.peer_id()));
        a.dial(b_address).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while subscribed.recv().await.unwrap().peer_id != b.peer_id() {}
        })
        .await
        .unwrap();

        println!("two nodes, tcp on 127.0.0.1, sequential samples after {WARMUP} warm-up");
        for size in [256, 16 * 1024] {
            report("gossip one-way", size, gossip(&a, &b, &mut messages, size).await);
        }
        for size in [256, 16 * 1024] {
            report("request-response round trip", size, round_trips(&a, &b, size).await);
        }
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    });
}
