//! The network edge of the RESP server: accepting connections (plain and TLS), deciding who may
//! connect at all (protected mode), and buffering each connection's bytes.

pub mod acceptor;
pub mod access;
pub mod connection;
pub mod handshake;
pub mod stream;
pub mod tls;
