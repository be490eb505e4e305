//! Just enough Server-Sent Events to find event boundaries and rewrite one event's data, so the
//! gateway can filter `tools/list` answers and inject `list_changed` without corrupting a stream.

use bytes::Bytes;

/// Splits a byte stream into whole events (each with its blank-line terminator).
#[derive(Default)]
pub(crate) struct EventSplitter {
    buf: Vec<u8>,
}

impl EventSplitter {
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = boundary(&self.buf) {
            let rest = self.buf.split_off(end);
            events.push(Bytes::from(std::mem::replace(&mut self.buf, rest)));
        }
        events
    }

    /// What is left when the stream ends (an unterminated last event).
    pub(crate) fn finish(self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| Bytes::from(self.buf))
    }
}

/// End (exclusive) of the first complete event in `buf`.
fn boundary(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The event's `data` (lines joined with `\n`), if it has any.
pub(crate) fn data(event: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(event).ok()?;
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The same event (its `id`, `event`, `retry` fields kept) with `data` replaced.
pub(crate) fn with_data(event: &[u8], data: &str) -> Bytes {
    let text = String::from_utf8_lossy(event);
    let mut out = String::new();
    for line in text.lines() {
        if !line.is_empty() && !line.starts_with("data:") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("data: ");
    out.push_str(data);
    out.push_str("\n\n");
    Bytes::from(out)
}

/// One event carrying a JSON-RPC message.
pub(crate) fn event(data: &str) -> Bytes {
    Bytes::from(format!("event: message\ndata: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_come_out_whole() {
        let mut s = EventSplitter::default();
        assert!(s.push(b"id: 1\ndata: {\"a\"").is_empty());
        let out = s.push(b":1}\n\nid: 2\r\ndata: x\r\n\r\nda");
        assert_eq!(out.len(), 2);
        assert_eq!(data(&out[0]).as_deref(), Some("{\"a\":1}"));
        assert_eq!(data(&out[1]).as_deref(), Some("x"));
        assert_eq!(&with_data(&out[0], "{}")[..], b"id: 1\ndata: {}\n\n");
        assert_eq!(s.finish().as_deref(), Some(&b"da"[..]));
    }
}
