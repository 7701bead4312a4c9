//! Fuzzes the metrics endpoint's reading of a request head (`src/metrics/request.rs`, pure).
//!
//! Input layout: bytes 0 and 1 pick where the head is cut (as a read would cut it), the rest is
//! what the client sends. Checked: no panic; an answer by 8 KiB at the latest, so the read
//! buffer never fills; and once the head is complete, more bytes never change the answer, so
//! how the reads cut it does not matter.
#![no_main]

#[allow(dead_code)] // the endpoint's half of the module: what it answers with
#[path = "../../src/metrics/request.rs"]
mod request;

use libfuzzer_sys::fuzz_target;
use request::{Answer, MAX_HEAD, answer};

fuzz_target!(|data: &[u8]| {
    let [cut_high, cut_low, head @ ..] = data else { return };
    let head = &head[..head.len().min(MAX_HEAD + 512)];
    if head.len() >= MAX_HEAD {
        assert!(answer(&head[..MAX_HEAD]).is_some(), "no answer at {MAX_HEAD} bytes");
    }
    let cut = usize::from(u16::from_be_bytes([*cut_high, *cut_low])) % (head.len() + 1);
    if let Some(first) = answer(&head[..cut])
        && first != Answer::TooLarge
    {
        assert_eq!(answer(head), Some(first), "cut at {cut}");
    }
});
