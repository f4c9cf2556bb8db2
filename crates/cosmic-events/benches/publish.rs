//! Cost of one publish with 0, 1 and 8 subscribers (`cargo bench -p cosmic-events`).
//!
//! Subscribers never read here: a full ring overwrites its oldest event, which is the
//! worst case for the publisher and the case the bus promises never blocks.

use cosmic_events::Bus;

fn main() {
    divan::main();
}

#[derive(Clone)]
struct Event {
    _seq: u64,
    _name: &'static str,
}

#[divan::bench(args = [0, 1, 8])]
fn publish(bencher: divan::Bencher, n_subscribers: usize) {
    let bus = Bus::new();
    let _subscribers: Vec<_> = (0..n_subscribers).map(|_| bus.subscribe::<Event>()).collect();
    let mut seq = 0;
    bencher.bench_local(|| {
        seq += 1;
        bus.publish(Event { _seq: seq, _name: "peer-connected" })
    });
}

#[divan::bench(args = [0, 1, 8])]
fn publish_typed(bencher: divan::Bencher, n_subscribers: usize) {
    let bus = Bus::new();
    let publisher = bus.publisher::<Event>();
    let _subscribers: Vec<_> = (0..n_subscribers).map(|_| bus.subscribe::<Event>()).collect();
    let mut seq = 0;
    bencher.bench_local(|| {
        seq += 1;
        publisher.publish(Event { _seq: seq, _name: "peer-connected" })
    });
}
