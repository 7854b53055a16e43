//! The tests' HTTP client: one request over a fresh connection to posthorn on
//! 127.0.0.1, bounded in time, with the raw status, headers and body of the answer.

use std::io::Write as _;
use std::time::Duration;

use super::find_header;

/// A response from [`http_post`].
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("expected a JSON body ({err}), got: {self:?}"))
    }

    /// Panics naming the expected status and what came instead.
    pub fn expect(self, status: u16) -> Response {
        assert_eq!(self.status, status, "expected {status}, got {self:?}");
        self
    }
}

/// POSTs `body` to `url` (http://127.0.0.1:PORT/path) over a fresh connection, with
/// `headers` as given (Content-Length is added unless `chunked`, which streams the body
/// in 64 KiB chunks instead). Bounded: 10 s per read or write.
pub fn http_post(url: &str, headers: &[(&str, &str)], body: &[u8], chunked: bool) -> Response {
    http_request("POST", url, headers, body, chunked)
}

/// GETs `url` (http://127.0.0.1:PORT/path) over a fresh connection; bounded like
/// [`http_post`].
pub fn http_get(url: &str) -> Response {
    http_request("GET", url, &[], b"", false)
}

/// Sends `method` with `headers` (a `Host` among them replaces the default) and `body`;
/// bounded like [`http_post`].
pub fn http_request_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    http_request(method, url, headers, body, false)
}

fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    chunked: bool,
) -> Response {
    use std::io::{BufRead as _, BufReader, Read as _};
    let rest = url.strip_prefix("http://").expect("an http:// url");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = std::net::TcpStream::connect(host).expect("connect to posthorn");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {host}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
    } else {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    }
    // The server may answer (413) and close before taking the whole body: write errors
    // are expected then, and the answer is still read.
    let _ = (|| -> std::io::Result<()> {
        stream.write_all(head.as_bytes())?;
        if chunked {
            for chunk in body.chunks(64 << 10) {
                stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
                stream.write_all(chunk)?;
                stream.write_all(b"\r\n")?;
            }
            stream.write_all(b"0\r\n\r\n")?;
        } else {
            stream.write_all(body)?;
        }
        stream.flush()
    })();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("a status line");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    let mut body = Vec::new();
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    match length {
        Some(len) => {
            body.resize(len, 0);
            let _ = reader.read_exact(&mut body);
        }
        None => {
            let _ = reader.read_to_end(&mut body);
        }
    }
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}
