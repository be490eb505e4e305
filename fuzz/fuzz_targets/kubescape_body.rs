#![no_main]
use firebreak_daemon::sources::{self, Context};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let envelopes = firebreak_fuzz::envelopes();
    let context = Context { cluster: firebreak_fuzz::CLUSTER, envelopes: &envelopes };
    let _ = sources::kubescape::map(data, &context);
});
