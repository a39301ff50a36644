//! Incremental, byte-level parsers for the two framings providers stream in:
//! a line splitter (which is the whole NDJSON framing) and, on top of it, a
//! Server-Sent Events parser following the WHATWG event-stream rules.
//!
//! Both accept bytes in pieces of any size. Bytes are buffered and only
//! complete lines are decoded, so an event or a multi-byte UTF-8 character cut
//! across two reads is reassembled before anything looks at it.

use super::ProviderError;

/// Longest line accepted before the stream is declared malformed; bounds the
/// memory a misbehaving upstream can make us hold.
const MAX_LINE: usize = 4 * 1024 * 1024;

/// Splits a byte stream into lines ended by LF, CRLF or a lone CR.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    buf: Vec<u8>,
    /// Start of the first line not yet returned.
    start: usize,
    /// Where the search for the next terminator resumes, so feeding one byte
    /// at a time stays linear instead of rescanning the partial line.
    scan: usize,
    /// The last terminator was a CR at the very end of a read: an LF opening
    /// the next read belongs to it (CRLF split across reads).
    skip_lf: bool,
}

impl LineSplitter {
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.scan = 0;
            self.start = 0;
        } else if self.start > 4096 {
            self.buf.drain(..self.start);
            self.scan = self.scan.saturating_sub(self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line without its terminator, `None` if none is
    /// buffered yet.
    pub fn next_line(&mut self) -> Option<Result<String, ProviderError>> {
        if self.skip_lf && self.start < self.buf.len() {
            if self.buf[self.start] == b'\n' {
                self.start += 1;
            }
            self.skip_lf = false;
        }
        let from = self.scan.max(self.start);
        let found = self.buf[from..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .map(|p| from + p);
        let Some(end) = found else {
            self.scan = self.buf.len();
            if self.buf.len() - self.start > MAX_LINE {
                return Some(Err(ProviderError::Protocol(
                    "the provider sent a line longer than 4 MiB".into(),
                )));
            }
            return None;
        };
        let line_start = self.start;
        self.start = end + 1;
        if self.buf[end] == b'\r' {
            match self.buf.get(end + 1) {
                Some(b'\n') => self.start += 1,
                Some(_) => {}
                None => self.skip_lf = true,
            }
        }
        self.scan = self.start;
        Some(decode(&self.buf[line_start..end]))
    }

    /// At end of input: the unterminated last line, if any. Servers that omit
    /// the final newline are common enough to be worth tolerating.
    pub fn finish(&mut self) -> Option<Result<String, ProviderError>> {
        if self.start >= self.buf.len() {
            return None;
        }
        let line = decode(&self.buf[self.start..]);
        self.start = self.buf.len();
        self.scan = self.start;
        Some(line)
    }
}

fn decode(bytes: &[u8]) -> Result<String, ProviderError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        ProviderError::Protocol("the provider sent a line that is not valid UTF-8".into())
    })
}

/// One dispatched SSE event. `event` is `None` for the default type "message".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Default)]
pub(crate) struct SseParser {
    lines: LineSplitter,
    event: Option<String>,
    data: String,
    has_data: bool,
    seen_first_line: bool,
}

impl SseParser {
    pub fn push(&mut self, bytes: &[u8]) {
        self.lines.push(bytes);
    }

    /// The next complete event, `None` when more bytes are needed.
    pub fn next_event(&mut self) -> Option<Result<SseEvent, ProviderError>> {
        loop {
            let line = match self.lines.next_line()? {
                Ok(l) => l,
                Err(e) => return Some(Err(e)),
            };
            if let Some(ev) = self.line(line) {
                return Some(Ok(ev));
            }
        }
    }

    /// At end of input: flushes a last line and an event that lacked its
    /// closing blank line (lenient where the spec would drop it).
    pub fn finish(&mut self) -> Option<Result<SseEvent, ProviderError>> {
        if let Some(line) = self.lines.finish() {
            match line {
                Ok(l) => {
                    if let Some(ev) = self.line(l) {
                        return Some(Ok(ev));
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
        self.dispatch().map(Ok)
    }

    fn line(&mut self, mut line: String) -> Option<SseEvent> {
        if !self.seen_first_line {
            self.seen_first_line = true;
            if let Some(rest) = line.strip_prefix('\u{feff}') {
                line = rest.to_string();
            }
        }
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // id and retry matter only for reconnecting, which a provider
            // answer never does; unknown fields are ignored per the spec.
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        Some(SseEvent {
            event: event.filter(|e| !e.is_empty()),
            data: std::mem::take(&mut self.data),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.push(c);
            while let Some(ev) = p.next_event() {
                out.push(ev.unwrap());
            }
        }
        while let Some(ev) = p.finish() {
            out.push(ev.unwrap());
        }
        out
    }

    const STREAM: &str = "\u{feff}: comment line\r\n\
        event: first\r\n\
        data: héllo 🦀\r\n\
        \r\n\
        data: line one\n\
        data:line two\n\
        id: 7\n\
        retry: 100\n\
        \n\
        : ping\r\r\
        event: e3\r\
        data\r\
        \r\
        event: lonely-type\n\
        \n\
        data: {\"a\":\"ü\"}\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            SseEvent {
                event: Some("first".into()),
                data: "héllo 🦀".into(),
            },
            SseEvent {
                event: None,
                data: "line one\nline two".into(),
            },
            SseEvent {
                event: Some("e3".into()),
                data: "".into(),
            },
            SseEvent {
                event: None,
                data: "{\"a\":\"ü\"}".into(),
            },
        ]
    }

    #[test]
    fn whole_stream_in_one_read() {
        assert_eq!(parse_all(&[STREAM.as_bytes()]), expected());
    }

    #[test]
    fn one_byte_per_read() {
        let bytes = STREAM.as_bytes();
        let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(parse_all(&chunks), expected());
    }

    #[test]
    fn every_two_way_split() {
        let bytes = STREAM.as_bytes();
        for i in 0..=bytes.len() {
            let (a, b) = bytes.split_at(i);
            assert_eq!(parse_all(&[a, b]), expected(), "split at {i}");
        }
    }

    #[test]
    fn every_three_way_split() {
        let bytes = STREAM.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let chunks = [&bytes[..i], &bytes[i..j], &bytes[j..]];
                assert_eq!(parse_all(&chunks), expected(), "split at {i},{j}");
            }
        }
    }

    #[test]
    fn missing_final_blank_line_is_tolerated() {
        let evs = parse_all(&[b"data: [DONE]"]);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].data, "[DONE]");
        let evs = parse_all(&[b"data: [DONE]\n"]);
        assert_eq!(evs[0].data, "[DONE]");
    }

    #[test]
    fn invalid_utf8_is_a_protocol_error() {
        let mut p = SseParser::default();
        p.push(b"data: \xff\xfe\n\n");
        assert!(matches!(
            p.next_event(),
            Some(Err(ProviderError::Protocol(_)))
        ));
    }

    #[test]
    fn lines_split_on_every_terminator() {
        let mut s = LineSplitter::default();
        let input = b"a\r\nb\rc\nd\r";
        let mut got = Vec::new();
        for b in input.chunks(1) {
            s.push(b);
            while let Some(l) = s.next_line() {
                got.push(l.unwrap());
            }
        }
        s.push(b"\ne");
        while let Some(l) = s.next_line() {
            got.push(l.unwrap());
        }
        if let Some(l) = s.finish() {
            got.push(l.unwrap());
        }
        assert_eq!(got, ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn long_partial_lines_stay_linear() {
        let mut s = LineSplitter::default();
        let big = vec![b'x'; 200_000];
        for c in big.chunks(1) {
            s.push(c);
            assert!(s.next_line().is_none());
        }
        s.push(b"\n");
        assert_eq!(s.next_line().unwrap().unwrap().len(), 200_000);
    }
}
