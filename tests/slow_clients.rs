//! Slow clients at the file descriptor limit, against the real binary: posthorn runs with
//! systemd's default of 1,024 open files while 1,100 clients trickle request heads and
//! bodies at it, reconnecting whenever they are cut off. `/healthz` and the admin page
//! must still answer, the spool must still take a file (no "Too many open files"), and
//! the event must still be delivered.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{catch_all, Home, Receiver, Serve};

/// Clients trickling at posthorn.
const CLIENTS: usize = 1_100;
const THREADS: usize = 4;
/// The attack stops after this long whatever happens, so the test is bounded.
const ATTACK_LIMIT: Duration = Duration::from_secs(150);

/// One slow client: half send a head that never ends, half a whole head announcing a
/// large body that then comes one byte at a time.
fn open(address: SocketAddr, n: usize) -> Option<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(100)).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    stream.set_nonblocking(false).ok()?;
    let head = if n.is_multiple_of(2) {
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_string()
    } else {
        "POST /v1/sources/hooks HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{"
            .to_string()
    };
    stream.write_all(head.as_bytes()).ok()?;
    Some(stream)
}

/// Keeps `slots` slow clients going until `stop`; counts the clients open now, the most
/// that were open at once, and every connection made.
fn attack(
    address: SocketAddr,
    first: usize,
    slots: usize,
    stop: &AtomicBool,
    open_now: &AtomicUsize,
    made: &AtomicUsize,
) {
    let mut clients: Vec<Option<TcpStream>> = (0..slots).map(|_| None).collect();
    let started = Instant::now();
    while !stop.load(Ordering::SeqCst) && started.elapsed() < ATTACK_LIMIT {
        let mut connects = 0;
        for (i, slot) in clients.iter_mut().enumerate() {
            match slot {
                Some(stream) => {
                    let byte: &[u8] = if (first + i).is_multiple_of(2) {
                        b"X"
                    } else {
                        b" "
                    };
                    if stream.write_all(byte).is_err() {
                        *slot = None;
                        open_now.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                // A few new connections per pass, so one pass stays short when the
                // server's queue is full and connecting times out.
                None if connects < 100 => {
                    connects += 1;
                    if let Some(stream) = open(address, first + i) {
                        *slot = Some(stream);
                        open_now.fetch_add(1, Ordering::SeqCst);
                        made.fetch_add(1, Ordering::SeqCst);
                    }
                }
                None => {}
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// One GET on a fresh connection, bounded; the status, or `None` if it did not answer.
fn get(address: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[test]
fn healthz_the_admin_page_and_the_spool_keep_working_with_1100_slow_clients_at_1024_files() {
    // This process holds the 1,100 clients itself.
    posthorn::fdlimit::raise();
    let receiver = Receiver::start(204);
    let home = Home::new();
    home.write_config(&format!(
        "[http]\nlisten = \"127.0.0.1:{}\"\nrequest_timeout = \"2s\"\nbody_timeout = \"3s\"\n\
         [[inlet.source]]\nname = \"hooks\"\nprofile = \"generic\"\ntype_value = \"hook.received\"\n\
         {}",
        home.port,
        catch_all(&receiver.url)
    ));
    // systemd's default soft and hard limit, set by the shell before posthorn starts.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 1024 && exec \"$0\" serve --config \"$1\"")
        .arg(common::binary())
        .arg(home.config_path())
        .env("POSTHORN_LOG", "info");
    let serve = Serve::start_with(&home, command);
    common::wait_for_inlet(&home);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", serve.pid())).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 1024 ")),
        "{limits}"
    );

    let address: SocketAddr = ([127, 0, 0, 1], home.port).into();
    let stop = Arc::new(AtomicBool::new(false));
    let open_now = Arc::new(AtomicUsize::new(0));
    let made = Arc::new(AtomicUsize::new(0));
    let attackers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (stop, open_now, made) = (stop.clone(), open_now.clone(), made.clone());
            let slots = CLIENTS / THREADS;
            std::thread::spawn(move || attack(address, t * slots, slots, &stop, &open_now, &made))
        })
        .collect();
    let mut most_open = 0;
    common::wait_for(
        "the slow clients to hold the server's connections",
        Duration::from_secs(60),
        || {
            most_open = most_open.max(open_now.load(Ordering::SeqCst));
            std::thread::sleep(Duration::from_millis(200));
            most_open >= 704 && made.load(Ordering::SeqCst) >= CLIENTS
        },
    );

    // Under that load, the operator's views answer and the spool takes a file.
    home.drop_json(
        "under-load.json",
        r#"{"id": "evt-under-load", "type": "conversation.started", "conversation_id": "c-1"}"#,
    );
    let mut answered = Vec::new();
    for path in ["/healthz", "/admin/", "/healthz"] {
        common::wait_for(
            &format!("{path} to answer under load"),
            Duration::from_secs(60),
            || get(address, path) == Some(200),
        );
        answered.push(path);
    }
    receiver.wait_for_count(1, Duration::from_secs(60));
    let still_attacking = made.load(Ordering::SeqCst);

    stop.store(true, Ordering::SeqCst);
    for attacker in attackers {
        attacker.join().unwrap();
    }
    let log = serve.log();
    assert!(
        !log.contains("Too many open files") && !log.contains("os error 24"),
        "posthorn ran out of file descriptors:\n{log}"
    );
    assert!(
        log.contains("max_connections="),
        "the start names the connection cap:\n{log}"
    );
    assert_eq!(home.count("SELECT count(*) FROM events"), 1);
    eprintln!(
        "{} connections made by {CLIENTS} slow clients, at most {most_open} open at once; \
         answered {answered:?}",
        still_attacking
    );
}

#[test]
fn a_body_that_stops_arriving_gets_408_after_body_timeout() {
    let home = Home::new();
    home.write_config(&format!(
        "[http]\nlisten = \"127.0.0.1:{}\"\nbody_timeout = \"1s\"\n\
         [[inlet.source]]\nname = \"hooks\"\nprofile = \"generic\"\ntype_value = \"hook.received\"\n",
        home.port
    ));
    let _serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    let mut stream = TcpStream::connect(("127.0.0.1", home.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(
            b"POST /v1/sources/hooks HTTP/1.1\r\nHost: 127.0.0.1\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a\": ",
        )
        .unwrap();
    // Nothing more is sent; the answer comes anyway, and the connection closes.
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("body_timeout"), "{answer:?}");
    assert_eq!(home.count("SELECT count(*) FROM events"), 0);
}
