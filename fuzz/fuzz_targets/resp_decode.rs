//! Any bytes through the request decoder, the spec table and the lock-command parsers: no
//! panic, every request consumes at least one byte and no more than was given, and an
//! incomplete request asks for more than is buffered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use token_server::command::{CommandLimits, lookup, parse};
use token_server::protocol::{Decoded, Limits, RequestDecoder};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_arg_len: 4096,
        max_args: 64,
        max_inline_len: 4096,
    };
    let mut decoder = RequestDecoder::new(limits);
    let mut pos = 0;
    while pos < data.len() {
        let input = &data[pos..];
        match decoder.decode(input) {
            Decoded::Request { consumed } => {
                assert!(consumed > 0 && consumed <= input.len());
                let args = decoder.view(input);
                if let Some(spec) = args.get(0).and_then(lookup)
                    && spec.arity_ok(args.len())
                {
                    let _ = parse(spec, &args, &CommandLimits::default());
                }
                pos += consumed;
            }
            Decoded::Incomplete { at_least } => {
                assert!(at_least > input.len());
                break;
            }
            Decoded::Error(e) => {
                assert!(e.message().starts_with("ERR Protocol error: "));
                break;
            }
        }
    }
});
