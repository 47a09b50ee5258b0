//! A streaming `multipart/form-data` parser that reports where each part's bytes lie inside the
//! body. The body is stored once, exactly as received; a part is an (offset, size) view into it,
//! so files are never stored twice and signatures over the raw body still verify.
//! (multer parses well but cannot say where a part's bytes were, which is what we need.)

use memchr::memmem;

/// Largest header block of one part.
const MAX_PART_HEADERS: usize = 16 * 1024;
/// A part without a filename up to this size whose bytes are UTF-8 is a text field; anything
/// else is listed as a file.
const MAX_FIELD_VALUE: usize = 64 * 1024;

/// A multipart body that cannot be parsed.
#[derive(thiserror::Error, Debug, PartialEq)]
pub enum MultipartError {
    #[error("malformed multipart body: {0}")]
    Malformed(String),
    #[error("the multipart body has more than {0} parts")]
    TooManyParts(usize),
}

/// One part, located in the body.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedPart {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    /// Where the part's content starts in the body.
    pub offset: u64,
    pub size: u64,
    /// The text of a form field; `None` for files.
    pub value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Before the first boundary.
    Preamble,
    /// Just after a boundary: either `--` (the end) or padding and CRLF.
    AfterBoundary,
    Headers,
    Body,
    /// After the closing boundary; the rest is ignored.
    Epilogue,
}

struct Current {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    offset: u64,
    size: u64,
    value: Option<Vec<u8>>,
}

/// Push parser: `feed` every chunk, then `finish`.
pub struct Parser {
    finder: memmem::Finder<'static>,
    delimiter_len: usize,
    boundary: String,
    state: State,
    /// Bytes not yet parsed: `buf[pos..]`. Consumed bytes are dropped once per chunk, not at
    /// each part: dropping them at each part moved the rest of the chunk every time, the largest
    /// copy on a lane under small multipart loads (docs/BENCHMARKS.md, target 3).
    buf: Vec<u8>,
    pos: usize,
    /// Bytes consumed so far, counting the virtual CRLF put in front of the body so that the
    /// first boundary looks like every other delimiter.
    consumed: u64,
    max_parts: usize,
    parts: Vec<ParsedPart>,
    current: Option<Current>,
}

impl Parser {
    /// A parser for bodies delimited by `boundary`, allowing at most `max_parts` parts. Parts are
    /// not hashed here: a part's hash is computed from the stored body when first asked for.
    pub fn new(boundary: &str, max_parts: usize) -> Parser {
        let delimiter = format!("\r\n--{boundary}").into_bytes();
        Parser {
            delimiter_len: delimiter.len(),
            finder: memmem::Finder::new(&delimiter).into_owned(),
            boundary: boundary.to_string(),
            state: State::Preamble,
            buf: b"\r\n".to_vec(),
            pos: 0,
            consumed: 0,
            max_parts,
            parts: Vec::new(),
            current: None,
        }
    }

    /// Parses the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), MultipartError> {
        if self.state == State::Epilogue {
            return Ok(());
        }
        self.buf.extend_from_slice(chunk);
        let result = self.process();
        self.buf.drain(..self.pos.min(self.buf.len()));
        self.pos = 0;
        result
    }

    /// Ends the body: every part, or an error if the closing boundary never came.
    pub fn finish(self) -> Result<Vec<ParsedPart>, MultipartError> {
        match self.state {
            State::Epilogue => Ok(self.parts),
            State::Preamble => Err(MultipartError::Malformed(format!(
                "the boundary '--{}' from the Content-Type header never appears in the body",
                self.boundary
            ))),
            _ => Err(MultipartError::Malformed(format!(
                "the body ended before the closing boundary '--{}--'",
                self.boundary
            ))),
        }
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.consumed += n as u64;
    }

    /// The bytes not yet parsed.
    fn rest(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
    }

    /// Offset in the real body of `rest()[i]`.
    fn offset_of(&self, i: usize) -> u64 {
        (self.consumed + i as u64).saturating_sub(2)
    }

    fn process(&mut self) -> Result<(), MultipartError> {
        loop {
            match self.state {
                State::Preamble => match self.finder.find(self.rest()) {
                    Some(i) => {
                        self.consume(i + self.delimiter_len);
                        self.state = State::AfterBoundary;
                    }
                    None => {
                        let keep = self.delimiter_len - 1;
                        if self.rest().len() > keep {
                            self.consume(self.rest().len() - keep);
                        }
                        return Ok(());
                    }
                },
                State::AfterBoundary => {
                    if self.rest().len() < 2 {
                        return Ok(());
                    }
                    if self.rest().starts_with(b"--") {
                        self.consume(2);
                        self.state = State::Epilogue;
                        self.clear();
                        return Ok(());
                    }
                    let end = memmem::find(self.rest(), b"\r\n");
                    // Without the CRLF yet, the last byte may be its CR.
                    let seen = end
                        .unwrap_or(self.rest().len() - usize::from(self.rest().ends_with(b"\r")));
                    let padding = &self.rest()[..seen];
                    if !padding.iter().all(|b| *b == b' ' || *b == b'\t') || padding.len() > 256 {
                        return Err(MultipartError::Malformed(
                            "a boundary line is followed by something other than CRLF".into(),
                        ));
                    }
                    match end {
                        Some(i) => {
                            self.consume(i + 2);
                            self.state = State::Headers;
                        }
                        None => return Ok(()),
                    }
                }
                State::Headers => {
                    let end = if self.rest().starts_with(b"\r\n") {
                        Some(0)
                    } else {
                        memmem::find(self.rest(), b"\r\n\r\n").map(|i| i + 2)
                    };
                    let Some(end) = end else {
                        if self.rest().len() > MAX_PART_HEADERS {
                            return Err(MultipartError::Malformed(format!(
                                "a part's headers are larger than {} KiB",
                                MAX_PART_HEADERS / 1024
                            )));
                        }
                        return Ok(());
                    };
                    if self.parts.len() >= self.max_parts {
                        return Err(MultipartError::TooManyParts(self.max_parts));
                    }
                    let mut part = parse_part_headers(&self.rest()[..end + 2])?;
                    part.offset = self.offset_of(end + 2);
                    self.current = Some(part);
                    self.consume(end + 2);
                    self.state = State::Body;
                }
                State::Body => {
                    let (data_len, found) = match self.finder.find(self.rest()) {
                        Some(i) => (i, true),
                        None => (
                            self.rest().len().saturating_sub(self.delimiter_len - 1),
                            false,
                        ),
                    };
                    if let Some(cur) = self.current.as_mut() {
                        let data = &self.buf[self.pos..self.pos + data_len];
                        cur.size += data.len() as u64;
                        if let Some(v) = cur.value.as_mut() {
                            if v.len() + data.len() <= MAX_FIELD_VALUE {
                                v.extend_from_slice(data);
                            } else {
                                cur.value = None;
                            }
                        }
                    }
                    if !found {
                        self.consume(data_len);
                        return Ok(());
                    }
                    if let Some(cur) = self.current.take() {
                        self.parts.push(cur.finish());
                    }
                    self.consume(data_len + self.delimiter_len);
                    self.state = State::AfterBoundary;
                }
                State::Epilogue => {
                    self.clear();
                    return Ok(());
                }
            }
        }
    }
}

impl Current {
    fn finish(self) -> ParsedPart {
        let value = match self.value {
            Some(v) if self.filename.is_none() => String::from_utf8(v).ok(),
            _ => None,
        };
        ParsedPart {
            name: self.name,
            filename: self.filename,
            content_type: self.content_type,
            offset: self.offset,
            size: self.size,
            value,
        }
    }
}

/// Reads `Content-Disposition` and `Content-Type` from a part's header block (ending in the blank
/// line).
fn parse_part_headers(block: &[u8]) -> Result<Current, MultipartError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let parsed = httparse::parse_headers(block, &mut headers).map_err(|e| {
        MultipartError::Malformed(format!("a part's headers cannot be parsed ({e})"))
    })?;
    let httparse::Status::Complete((_, headers)) = parsed else {
        return Err(MultipartError::Malformed(
            "a part's headers are incomplete".into(),
        ));
    };
    let mut cur = Current {
        name: String::new(),
        filename: None,
        content_type: None,
        offset: 0,
        size: 0,
        value: Some(Vec::new()),
    };
    for h in headers.iter() {
        let value = header_text(h.value);
        if h.name.eq_ignore_ascii_case("content-disposition") {
            let (name, filename) = disposition(&value);
            cur.name = name.unwrap_or_default();
            cur.filename = filename;
        } else if h.name.eq_ignore_ascii_case("content-type") {
            cur.content_type = Some(value.trim().to_string());
        }
    }
    if cur.filename.is_some() {
        cur.value = None;
    }
    Ok(cur)
}

/// Header bytes as text: UTF-8 when valid (browsers send raw UTF-8 filenames), else Latin-1.
pub fn header_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}

/// `name` and `filename` from `form-data; name="f"; filename="a.pdf"` (`filename*` wins).
fn disposition(value: &str) -> (Option<String>, Option<String>) {
    let (mut name, mut filename, mut filename_ext) = (None, None, None);
    let mut rest = value.split_once(';').map_or("", |(_, r)| r);
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            break;
        }
        let key_end = rest.find(['=', ';']).unwrap_or(rest.len());
        let key = rest[..key_end].trim().to_ascii_lowercase();
        rest = &rest[key_end..];
        let mut val = String::new();
        if let Some(r) = rest.strip_prefix('=') {
            rest = r.trim_start();
            if let Some(r) = rest.strip_prefix('"') {
                // Quoted string. A backslash escapes only `"` and `\`, so Windows paths survive.
                let mut chars = r.char_indices().peekable();
                let mut end = r.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' if matches!(chars.peek(), Some((_, '"' | '\\'))) => {
                            if let Some((_, e)) = chars.next() {
                                val.push(e);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => val.push(c),
                    }
                }
                rest = &r[end.min(r.len())..];
            } else {
                let end = rest.find(';').unwrap_or(rest.len());
                val = rest[..end].trim().to_string();
                rest = &rest[end..];
            }
        }
        match key.as_str() {
            "name" => name = Some(val),
            "filename" => filename = Some(val),
            "filename*" => filename_ext = decode_ext_value(&val),
            _ => {}
        }
    }
    (name, filename_ext.or(filename))
}

/// RFC 5987 `UTF-8''na%C3%AFve.txt`.
fn decode_ext_value(v: &str) -> Option<String> {
    let mut it = v.splitn(3, '\'');
    let charset = it.next()?;
    let _lang = it.next()?;
    let encoded = it.next()?;
    let bytes: Vec<u8> =
        form_urlencoded::parse(format!("x={}", encoded.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned().into_bytes())?;
    if charset.eq_ignore_ascii_case("utf-8") {
        String::from_utf8(bytes).ok()
    } else {
        Some(bytes.iter().map(|&b| b as char).collect())
    }
}

/// The boundary of a `multipart/form-data` content type; `Ok(None)` for other types.
pub fn boundary(content_type: &str) -> Result<Option<String>, MultipartError> {
    let mut parts = content_type.split(';');
    let mime = parts.next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return Ok(None);
    }
    for p in parts {
        if let Some((k, v)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("boundary")
        {
            let b = v.trim().trim_matches('"');
            if b.is_empty() || b.len() > 200 {
                break;
            }
            return Ok(Some(b.to_string()));
        }
    }
    Err(MultipartError::Malformed(
        "Content-Type multipart/form-data needs a boundary parameter, e.g. boundary=X".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"preamble\r\n--XyZ\r\n\
        Content-Disposition: form-data; name=\"note\"\r\n\r\n\
        hello\r\n--XyZ\r\n\
        Content-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\
        Content-Type: application/octet-stream\r\n\r\n\
        \x00\xff\r\n--Xy\r\n\
        --XyZ  \r\n\
        Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''na%C3%AFve.txt\r\n\r\n\
        \r\n--XyZ--\r\nepilogue";

    fn parse_in_chunks(
        body: &[u8],
        sizes: &mut dyn Iterator<Item = usize>,
    ) -> Result<Vec<ParsedPart>, MultipartError> {
        let mut p = Parser::new("XyZ", 10);
        let mut rest = body;
        while !rest.is_empty() {
            let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
            p.feed(&rest[..n])?;
            rest = &rest[n..];
        }
        p.finish()
    }

    #[test]
    fn parts_are_located_in_the_body() {
        let parts = parse_in_chunks(BODY, &mut std::iter::empty()).expect("parses");
        assert_eq!(parts.len(), 3);
        let slice = |p: &ParsedPart| &BODY[p.offset as usize..(p.offset + p.size) as usize];
        assert_eq!(parts[0].name, "note");
        assert_eq!(parts[0].value.as_deref(), Some("hello"));
        assert_eq!(slice(&parts[0]), b"hello");
        assert_eq!(parts[1].filename.as_deref(), Some("a.bin"));
        assert_eq!(
            parts[1].content_type.as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(parts[1].value, None);
        // A boundary-lookalike inside the content stays content.
        assert_eq!(slice(&parts[1]), b"\x00\xff\r\n--Xy");
        assert_eq!(parts[2].filename.as_deref(), Some("na\u{ef}ve.txt"));
        assert_eq!(parts[2].size, 0);
    }

    #[test]
    fn every_chunking_gives_the_same_parts() {
        let whole = parse_in_chunks(BODY, &mut std::iter::empty()).expect("parses");
        for split in 1..BODY.len() {
            let got = parse_in_chunks(BODY, &mut [split].into_iter()).expect("parses");
            assert_eq!(got, whole, "split at {split}");
        }
        for size in 1..8 {
            let got = parse_in_chunks(BODY, &mut std::iter::repeat(size)).expect("parses");
            assert_eq!(got, whole, "chunks of {size}");
        }
    }

    #[test]
    fn body_may_start_with_the_boundary() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--";
        let mut p = Parser::new("b", 10);
        p.feed(body).expect("feeds");
        let parts = p.finish().expect("parses");
        let content_at = body.len() - b"1\r\n--b--".len();
        assert_eq!((parts[0].offset, parts[0].size), (content_at as u64, 1));
        assert_eq!(parts[0].value.as_deref(), Some("1"));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let missing_close =
            b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b\r\n";
        let mut p = Parser::new("b", 10);
        p.feed(missing_close).expect("feeds");
        assert!(
            p.finish()
                .unwrap_err()
                .to_string()
                .contains("closing boundary '--b--'")
        );

        let mut p = Parser::new("b", 10);
        p.feed(b"no boundary here").expect("feeds");
        assert!(
            p.finish()
                .unwrap_err()
                .to_string()
                .contains("never appears")
        );

        let mut p = Parser::new("b", 10);
        let err = p.feed(b"--bjunk\r\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("followed by something other than CRLF")
        );

        let many = b"--b\r\n\r\nx\r\n--b\r\n\r\ny\r\n--b\r\n\r\nz\r\n--b--";
        let mut p = Parser::new("b", 2);
        assert_eq!(p.feed(many), Err(MultipartError::TooManyParts(2)));
    }

    #[test]
    fn boundaries_and_dispositions_parse() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc")
                .expect("ok")
                .as_deref(),
            Some("abc")
        );
        assert_eq!(
            boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b\"")
                .expect("ok")
                .as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("application/json").expect("ok"), None);
        assert!(boundary("multipart/form-data").is_err());
        assert_eq!(
            disposition(r#"form-data; name="f"; filename="C:\dir\a \"b\".txt""#),
            (Some("f".into()), Some(r#"C:\dir\a "b".txt"#.into()))
        );
        assert_eq!(
            disposition("form-data; name=plain"),
            (Some("plain".into()), None)
        );
    }
}
