//! A store whose filesystem turns read-only under a running posthorn, the way ext4 does
//! on an error (`errors=remount-ro`): a real ext4 image on a loop device (as root), with
//! the error triggered through ext4's own `trigger_fs_error`. Input gets 503 with
//! `Retry-After`, `/healthz` fails naming the commits, and after the filesystem is checked
//! and mounted again every acknowledged event is still there and delivered.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{catch_all, http_get, http_post, wait_for, Answer, Home, Receiver, Serve};

const TOKEN: &str = "inlet-token-0123456789";

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// An ext4 filesystem in a file, on a loop device, mounted with `errors=remount-ro`.
/// Dropping it unmounts it and frees the loop device.
struct Ext4 {
    dir: tempfile::TempDir,
    device: String,
}

impl Ext4 {
    fn create() -> Result<Ext4, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = dir.path().join("disk.img");
        fs::File::create(&image)
            .and_then(|f| f.set_len(64 << 20))
            .map_err(|e| e.to_string())?;
        let image = image.display().to_string();
        run("mkfs.ext4", &["-q", "-F", &image])?;
        let device = run("losetup", &["-f", "--show", &image])?;
        let ext4 = Ext4 { dir, device };
        fs::create_dir_all(ext4.mount_point()).map_err(|e| e.to_string())?;
        ext4.mount()?;
        Ok(ext4)
    }

    fn mount_point(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    fn mount(&self) -> Result<(), String> {
        let target = self.mount_point().display().to_string();
        run("mount", &["-o", "errors=remount-ro", &self.device, &target]).map(drop)
    }

    /// An ext4 error: the filesystem goes read-only at once.
    fn fail(&self) {
        let name = Path::new(&self.device).file_name().unwrap();
        let trigger = Path::new("/sys/fs/ext4")
            .join(name)
            .join("trigger_fs_error");
        fs::write(&trigger, "posthorn test").unwrap();
    }

    /// Unmounts, repairs and mounts again, as an operator would after the error.
    fn repair(&self) {
        let target = self.mount_point().display().to_string();
        run("umount", &[&target]).unwrap();
        // e2fsck exits 1 when it fixed something, which is expected here.
        let _ = Command::new("e2fsck").args(["-fy", &self.device]).output();
        self.mount().unwrap();
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mount_point()).output();
        let _ = Command::new("losetup").args(["-d", &self.device]).output();
    }
}

fn post(home: &Home, id: &str) -> common::Response {
    let body = format!(
        r#"{{"id":"{id}","type":"conversation.started","conversation_id":"c-1","data":{{"n":"{id}"}}}}"#
    );
    http_post(
        &format!("{}/v1/events", home.inlet_url()),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {TOKEN}")),
        ],
        body.as_bytes(),
        false,
    )
}

#[test]
fn a_store_turned_read_only_answers_503_fails_healthz_and_loses_nothing_acknowledged() {
    if common::sqlite_only("a database file on a file system remounted read-only") {
        return;
    }
    if !common::is_root() {
        eprintln!("skipped: loop devices and mounts need root");
        return;
    }
    let ext4 = match Ext4::create() {
        Ok(ext4) => ext4,
        Err(err) => {
            eprintln!("skipped: no ext4 on a loop device here: {err}");
            return;
        }
    };
    // The receiver fails until the end, so the deliveries stay pending across the fault.
    let receiver = Receiver::start(500);
    let home = Home::new();
    let db = ext4.mount_point().join("posthorn.db");
    home.write_config(&format!(
        "[delivery]\nschedule = [{}]\ntimeout = \"2s\"\n[inlet]\ntoken = {TOKEN:?}\n{}",
        vec!["\"300ms\""; 200].join(", "),
        catch_all(&receiver.url)
    ));
    let text = fs::read_to_string(home.config_path()).unwrap().replacen(
        &format!("path = {:?}", home.db().display().to_string()),
        &format!("path = {:?}", db.display().to_string()),
        1,
    );
    fs::write(home.config_path(), text).unwrap();

    let serve = Serve::start(&home);
    let acknowledged: Vec<String> = (0..5).map(|n| format!("before-{n}")).collect();
    for id in &acknowledged {
        post(&home, id).expect(202);
    }

    ext4.fail();
    let refused = post(&home, "during");
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.header("Retry-After"), Some("30"), "{refused:?}");
    wait_for("healthz to fail", Duration::from_secs(10), || {
        let health = http_get(&format!("{}/healthz", home.inlet_url()));
        health.status == 503
            && health.json()["checks"]["store"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("commits of ingest fail"))
    });
    drop(serve);

    ext4.repair();
    receiver.set_fallback(Answer::status(204));
    let serve = Serve::start(&home);
    post(&home, "during").expect(202);
    for id in acknowledged.iter().map(String::as_str).chain(["during"]) {
        wait_for(
            &format!("{id} to be delivered"),
            Duration::from_secs(20),
            || receiver.count_of(id) >= 1,
        );
    }
    http_get(&format!("{}/healthz", home.inlet_url())).expect(200);
    assert_eq!(serve.terminate(), Some(0));
}
