//! Request-response round trips over our envelope.

use bytes::Bytes;

use cosmic_net::{Error, Response};

use crate::common::{address_of, node, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_gets_its_response() {
    let (a, _a_bus) = node().await;
    let (b, _b_bus) = node().await;
    let mut requests = within(b.request_inbox("test/echo/1", 16)).await.unwrap();
    let responder = b.clone();
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            assert_eq!(request.protocol, "test/echo/1", "only its own protocol reaches a handler");
            let mut body = request.body.to_vec();
            body.reverse();
            responder.respond(request.request_id, Response::Ok(Bytes::from(body))).await.unwrap();
        }
    });
    within(a.dial(address_of(&b).await)).await.unwrap();

    let answer = within(a.request(b.peer_id(), "test/echo/1", &b"hello"[..])).await.unwrap();
    assert_eq!(&answer[..], b"olleh");
    let empty = within(a.request(b.peer_id(), "test/echo/1", Bytes::new())).await.unwrap();
    assert!(empty.is_empty());

    let refused = within(a.request(b.peer_id(), "test/other/1", &b"x"[..])).await;
    match refused {
        Err(Error::Remote { peer_id, message }) => {
            assert_eq!(peer_id, b.peer_id());
            assert_eq!(message, "no handler for protocol \"test/other/1\"");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let invalid = a.request(b.peer_id(), "has space", Bytes::new()).await;
    assert!(matches!(invalid, Err(Error::InvalidProtocolName { .. })));
    let too_big = a.request(b.peer_id(), "test/echo/1", vec![0u8; 4 * 1024 * 1024]).await;
    assert!(matches!(too_big, Err(Error::MessageTooLarge { .. })), "{too_big:?}");
    assert_eq!(within(b.stats()).await.unwrap().inbound_requests, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_nobody_handles_is_refused() {
    let (a, _a_bus) = node().await;
    let (b, _b_bus) = node().await;
    within(a.dial(address_of(&b).await)).await.unwrap();
    let result = within(a.request(b.peer_id(), "test/echo/1", &b"hello"[..])).await;
    assert!(matches!(result, Err(Error::Remote { .. })), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_rate_are_refused() {
    let (a, _a_bus) = node().await;
    let mut config = cosmic_net::Config::local();
    config.inbound_request_rate = 2;
    let (b, _b_bus) =
        crate::common::node_with(cosmic_net::Keypair::generate_ed25519(), config).await;
    let mut requests = within(b.request_inbox("test/echo/1", 16)).await.unwrap();
    let responder = b.clone();
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let _ = responder.respond(request.request_id, Response::Ok(request.body)).await;
        }
    });
    within(a.dial(address_of(&b).await)).await.unwrap();
    let mut refused = 0;
    for _ in 0..5 {
        if within(a.request(b.peer_id(), "test/echo/1", &b"x"[..])).await.is_err() {
            refused += 1;
        }
    }
    assert!(refused >= 2, "{refused} of 5 refused");
    assert!(within(b.stats()).await.unwrap().requests_rate_limited >= 2);
}
