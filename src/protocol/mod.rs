//! The Redis wire protocol, as pure data transformations with no I/O.
//!
//! - [`request`]: bytes → one flat list of arguments (RESP multibulk or inline), with limits.
//! - [`reply`]: reply values → RESP2 or RESP3 bytes.

pub mod reply;
pub mod reply_reader;
pub mod request;

pub use reply::{Protocol, Reply};
pub use request::{Args, Decoded, Limits, ProtocolError, RequestDecoder};

#[cfg(test)]
pub(crate) mod test_support {
    //! Request arguments built in unit tests.
    use std::ops::Range;

    /// Owned arguments that can lend an [`crate::protocol::Args`] view.
    pub struct OwnedArgs {
        pub buf: Vec<u8>,
        pub ranges: Vec<Range<usize>>,
    }

    impl OwnedArgs {
        pub fn new(parts: &[&[u8]]) -> Self {
            let mut buf = Vec::new();
            let mut ranges = Vec::new();
            for p in parts {
                let start = buf.len();
                buf.extend_from_slice(p);
                ranges.push(start..buf.len());
            }
            OwnedArgs { buf, ranges }
        }

        pub fn view(&self) -> crate::protocol::Args<'_> {
            crate::protocol::Args::new(&self.buf, &self.ranges)
        }
    }
}
