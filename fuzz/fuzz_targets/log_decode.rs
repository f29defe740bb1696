//! Any bytes as a record body, and as a whole log file given to recovery: no panic. A body that
//! decodes re-encodes to a body that decodes to the same record.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use token_server::log::codec::decode_body;
use token_server::log::{FaultyStorage, recover, shard_dir};

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = decode_body(data) {
        let owned = rec.to_record();
        let mut framed = Vec::new();
        owned.encode_into(&mut framed);
        let body = &framed[token_server::log::format::FRAME_HEADER_LEN..];
        let again = decode_body(body).map(|r| r.to_record());
        assert_eq!(again.ok(), Some(owned));
    }
    let storage = FaultyStorage::new();
    let dir = Path::new("/fuzz");
    storage.put(&shard_dir(dir, 0).join("appendonly.log"), data);
    if let Ok(recovered) = recover(&storage, dir, false) {
        let _ = recovered.live.count();
    }
    if let Ok(recovered) = recover(&storage, dir, true) {
        let _ = recovered.live.count();
    }
});
