//! Running `posthorn` commands as a user would from a shell: in an environment of their
//! own (no POSTHORN_CONFIG, no POSTHORN_API_TOKEN, a home without a config file), killed
//! after 60 s so a command that hangs fails the test, with what they printed.

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::Home;

/// What one command did.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics unless the command exited with `code`, showing what it printed.
    pub fn expect(self, code: i32) -> Output {
        assert_eq!(self.code, Some(code), "expected exit {code}, got {self:#?}");
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err}): {self:#?}"))
    }

    /// The stdout line that starts with `start` (a table row), split into its cells.
    pub fn row(&self, start: &str) -> Vec<String> {
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting with {start:?} in {self:#?}"));
        line.split("  ")
            .map(str::trim)
            .filter(|cell| !cell.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// Runs `posthorn ARGS` with `envs` and `stdin` (none: stdin is /dev/null).
pub fn run(home: &Path, args: &[&str], envs: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(super::binary());
    command
        .args(args)
        .env_remove("POSTHORN_CONFIG")
        .env_remove("POSTHORN_API_TOKEN")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("xdg-config"))
        .envs(envs.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run posthorn");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(bytes).expect("write stdin");
    }
    // Read the pipes on threads so a chatty command cannot block on a full pipe.
    let stdout = read_pipe(child.stdout.take());
    let stderr = read_pipe(child.stderr.take());
    let status = wait_bounded(
        &mut child,
        Duration::from_secs(60),
        &format!("posthorn {args:?}"),
    );
    Output {
        code: status.code(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Waits for `child` at most `limit`; past it, kills it and panics naming `what`.
pub fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} was still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_pipe(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// `posthorn ARGS --config <home>/config.toml` with `envs`.
pub fn with_config(home: &Home, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let config = home.config_path();
    let mut all = args.to_vec();
    all.extend(["--config", config.to_str().expect("a UTF-8 temp path")]);
    run(home.path(), &all, envs, None)
}
