//! `[storage] max_size` checked against what the store needs to run: below it, input
//! would be refused on the size of the WAL alone (see `store/room.rs`).

impl super::validate::Validator<'_> {
    /// `[storage] max_size`: at least what the store needs to run, else input would be
    /// refused on the WAL's size alone.
    pub(super) fn max_size(&mut self, size: toml::Spanned<super::values::ByteSize>) -> u64 {
        let bytes = size.get_ref().0 as u64;
        let min = crate::store::MIN_MAX_SIZE;
        if bytes < min {
            self.problem(
                size.span(),
                format!(
                    "storage.max_size = {bytes} bytes is below the {} MiB the store needs to \
                     run (its WAL alone keeps up to {} MiB between checkpoints); write at least \
                     \"{}MiB\", or leave max_size out for no limit",
                    min >> 20,
                    (min >> 20) - 1,
                    min >> 20
                ),
            );
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn check(size: &str) -> Result<Option<u64>, String> {
        crate::config::parse(
            &format!("[storage]\nmax_size = {size:?}\n"),
            Path::new("/tmp/c.toml"),
        )
        .map(|c| c.storage.max_size)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_max_size_below_what_the_store_needs_is_refused_with_the_minimum() {
        let err = check("3MiB").unwrap_err();
        assert!(
            err.contains("/tmp/c.toml:2:12:") && err.contains("write at least \"5MiB\""),
            "{err}"
        );
        assert_eq!(check("5MiB"), Ok(Some(5 << 20)));
    }
}
