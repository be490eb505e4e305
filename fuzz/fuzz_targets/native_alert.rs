#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = firebreak_containment::Alert::from_json(data);
});
