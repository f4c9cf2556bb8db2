#![allow(clippy::disallowed_methods, reason = "test tasks end with the test")]
use std::time::Duration;

use futures_core::Stream;

use super::*;

#[derive(Clone, Debug, PartialEq)]
struct Ping(u64);

#[derive(Clone, Debug, PartialEq)]
struct Other(&'static str);

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn subscriber_gets_every_event_in_order() {
    let bus = Bus::new();
    let mut sub = bus.subscribe::<Ping>();
    for i in 0..100 {
        assert_eq!(bus.publish(Ping(i)), 1);
    }
    for i in 0..100 {
        assert_eq!(tokio::time::timeout(WAIT, sub.recv()).await.unwrap(), Ok(Ping(i)));
    }
    assert_eq!(sub.try_recv(), Ok(None));
}

#[tokio::test]
async fn subscriber_sees_only_events_after_it_subscribed() {
    let bus = Bus::new();
    let publisher = bus.publisher::<Ping>();
    assert_eq!(publisher.publish(Ping(1)), 0);
    let mut sub = bus.subscribe::<Ping>();
    assert_eq!(publisher.publish(Ping(2)), 1);
    assert_eq!(sub.try_recv(), Ok(Some(Ping(2))));
    assert_eq!(sub.try_recv(), Ok(None));
}

#[tokio::test]
async fn types_are_kept_apart() {
    let bus = Bus::new();
    let mut pings = bus.subscribe::<Ping>();
    let mut others = bus.subscribe::<Other>();
    bus.publish(Other("a"));
    bus.publish(Ping(1));
    bus.publish(Other("b"));
    assert_eq!(pings.try_recv(), Ok(Some(Ping(1))));
    assert_eq!(pings.try_recv(), Ok(None));
    assert_eq!(others.try_recv(), Ok(Some(Other("a"))));
    assert_eq!(others.try_recv(), Ok(Some(Other("b"))));
}

#[tokio::test]
async fn every_subscriber_gets_its_own_copy() {
    let bus = Bus::new();
    let mut subs: Vec<_> = (0..8).map(|_| bus.subscribe::<Ping>()).collect();
    assert_eq!(bus.subscriber_count::<Ping>(), 8);
    assert_eq!(bus.publish(Ping(42)), 8);
    for sub in &mut subs {
        assert_eq!(sub.try_recv(), Ok(Some(Ping(42))));
    }
}

#[tokio::test]
async fn slow_subscriber_is_told_how_many_it_missed_and_never_blocks_the_publisher() {
    let bus = Bus::with_capacity(16);
    let mut slow = bus.subscribe::<Ping>();
    let mut fast = bus.subscribe::<Ping>();
    // The publisher runs far past the capacity while `slow` reads nothing. If publishing
    // could block on a full subscriber, this loop would never finish.
    let publishing = tokio::task::spawn_blocking(move || {
        for i in 0..1_000 {
            bus.publish(Ping(i));
        }
        bus
    });
    let bus = tokio::time::timeout(WAIT, publishing).await.unwrap().unwrap();
    assert_eq!(slow.recv().await, Err(RecvError::Lagged { missed: 1_000 - 16 }));
    // After the lag report the subscriber continues with the oldest event still held.
    for i in (1_000 - 16)..1_000 {
        assert_eq!(slow.recv().await, Ok(Ping(i)));
    }
    assert_eq!(slow.try_recv(), Ok(None));
    assert_eq!(fast.recv().await, Err(RecvError::Lagged { missed: 1_000 - 16 }));
    drop(bus);
}

#[tokio::test]
async fn concurrent_reader_keeps_up_with_a_publisher_on_another_thread() {
    let bus = Bus::with_capacity(64);
    let mut sub = bus.subscribe::<Ping>();
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            match sub.recv().await {
                Ok(Ping(i)) => seen.push(i),
                Err(RecvError::Lagged { missed }) => panic!("lagged by {missed}"),
                Err(RecvError::Closed) => return seen,
            }
        }
    });
    let publisher = bus.publisher::<Ping>();
    drop(bus);
    for i in 0..50 {
        publisher.publish(Ping(i));
        tokio::task::yield_now().await;
    }
    drop(publisher);
    let seen = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
}

#[tokio::test]
async fn publishing_without_subscribers_reaches_nobody() {
    let bus = Bus::new();
    assert_eq!(bus.publish(Ping(1)), 0);
    assert_eq!(bus.subscriber_count::<Ping>(), 0);
    let sub = bus.subscribe::<Ping>();
    drop(sub);
    assert_eq!(bus.publish(Ping(2)), 0);
}

#[tokio::test]
async fn subscriber_is_told_when_the_bus_is_gone() {
    let bus = Bus::new();
    let mut sub = bus.subscribe::<Ping>();
    bus.publish(Ping(1));
    drop(bus);
    // Events published before the close are still delivered.
    assert_eq!(sub.recv().await, Ok(Ping(1)));
    assert_eq!(sub.recv().await, Err(RecvError::Closed));
}

#[tokio::test]
async fn stream_yields_events_and_lag_then_ends() {
    use std::future::poll_fn;

    let bus = Bus::with_capacity(2);
    let mut stream = bus.subscribe::<Ping>().into_stream();
    for i in 0..5 {
        bus.publish(Ping(i));
    }
    drop(bus);
    let mut items = Vec::new();
    while let Some(item) = poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await {
        items.push(item);
    }
    assert_eq!(items, vec![Err(RecvError::Lagged { missed: 3 }), Ok(Ping(3)), Ok(Ping(4))]);
}

#[test]
fn clones_share_channels() {
    let bus = Bus::new();
    let clone = bus.clone();
    let mut sub = clone.subscribe::<Ping>();
    assert_eq!(bus.publish(Ping(9)), 1);
    assert_eq!(sub.try_recv(), Ok(Some(Ping(9))));
    assert!(format!("{bus:?}").contains("n_types: 1"));
}
