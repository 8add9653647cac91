//! A run's result as a tenant could write it: parsed and bounded, or refused; never a panic,
//! and what is accepted fits its bounds.
#![no_main]

use landform::contract::result::{limits, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = parse(data) {
        if let Some(id) = &r.plan_id {
            assert!(id.len() <= limits::PLAN_ID && id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        let within = |s: &str, max: usize| s.chars().count() <= max + 1;
        assert!(r.message.as_deref().is_none_or(|m| within(m, limits::TEXT)));
        assert!(r.resources.len() <= limits::LIST && r.outputs.len() <= limits::LIST);
        assert!(r.resources.iter().all(|c| within(&c.address, limits::NAME)));
    }
});
