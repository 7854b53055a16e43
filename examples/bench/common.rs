//! What the three benchmarks share: their command line (`--quick`, and the posthorn
//! binary to run: `--bin PATH`, `$POSTHORN_BIN`, or the release build beside the
//! example), a warning when that binary is older than the sources, and waiting for a
//! started posthorn to listen.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

pub struct Args {
    pub quick: bool,
    pub bin: PathBuf,
}

/// Reads the command line of the benchmark `name`; exits on `--help`.
pub fn args(name: &str) -> anyhow::Result<Args> {
    let mut quick = false;
    let mut bin = std::env::var_os("POSTHORN_BIN").map(PathBuf::from);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--bin" => bin = Some(args.next().context("--bin needs a path")?.into()),
            "-h" | "--help" => {
                println!("usage: {name} [--quick] [--bin PATH]   (or POSTHORN_BIN=PATH)");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; try --help"),
        }
    }
    let bin = match bin {
        Some(bin) => bin,
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("cannot locate the target directory from this executable")?
            .join("posthorn"),
    };
    if !bin.is_file() {
        bail!(
            "no posthorn binary at {}; build it first with `cargo build --release` \
             (or pass --bin PATH)",
            bin.display()
        );
    }
    warn_if_stale(name, &bin);
    Ok(Args { quick, bin })
}

/// A benchmark measures whatever binary it finds; say so if `src/` is newer.
fn warn_if_stale(name: &str, bin: &Path) {
    let Ok(built) = fs::metadata(bin).and_then(|m| m.modified()) else {
        return;
    };
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > built)
            {
                eprintln!(
                    "{name}: warning: {} is newer than {}; run `cargo build --release` first",
                    path.display(),
                    bin.display()
                );
                return;
            }
        }
    }
}

/// Waits (at most `limit`) until something accepts connections on 127.0.0.1:`port`,
/// failing at once if `child` exits first.
pub fn wait_listening(child: &mut Child, port: u16, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            bail!("posthorn exited at start ({status})");
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("posthorn did not listen on {port} within {limit:?}")
}
