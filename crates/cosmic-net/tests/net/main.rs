//! Integration tests: real swarms on 127.0.0.1 over TCP, mDNS off, every wait bounded.
#![allow(clippy::disallowed_methods, reason = "test tasks end with the test")]

mod common;

mod bans;
mod connect;
mod gossip;
mod hostile;
mod kademlia;
mod relay;
mod request;
mod restart;
