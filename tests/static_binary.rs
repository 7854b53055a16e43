//! The static Linux binary `packaging/build-static.sh` makes: it has no dynamic loader
//! and no shared libraries, and it still resolves host names itself (through
//! `/etc/hosts`) and delivers.
//!
//! The first test to need the binary runs the script, which reuses `target/static`, so
//! only the first run pays for the release build (1 to 3 minutes).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{spool_event, subscription, Home, Receiver, Serve, SECRET};

/// Runs `packaging/build-static.sh` once per test run and returns the binary it names.
fn static_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut command = Command::new(root.join("packaging/build-static.sh"));
        command.env("CARGO_TARGET_DIR", root.join("target/static"));
        // `cargo test` gives this process posthorn's CARGO_PKG_* and friends; the nested
        // build must not see them, or crates that read such variables with env! (ureq,
        // posthorn) look changed and rebuild, with LTO, on every run.
        for (name, _) in std::env::vars_os() {
            if set_by_cargo_for_this_test(&name.to_string_lossy()) {
                command.env_remove(&name);
            }
        }
        let output = command.output().expect("run packaging/build-static.sh");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "packaging/build-static.sh failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let binary = stdout
            .lines()
            .find_map(|line| line.strip_prefix("binary:"))
            .map(|path| PathBuf::from(path.trim()))
            .unwrap_or_else(|| panic!("build-static.sh printed no `binary:` line:\n{stdout}"));
        assert!(binary.is_file(), "{} does not exist", binary.display());
        binary
    })
}

/// Whether `name` is one of the variables cargo sets for the crate under test (not one of
/// cargo's own configuration variables, which the nested build should keep).
fn set_by_cargo_for_this_test(name: &str) -> bool {
    const PREFIXES: [&str; 4] = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_BIN_",
        "CARGO_CRATE_",
    ];
    const NAMES: [&str; 3] = [
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
    ];
    PREFIXES.iter().any(|prefix| name.starts_with(prefix)) || NAMES.contains(&name)
}

/// The port of a receiver's `http://127.0.0.1:PORT` url.
fn port(receiver: &Receiver) -> &str {
    receiver
        .url
        .rsplit(':')
        .next()
        .expect("a receiver url ends in its port")
}

/// The ELF program header types of `binary` (64-bit little-endian only).
fn program_header_types(binary: &Path) -> Vec<u32> {
    let elf = fs::read(binary).expect("read the binary");
    assert_eq!(&elf[..4], b"\x7fELF", "{} is not ELF", binary.display());
    assert_eq!(elf[4], 2, "not a 64-bit ELF");
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum)
        .map(|i| {
            let at = phoff + i * phentsize;
            u32::from_le_bytes(elf[at..at + 4].try_into().unwrap())
        })
        .collect()
}

#[test]
fn the_static_binary_has_no_dynamic_loader_or_libraries() {
    let binary = static_binary();

    let ldd = Command::new("ldd").arg(binary).output().expect("run ldd");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    // glibc's ldd says "not a dynamic executable" of a static binary and "statically
    // linked" of a static-pie one; either way it lists no library.
    assert!(
        said.contains("not a dynamic executable") || said.contains("statically linked"),
        "ldd should say {} is static, it said: {said}",
        binary.display()
    );
    assert!(!said.contains(".so"), "ldd lists libraries: {said}");

    // The same, without trusting ldd: no PT_INTERP (3), so no dynamic loader runs.
    let types = program_header_types(binary);
    assert!(
        !types.contains(&3),
        "{} asks for a program interpreter (PT_INTERP): it is dynamic",
        binary.display()
    );

    // file(1), where installed, agrees.
    if let Ok(file) = Command::new("file").arg("-b").arg(binary).output() {
        let said = String::from_utf8_lossy(&file.stdout);
        assert!(
            said.contains("statically linked") || said.contains("static-pie linked"),
            "file(1) should call {} static, it said: {said}",
            binary.display()
        );
    }

    let version = Command::new(binary).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("posthorn {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn the_static_binary_delivers_to_a_receiver_named_localhost() {
    let binary = static_binary();
    let receiver = Receiver::start(204);
    let home = Home::new();
    // The url names the host: the static binary resolves it itself (glibc's built-in
    // "files" service reading /etc/hosts).
    let url = format!("http://localhost:{}/hook", port(&receiver));
    home.write_config(&subscription(
        "by-name",
        &url,
        "conversations = [\"c-1\"]",
        "[\"conversation.*\"]",
    ));
    let mut command = Command::new(binary);
    command
        .args(["serve", "--config"])
        .arg(home.config_path())
        .env("POSTHORN_LOG", "posthorn=debug,info");
    let serve = Serve::start_with(&home, command);

    home.drop_json("evt_static.json", &spool_event("evt_static"));
    common::wait_for(
        "the event to reach the receiver at localhost",
        Duration::from_secs(15),
        || receiver.count() >= 1,
    );
    let got = &receiver.requests()[0];
    got.verify_standard(SECRET).unwrap();
    assert_eq!(got.path, "/hook");
    assert_eq!(got.header("webhook-id"), Some("evt_static"));
    assert_eq!(
        serve.terminate(),
        Some(0),
        "the static binary stops cleanly on SIGTERM"
    );
}

/// The strongest form of "static": run it in a root that holds nothing but the binary,
/// a few files in /etc and its state: no libc.so, no NSS modules, no /dev. It must still
/// read its own /etc/hosts to find a receiver by a made-up name. Needs root (chroot);
/// skipped, saying so, otherwise. CI runs as root.
#[test]
fn the_static_binary_resolves_names_in_an_empty_root() {
    if !common::is_root() {
        eprintln!("skipped: chroot needs root");
        return;
    }
    let binary = static_binary();
    let receiver = Receiver::start(204);
    let home = Home::new();
    let root = home.path();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost\n127.0.0.1 receiver.posthorn.test\n",
    )
    .unwrap();
    fs::write(root.join("etc/nsswitch.conf"), "hosts: files\n").unwrap();
    fs::copy(binary, root.join("posthorn")).unwrap();
    // Paths as the chrooted binary sees them; the spool and store are the Home's own.
    let url = format!("http://receiver.posthorn.test:{}/hook", port(&receiver));
    let config = format!(
        "[storage]\npath = \"/posthorn.db\"\n[spool]\ndir = \"/spool\"\nrescan_interval = \"200ms\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[delivery]\nschedule = [\"100ms\", \"200ms\"]\ntimeout = \"2s\"\n{}{}",
        home.port,
        common::ALLOW_LOOPBACK,
        subscription(
            "by-made-up-name",
            &url,
            "conversations = [\"c-1\"]",
            "[\"conversation.*\"]"
        )
    );
    fs::write(root.join("config.toml"), config).unwrap();
    let entries: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !entries.iter().any(|e| e.starts_with("lib") || e == "usr"),
        "the root must hold no libraries: {entries:?}"
    );

    let mut command = Command::new("chroot");
    command
        .arg(root)
        .args(["/posthorn", "serve", "--config", "/config.toml"])
        .env("POSTHORN_LOG", "posthorn=debug,info");
    let serve = Serve::start_with(&home, command);

    home.drop_json("evt_chroot.json", &spool_event("evt_chroot"));
    common::wait_for(
        "the event to reach receiver.posthorn.test",
        Duration::from_secs(15),
        || receiver.count() >= 1,
    );
    let got = &receiver.requests()[0];
    got.verify_standard(SECRET).unwrap();
    assert_eq!(got.header("webhook-id"), Some("evt_chroot"));
    assert_eq!(serve.terminate(), Some(0));
}
