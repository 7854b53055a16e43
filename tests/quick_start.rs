//! The README's quick start, run as written: its `sh` blocks are taken from the README in
//! order and run by one bash script against the real binary on loopback. Only what must
//! differ on a shared test machine is replaced: `/tmp/posthorn` by a temp dir, the ports
//! 8425 and 9000 by free ones, `./target/release/posthorn` by the binary under test, and
//! `cargo build --release` by nothing. Between the blocks the script waits for what a
//! reader would wait for (the ports to answer, the event to be taken). It ends with the
//! admin page and the CLI working.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The `sh` blocks of the README's "## Quick start" section, in order.
fn quick_start_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme
        .find("\n## Quick start\n")
        .expect("the README has a Quick start section");
    let section = &readme[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let section = &section[..end];
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    let mut indent = 0;
    for line in section.lines() {
        let trimmed = line.trim_start();
        match &mut current {
            None if trimmed.starts_with("```sh") => {
                indent = line.len() - trimmed.len();
                current = Some(Vec::new());
            }
            Some(lines) if trimmed.starts_with("```") => {
                blocks.push(lines.join("\n"));
                current = None;
            }
            Some(lines) => lines.push(line.get(indent..).unwrap_or("")),
            None => {}
        }
    }
    blocks
}

/// Bash that waits (at most 20 s) until `port` on 127.0.0.1 takes a connection.
fn wait_for_port(port: u16) -> String {
    format!(
        "for i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; sleep 0.1; done\n"
    )
}

#[test]
fn the_readme_quick_start_works_as_written() {
    let blocks = quick_start_blocks();
    assert_eq!(blocks.len(), 4, "four steps: {blocks:#?}");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("posthorn");
    let (api_port, hook_port) = (common::free_port(), common::free_port());
    let replace = |block: &str| {
        block
            .replace("cargo build --release\n", "")
            .replace("./target/release/posthorn", common::binary())
            .replace("/tmp/posthorn", root.to_str().unwrap())
            .replace("8425", &api_port.to_string())
            .replace("9000", &hook_port.to_string())
    };
    for block in &blocks {
        assert!(
            !replace(block).contains("target/release"),
            "a step runs something the test cannot replace: {block}"
        );
    }
    let spool_file = root.join("spool/evt_1.json");
    let mut script = String::from("set -e\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n");
    script.push_str(&replace(&blocks[0]));
    script.push_str("\necho '--- step 2'\n");
    script.push_str(&replace(&blocks[1]));
    script.push('\n');
    script.push_str(&wait_for_port(hook_port));
    script.push_str(&wait_for_port(api_port));
    script.push_str("echo '--- step 3'\n");
    script.push_str(&replace(&blocks[2]));
    script.push_str(&format!(
        "\nfor i in $(seq 200); do [ -e {0} ] || break; sleep 0.1; done\n\
         for i in $(seq 200); do {1} deliveries list --state delivered --config {2}/config.toml 2>/dev/null | grep -q north-crm && break; sleep 0.1; done\n",
        spool_file.display(),
        common::binary(),
        root.display()
    ));
    script.push_str("echo '--- step 4'\n");
    script.push_str(&replace(&blocks[3]));
    // The admin page and the API, as a browser and a script reach them.
    script.push_str(&format!(
        "\necho '--- admin page'\n\
         exec 3<>/dev/tcp/127.0.0.1/{api_port}\n\
         printf 'GET /admin/ HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n' >&3\n\
         head -c 300 <&3\n\
         echo\n\
         echo '--- log'\n"
    ));

    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env_remove("POSTHORN_CONFIG")
        .env_remove("POSTHORN_API_TOKEN")
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let status = common::cli::wait_bounded(&mut child, Duration::from_secs(120), "the quick start");
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let shown = format!("script:\n{script}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        status.success(),
        "the quick start failed: {status}\n{shown}"
    );

    // Step 1: the config checks out.
    assert!(
        stdout.contains("config.toml: ok (1 subscription)"),
        "{shown}"
    );
    // Step 3: the receiver printed the signed POST.
    assert!(
        stdout.contains("webhook-id: evt_1") && stdout.contains("webhook-signature: v1,"),
        "{shown}"
    );
    // Step 4: the CLI works with the token from the environment.
    assert!(
        stdout.lines().any(|l| l.contains("north-crm")),
        "posthorn status names the subscription: {shown}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("north-crm") && l.contains("c-204") && l.contains("delivered")),
        "posthorn deliveries list shows the delivery: {shown}"
    );
    // The start-up log named the admin page, which answers.
    assert!(
        stderr.contains(&format!("admin page: http://127.0.0.1:{api_port}/admin/")),
        "{shown}"
    );
    assert!(
        stderr.contains("Password: "),
        "the first password is logged: {shown}"
    );
    let page = stdout.split("--- admin page").nth(1).unwrap_or_default();
    assert!(page.starts_with("\nHTTP/1.1 200"), "{shown}");
}
