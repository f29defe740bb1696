//! The network edge of the RESP server: accepting connections and buffering their bytes.

pub mod acceptor;
pub mod connection;
