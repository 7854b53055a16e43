//! How a tailed spool file is recognised across restarts without keeping its bytes: the
//! store records a fingerprint of the file's first bytes (their length and SHA-256), not
//! the bytes themselves, so no event text lives in `spool_positions` (a forgotten
//! conversation's line near the top of a file would otherwise stay there). Positions
//! written by earlier versions held the raw bytes; they are turned into fingerprints when
//! the store opens.

use crate::store::db::{params, Db};
use sha2::{Digest, Sha256};

/// Marks a fingerprint; a raw head from an earlier version never starts with it (a
/// spool file's first bytes are JSON).
const PREFIX: &[u8] = b"sha256:";
const PRINT_LEN: usize = PREFIX.len() + 8 + 32;

/// The fingerprint of a file whose first bytes are `first`. Empty for an empty `first`:
/// nothing recorded yet.
pub fn print(first: &[u8]) -> Vec<u8> {
    if first.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(PRINT_LEN);
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(&(first.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(first));
    out
}

/// How many of the file's first bytes `recorded` covers.
pub fn covered(recorded: &[u8]) -> usize {
    match is_print(recorded) {
        true => {
            let mut len = [0u8; 8];
            len.copy_from_slice(&recorded[PREFIX.len()..PREFIX.len() + 8]);
            usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX)
        }
        false => recorded.len(),
    }
}

fn is_print(recorded: &[u8]) -> bool {
    recorded.len() == PRINT_LEN && recorded.starts_with(PREFIX)
}

/// Turns raw heads written by earlier versions into fingerprints. Returns how many.
pub(super) fn convert_raw_heads(conn: &Db) -> crate::store::db::Result<usize> {
    let raw: Vec<(String, Vec<u8>)> = {
        let mut select = conn.prepare("SELECT file_key, head FROM spool_positions")?;
        let rows = select.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect::<crate::store::db::Result<Vec<_>>>()?
            .into_iter()
            .filter(|(_, head): &(String, Vec<u8>)| !head.is_empty() && !is_print(head))
            .collect()
    };
    let mut update = conn.prepare("UPDATE spool_positions SET head = ?2 WHERE file_key = ?1")?;
    for (key, head) in &raw {
        update.execute(params![key, print(head)])?;
    }
    Ok(raw.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_covers_its_length_and_tells_other_bytes_apart() {
        let head = br#"{"id":"e-1","type":"x","conversation_id":"c-secret"}"#;
        let recorded = print(head);
        assert_eq!(covered(&recorded), head.len());
        assert_eq!(print(head), recorded);
        assert_ne!(
            print(br#"{"id":"e-2","type":"x","conversation_id":"c-secret"}"#),
            recorded
        );
        assert!(!recorded.windows(8).any(|w| w == b"c-secret"));
        assert!(print(b"").is_empty());
        assert_eq!(covered(&[]), 0);
        // A raw head from an earlier version covers its own length.
        assert_eq!(covered(b"{\"id\":1}"), 8);
    }

    #[test]
    fn raw_heads_from_earlier_versions_become_fingerprints() {
        let conn = Db::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE spool_positions (file_key TEXT PRIMARY KEY, head BLOB NOT NULL);",
        )
        .unwrap();
        let raw = br#"{"id":"e-1","conversation_id":"c-secret"}"#.to_vec();
        conn.execute(
            "INSERT INTO spool_positions VALUES ('a', ?1), ('b', ?2), ('c', x'')",
            params![raw, print(b"other")],
        )
        .unwrap();
        assert_eq!(convert_raw_heads(&conn).unwrap(), 1);
        let head = |key: &str| -> Vec<u8> {
            conn.query_row(
                "SELECT head FROM spool_positions WHERE file_key = ?1",
                [key],
                |row| row.get(0),
            )
            .unwrap()
        };
        assert_eq!(head("a"), print(&raw));
        assert_eq!(head("b"), print(b"other"));
        assert!(head("c").is_empty());
        assert_eq!(convert_raw_heads(&conn).unwrap(), 0);
    }
}
