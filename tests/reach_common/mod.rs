//! Fixtures for the "reaching the receiver" tests: a test CA and certificates made with
//! the openssl CLI, an HTTPS receiver on 127.0.0.1 (Python's ssl module, optionally
//! requiring a client certificate) that logs each request it takes, and a small HTTP
//! CONNECT proxy on 127.0.0.1 that records the tunnels it opens.
#![allow(dead_code)] // each test file uses a different part of this

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs openssl with `args` in `dir`, panicking with its stderr on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI runs");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA (certificate `<name>.pem`, key `<name>.key`) in `dir`.
pub fn make_ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=posthorn test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    dir.join(format!("{name}.pem"))
}

/// A leaf certificate `<name>.pem` with key `<name>.key`, signed by CA `ca`, for a server
/// at 127.0.0.1 (`usage` "serverAuth") or a client ("clientAuth").
pub fn make_leaf(dir: &Path, ca: &str, name: &str, usage: &str) -> (PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        format!(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n"
        ),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

const TLS_RECEIVER: &str = r#"
import http.server, json, ssl, sys
cert, key, log, client_ca = sys.argv[1:5]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        peer = self.connection.getpeercert()
        subject = dict(x[0] for x in peer["subject"])["commonName"] if peer else None
        with open(log, "a") as f:
            f.write(json.dumps({"path": self.path, "client": subject,
                                "authorization": self.headers.get("Authorization")}) + "\n")
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
if client_ca != "-":
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(client_ca)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// An HTTPS receiver on 127.0.0.1 answering 204; each request it takes is a JSON line in
/// its log. Dropping it stops it.
pub struct TlsReceiver {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl TlsReceiver {
    /// Serves `cert`/`key`; with `client_ca`, requires a client certificate it signed.
    pub fn start(dir: &Path, cert: &Path, key: &Path, client_ca: Option<&Path>) -> TlsReceiver {
        let log = dir.join(format!("tls-receiver-{}.log", crate::common::free_port()));
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(TLS_RECEIVER)
            .arg(cert)
            .arg(key)
            .arg(&log)
            .arg(client_ca.map_or("-".into(), |p| p.display().to_string()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the receiver prints its port");
        let port = line.trim().parse().expect("a port number");
        TlsReceiver { child, port, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// Each request taken: path, the client certificate's CN (if any), Authorization.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn at(&self, path: &str) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["path"] == path)
            .collect()
    }
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a CONNECT proxy saw: the request line's target and its `Proxy-Authorization`.
#[derive(Debug, Clone)]
pub struct Tunnel {
    pub target: String,
    pub proxy_authorization: Option<String>,
}

/// An HTTP CONNECT proxy on 127.0.0.1 that opens the tunnels asked of it (one thread per
/// direction) and records them. Dropping it stops it.
pub struct ConnectProxy {
    pub port: u16,
    tunnels: Arc<Mutex<Vec<Tunnel>>>,
    stopping: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl ConnectProxy {
    pub fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (seen, stop, streams) = (tunnels.clone(), stopping.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let (seen, streams) = (seen.clone(), streams.clone());
                std::thread::spawn(move || tunnel(client, &seen, &streams));
            }
        });
        ConnectProxy {
            port,
            tunnels,
            stopping,
            open,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn tunnels(&self) -> Vec<Tunnel> {
        self.tunnels.lock().unwrap().clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn tunnel(client: TcpStream, seen: &Mutex<Vec<Tunnel>>, open: &Mutex<Vec<TcpStream>>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut proxy_authorization = None;
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("proxy-authorization") {
                proxy_authorization = Some(value.trim().to_string());
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        let _ =
            (&client).write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    seen.lock().unwrap().push(Tunnel {
        target: target.to_string(),
        proxy_authorization,
    });
    let Ok(upstream) = TcpStream::connect(target) else {
        let _ = (&client).write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    let _ = (&client).write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
    let _ = client.set_read_timeout(None);
    open.lock()
        .unwrap()
        .extend([client.try_clone().unwrap(), upstream.try_clone().unwrap()]);
    // Bytes the reader buffered past the request head belong to the tunnel.
    let buffered = reader.buffer().to_vec();
    let (mut up_write, mut up_read) = (upstream.try_clone().unwrap(), upstream);
    let mut client_write = client.try_clone().unwrap();
    let _ = up_write.write_all(&buffered);
    let mut client_read = reader.into_inner();
    let upward = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut up_write);
        let _ = up_write.shutdown(Shutdown::Write);
    });
    let mut buf = [0u8; 16 << 10];
    loop {
        match up_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if client_write.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = client_write.shutdown(Shutdown::Write);
    let _ = upward.join();
}
