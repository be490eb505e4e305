#![no_main]

use std::path::Path;

use firebreak_envelopes::learn::{learn_texts, LearnOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = learn_texts(&[(Path::new("fuzz.json"), text)], &LearnOptions::default());
    }
});
