//! Any sequence of inserts and removals on one index segment, with tags from a small set (so
//! probe runs are long, wrap past the end of the table and hold equal tags), finds exactly the
//! slots a plain map says are filed, through every growth and shrink.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use token_server::table::index::{Segment, tag};

fuzz_target!(|data: &[u8]| {
    let mut segment = Segment::default();
    // slot -> tag
    let mut model: BTreeMap<u32, u32> = BTreeMap::new();
    let mut next_slot = 0u32;
    for pair in data.chunks_exact(2) {
        let (op, arg) = (pair[0], pair[1]);
        match op % 4 {
            // Insert a new slot under one of 64 tags (or a tag of 0, stored as 1).
            0 | 1 => {
                let t = tag(u64::from(arg % 64) << (op / 64 * 8));
                segment.insert(t, next_slot);
                model.insert(next_slot, t);
                next_slot += 1;
            }
            // Remove the arg-th filed slot (counting from the lowest).
            2 => {
                if model.is_empty() {
                    continue;
                }
                let nth = usize::from(arg) % model.len();
                let (&slot, &t) = model.iter().nth(nth).expect("in range");
                assert!(segment.remove(t, slot), "slot {slot} was filed");
                model.remove(&slot);
                assert!(!segment.remove(t, slot), "slot {slot} removed twice");
            }
            // Look up a slot that may or may not be filed.
            _ => {
                let slot = u32::from(arg) % (next_slot + 1);
                let t = model
                    .get(&slot)
                    .copied()
                    .unwrap_or(tag(u64::from(arg % 64)));
                let found = segment.find(t, |s| s == slot);
                assert_eq!(found, model.contains_key(&slot).then_some(slot));
            }
        }
        assert_eq!(segment.len(), model.len());
        assert!(segment.len() * 4 <= segment.bytes() / 8 * 3 || segment.is_empty());
    }
    for (&slot, &t) in &model {
        assert_eq!(segment.find(t, |s| s == slot), Some(slot));
    }
});
