#![no_main]
use axum::http::{HeaderMap, HeaderValue};
use firebreak_daemon::sources::{self, Context};

// The first byte picks the mode: structured (the event in the body) or binary (`ce-` headers).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((mode, body)) = data.split_first() else { return };
    let mut headers = HeaderMap::new();
    if mode % 2 == 0 {
        headers.insert("content-type", HeaderValue::from_static("application/cloudevents+json"));
    } else {
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("ce-specversion", HeaderValue::from_static("1.0"));
        headers.insert("ce-type", HeaderValue::from_static("falco.rule.output.v1"));
        headers.insert("ce-source", HeaderValue::from_static("https://falco.org"));
        headers.insert("ce-id", HeaderValue::from_static("fuzz"));
    }
    let envelopes = firebreak_fuzz::envelopes();
    let context = Context { cluster: firebreak_fuzz::CLUSTER, envelopes: &envelopes };
    let _ = sources::cloudevents::map(&headers, body, &context);
});
