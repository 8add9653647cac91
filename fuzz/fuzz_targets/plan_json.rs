//! OpenTofu's JSON plan, as any JSON: summarised and its changes taken, never a panic.
#![no_main]

use landform::engine::tofu::plan::{changes, has_changes, summarize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(plan) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = summarize(&plan, false);
    let _ = summarize(&plan, true);
    let _ = has_changes(&plan);
    let _ = changes(&plan);
});
