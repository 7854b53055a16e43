//! Filling a store to its `[storage] max_size`: the budget and the filler events the
//! store-size tests use.

use std::fs;
use std::time::Duration;

use super::{wait_for, Home};

/// The smallest `[storage] max_size` posthorn accepts (`posthorn::store::MIN_MAX_SIZE`),
/// as written in the config.
pub const MIN_MAX_SIZE: &str = "5MiB";

impl Home {
    /// Puts `max_size` under the `[storage]` table `write_config` wrote.
    pub fn set_max_size(&self, max_size: &str) {
        let text = fs::read_to_string(self.config_path()).unwrap();
        let text = text.replacen(
            "[storage]\n",
            &format!("[storage]\nmax_size = {max_size:?}\n"),
            1,
        );
        fs::write(self.config_path(), text).unwrap();
    }

    /// Drops `mib` MiB of events no subscription scoped to conversations takes (they
    /// have none) into the spool as `filler.json`, and waits (after `serve` started)
    /// with [`Home::wait_for_filler`].
    pub fn drop_filler(&self, mib: usize) {
        let text = "x".repeat(16 << 10);
        let events: Vec<String> = (0..mib * 64)
            .map(|n| {
                format!(
                    r#"{{"id":"filler-{n}","type":"report.generated","data":{{"text":"{text}"}}}}"#
                )
            })
            .collect();
        self.drop_json("filler.json", &format!("[{}]", events.join(",")));
    }

    pub fn wait_for_filler(&self) {
        wait_for("filler.json to be taken", Duration::from_secs(30), || {
            !self.spool().join("filler.json").exists()
        });
    }
}
