//! The benchmark's receiver: a minimal HTTP/1.1 keep-alive server on 127.0.0.1, one
//! thread per connection, that answers every request 204 (or, when told to, 500 to every
//! n-th) and records, per phase, each event's write-to-receipt latency from the write
//! stamp in its `webhook-id`.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;

/// Microseconds since the Unix epoch: the clock both the writer and the receiver stamp.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// What the receiver saw of one phase's events.
#[derive(Default, Clone)]
pub struct PhaseStats {
    seen: HashSet<u64>,
    /// Sequence numbers in receipt order, beside their latencies.
    pub order: Vec<u64>,
    pub latencies_us: Vec<u64>,
    pub duplicates: usize,
    pub last_at: Option<Instant>,
    /// Unix µs of each first receipt, beside `order`.
    pub arrivals_us: Vec<u64>,
    /// Every sequence number answered 2xx in receipt order, duplicates included.
    pub every: Vec<u64>,
}

pub struct Receiver {
    pub port: u16,
    phases: Arc<Mutex<HashMap<String, PhaseStats>>>,
    /// Connections accepted so far: keep-alive keeps this near the in-flight cap.
    connections: Arc<AtomicU32>,
}

impl Receiver {
    pub fn start() -> anyhow::Result<Receiver> {
        Self::start_failing(0)
    }

    /// A receiver that answers 500 to every `one_in`-th request (never with 0).
    pub fn start_failing(one_in: u32) -> anyhow::Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let phases = Arc::new(Mutex::new(HashMap::new()));
        let shared = Arc::clone(&phases);
        let connections = Arc::new(AtomicU32::new(0));
        let accepted = Arc::clone(&connections);
        let requests = Arc::new(AtomicU32::new(0));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                accepted.fetch_add(1, Ordering::SeqCst);
                let phases = Arc::clone(&shared);
                let requests = Arc::clone(&requests);
                std::thread::spawn(move || {
                    let _ = serve_connection(stream, &phases, &requests, one_in);
                });
            }
        });
        Ok(Receiver {
            port,
            phases,
            connections,
        })
    }

    pub fn phase(&self, name: &str) -> PhaseStats {
        self.phases
            .lock()
            .map(|p| p.get(name).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    fn count(&self, name: &str) -> usize {
        self.phases
            .lock()
            .map(|p| p.get(name).map_or(0, |s| s.seen.len()))
            .unwrap_or(0)
    }

    pub fn connections(&self) -> u32 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits until `count` distinct events of `phase` have arrived, at most `limit`.
    pub fn wait_for(&self, phase: &str, count: usize, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.count(phase);
            if got >= count {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {limit:?}: the receiver has {got} of {count} {phase:?} events"
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn serve_connection(
    stream: TcpStream,
    phases: &Mutex<HashMap<String, PhaseStats>>,
    requests: &AtomicU32,
    fail_one_in: u32,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    let mut body = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(()); // the client closed the connection
        }
        let mut length = 0usize;
        let mut chunked = false;
        let mut close = false;
        let mut id = None;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            } else if name.eq_ignore_ascii_case("webhook-id") {
                id = Some(value.to_string());
            }
        }
        if chunked {
            read_chunked(&mut reader, &mut line)?;
        } else {
            body.resize(length, 0);
            reader.read_exact(&mut body)?;
        }
        let received_us = unix_us();
        let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
        if fail_one_in > 0 && n.is_multiple_of(fail_one_in) {
            writer.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")?;
            continue;
        }
        if let Some(id) = id {
            record(phases, &id, received_us);
        }
        writer.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")?;
        if close {
            return Ok(());
        }
    }
}

fn read_chunked(reader: &mut BufReader<TcpStream>, line: &mut String) -> std::io::Result<()> {
    loop {
        line.clear();
        reader.read_line(line)?;
        let size =
            usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        let mut chunk = vec![0; size + 2];
        if size == 0 {
            // Trailers end with an empty line.
            loop {
                line.clear();
                if reader.read_line(line)? == 0 || line.trim_end().is_empty() {
                    return Ok(());
                }
            }
        }
        reader.read_exact(&mut chunk)?;
    }
}

/// Counts an event id `<phase>-<seq>-<unix µs>` once, with its write-to-receipt latency.
fn record(phases: &Mutex<HashMap<String, PhaseStats>>, id: &str, received_us: u64) {
    let mut parts = id.split('-');
    let (Some(phase), Some(seq), Some(written)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let (Ok(seq), Ok(written)) = (seq.parse::<u64>(), written.parse::<u64>()) else {
        return;
    };
    let Ok(mut phases) = phases.lock() else {
        return;
    };
    let stats = phases.entry(phase.to_string()).or_default();
    stats.every.push(seq);
    if stats.seen.insert(seq) {
        stats.order.push(seq);
        stats.arrivals_us.push(received_us);
        stats.latencies_us.push(received_us.saturating_sub(written));
        stats.last_at = Some(Instant::now());
    } else {
        stats.duplicates += 1;
    }
}
