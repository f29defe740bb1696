//! The network edge of the RESP server: accepting connections (plain and TLS, handshakes on
//! their own threads), deciding who may connect at all (protected mode), and each connection's
//! bytes (`input.rs` in, `output.rs` out, `connection.rs` holding both with the session).

pub mod acceptor;
pub mod access;
pub mod connection;
pub mod handshake;
pub mod input;
pub mod output;
pub mod stream;
pub mod tls;
