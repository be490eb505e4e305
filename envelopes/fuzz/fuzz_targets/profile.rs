#![no_main]

use firebreak_envelopes::kubescape::{envelope_dimensions, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(profiles) = parse("fuzz.yaml", text) {
            let _ = envelope_dimensions(&profiles, None, &Default::default());
        }
    }
});
