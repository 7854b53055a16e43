//! The spool directory through handles. The spool is group-writable and not sticky, so a
//! producer may add, rename and replace anything in it between two looks. Everything here
//! is therefore relative to directory handles: entries are looked at without following
//! links, files are opened without following links and without blocking and then checked
//! to be the regular file that was listed, and `rejected/` and `done/` are used only when
//! they are posthorn's own directories (its uid, written by no one else), where nothing a
//! producer made can be waiting. Nothing posthorn writes replaces an existing name.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, RenameFlags, Stat};
use rustix::io::Errno;

/// Device and inode: what a file is, whatever its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    /// The key a tailed file's position is stored under.
    pub fn key(&self) -> String {
        format!("{}:{}", self.dev, self.ino)
    }
}

/// What `stat` says about a directory entry (the entry itself, never a link's target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    pub id: FileId,
    pub kind: FileType,
    /// Permission bits.
    pub mode: u32,
    pub uid: u32,
    pub size: u64,
    pub mtime_ns: i128,
}

impl Info {
    // The field types of `struct stat` differ between architectures.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn of(stat: &Stat) -> Info {
        Info {
            id: FileId {
                dev: stat.st_dev as u64,
                ino: stat.st_ino as u64,
            },
            kind: FileType::from_raw_mode(stat.st_mode as _),
            mode: (stat.st_mode as u32) & 0o7777,
            uid: stat.st_uid as u32,
            size: stat.st_size.max(0) as u64,
            mtime_ns: i128::from(stat.st_mtime) * 1_000_000_000 + stat.st_mtime_nsec as i128,
        }
    }

    pub fn is_file(&self) -> bool {
        self.kind == FileType::RegularFile
    }

    /// What kind of entry this is, for a message.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            FileType::RegularFile => "a regular file",
            FileType::Directory => "a directory",
            FileType::Symlink => "a symbolic link",
            FileType::Fifo => "a FIFO",
            FileType::Socket => "a socket",
            FileType::CharacterDevice => "a character device",
            FileType::BlockDevice => "a block device",
            FileType::Unknown => "of an unknown kind",
        }
    }
}

/// One entry of the spool, as it was when listed.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub info: Info,
}

/// The spool directory, opened once.
pub struct SpoolDir {
    path: PathBuf,
    fd: OwnedFd,
    /// posthorn's effective uid: the owner its own directories must have.
    euid: u32,
}

/// One of posthorn's own directories inside the spool (`rejected/`, `done/`), checked.
pub struct OwnDir {
    fd: OwnedFd,
}

impl SpoolDir {
    /// Opens the configured spool directory (the operator's path, so links in it are fine).
    pub fn open(path: &Path) -> anyhow::Result<SpoolDir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("while opening the spool directory {}", path.display()))?;
        Ok(SpoolDir {
            path: path.to_path_buf(),
            fd,
            euid: rustix::process::geteuid().as_raw(),
        })
    }

    /// How an entry is named in logs and in the rejections table.
    pub fn display(&self, name: &str) -> String {
        self.path.join(name).display().to_string()
    }

    /// Every entry whose name is UTF-8 and does not start with a dot (a producer's temp
    /// file), sorted by name. Entries gone before they could be looked at are left out.
    pub fn list(&self) -> anyhow::Result<Vec<Entry>> {
        let listing = Dir::read_from(&self.fd)
            .with_context(|| format!("while listing {}", self.path.display()))?;
        let mut entries = Vec::new();
        for entry in listing {
            let entry = entry.with_context(|| format!("while listing {}", self.path.display()))?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            if let Some(info) = self.look(name)? {
                entries.push(Entry {
                    name: name.to_string(),
                    info,
                });
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// `lstat` of `name`: `None` if it is gone.
    fn look(&self, name: &str) -> std::io::Result<Option<Info>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(Info::of(&stat))),
            Err(Errno::NOENT) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Whether `name` still holds the entry that was listed, unchanged. (The inode of a
    /// file removed meanwhile may already serve a new one: size and time tell them apart.)
    fn still(&self, entry: &Entry) -> std::io::Result<bool> {
        Ok(self.look(&entry.name)?.is_some_and(|now| {
            now.id == entry.info.id
                && now.size == entry.info.size
                && now.mtime_ns == entry.info.mtime_ns
        }))
    }

    /// Opens a listed regular file for reading: no link followed, no wait on a FIFO, and
    /// only if what opened is still the regular file that was listed. `Ok(None)` when it
    /// changed since the listing (the next pass sees what is there now); an error when it
    /// cannot be opened (no permission, say).
    pub fn open_listed(&self, entry: &Entry) -> std::io::Result<Option<(File, Info)>> {
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&self.fd, entry.name.as_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            // Gone, now a link, or now a socket or device nobody listens on.
            Err(Errno::NOENT | Errno::LOOP | Errno::NXIO | Errno::NODEV) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let info = Info::of(&rustix::fs::fstat(&fd)?);
        if !info.is_file() || info.id != entry.info.id {
            return Ok(None);
        }
        Ok(Some((File::from(fd), info)))
    }

    /// Opens posthorn's own directory `name` in the spool, making it if it is missing.
    /// Refused (with the reason) when it is a link or not a directory, belongs to another
    /// user, or may be written by group or others: a producer could have made it, or put a
    /// link inside it for posthorn to write through.
    pub fn own_dir(&self, name: &str) -> Result<OwnDir, String> {
        let shown = self.display(name);
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o750)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(err) => return Err(format!("cannot create {shown}: {err}")),
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::LOOP | Errno::NOTDIR) => {
                let what = self
                    .look(name)
                    .ok()
                    .flatten()
                    .map_or("not a directory", |info| info.kind_name());
                return Err(format!("{shown} is {what}, not posthorn's own directory"));
            }
            Err(err) => return Err(format!("cannot open {shown}: {err}")),
        };
        let info = rustix::fs::fstat(&fd)
            .map(|stat| Info::of(&stat))
            .map_err(|err| format!("cannot look at {shown}: {err}"))?;
        if info.uid != self.euid {
            return Err(format!(
                "{shown} belongs to uid {}, not to posthorn (uid {}); a producer may have made it",
                info.uid, self.euid
            ));
        }
        if info.mode & 0o022 != 0 {
            return Err(format!(
                "{shown} may be written by group or others (mode {:o}); make it 0750",
                info.mode
            ));
        }
        Ok(OwnDir { fd })
    }

    /// Moves a listed entry into `to` under its own name, or the first free `name.N`;
    /// nothing there is replaced. `Ok(None)` when the name no longer holds the listed
    /// entry (the producer replaced it: what is there now is left for the next pass).
    pub fn move_listed(&self, entry: &Entry, to: &OwnDir) -> std::io::Result<Option<String>> {
        if !self.still(entry)? {
            return Ok(None);
        }
        for n in 0u64.. {
            let target = match n {
                0 => entry.name.clone(),
                n => format!("{}.{n}", entry.name),
            };
            let moved = rustix::fs::renameat_with(
                &self.fd,
                entry.name.as_str(),
                &to.fd,
                target.as_str(),
                RenameFlags::NOREPLACE,
            );
            match moved {
                Ok(()) => return Ok(Some(target)),
                Err(Errno::EXIST) => continue,
                // A filesystem without RENAME_NOREPLACE: only posthorn writes in `to`,
                // so looking first is as good.
                Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                    match rustix::fs::statat(&to.fd, target.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(_) => continue,
                        Err(Errno::NOENT) => {}
                        Err(err) => return Err(err.into()),
                    }
                    rustix::fs::renameat(&self.fd, entry.name.as_str(), &to.fd, target.as_str())?;
                    return Ok(Some(target));
                }
                Err(Errno::NOENT) => return Ok(None),
                Err(err) => return Err(err.into()),
            }
        }
        Err(std::io::Error::other("no free name"))
    }

    /// Removes a listed entry, unless the name no longer holds it.
    pub fn remove_listed(&self, entry: &Entry) -> std::io::Result<()> {
        if !self.still(entry)? {
            return Ok(());
        }
        match rustix::fs::unlinkat(&self.fd, entry.name.as_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

impl OwnDir {
    /// Writes a new file `name` holding `text`; fails if the name exists in any form.
    pub fn write_new(&self, name: &str, text: &str) -> std::io::Result<()> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(0o640))?;
        File::from(fd).write_all(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt as _};

    fn spool() -> (tempfile::TempDir, SpoolDir) {
        let temp = tempfile::tempdir().unwrap();
        let spool = SpoolDir::open(temp.path()).unwrap();
        (temp, spool)
    }

    fn entry(spool: &SpoolDir, name: &str) -> Entry {
        spool
            .list()
            .unwrap()
            .into_iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} is not listed"))
    }

    #[test]
    fn listing_leaves_out_dot_files_and_does_not_follow_links() {
        let (temp, spool) = spool();
        std::fs::write(temp.path().join("b.json"), "{}").unwrap();
        std::fs::write(temp.path().join(".a.json.tmp"), "{}").unwrap();
        symlink("/dev/zero", temp.path().join("a.json")).unwrap();
        let listed: Vec<(String, FileType)> = spool
            .list()
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.info.kind))
            .collect();
        assert_eq!(
            listed,
            [
                ("a.json".to_string(), FileType::Symlink),
                ("b.json".to_string(), FileType::RegularFile)
            ]
        );
    }

    #[test]
    fn only_the_regular_file_that_was_listed_is_opened() {
        let (temp, spool) = spool();
        let path = temp.path().join("x.json");
        std::fs::write(&path, "one").unwrap();
        let listed = entry(&spool, "x.json");
        assert!(spool.open_listed(&listed).unwrap().is_some());

        // Swapped for a FIFO: not opened, and no wait for a writer.
        std::fs::remove_file(&path).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, &path, Mode::from_raw_mode(0o644)).unwrap();
        assert!(spool.open_listed(&listed).unwrap().is_none());
        let fifo = entry(&spool, "x.json");
        assert!(spool.open_listed(&fifo).unwrap().is_none());

        // Swapped for a link to a regular file: not followed.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(temp.path().join("target"), "secret").unwrap();
        symlink(temp.path().join("target"), &path).unwrap();
        assert!(spool.open_listed(&listed).unwrap().is_none());

        // Swapped for another regular file: not the one listed.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "two").unwrap();
        assert!(spool.open_listed(&listed).unwrap().is_none());
    }

    #[test]
    fn own_directories_are_made_and_impostors_refused() {
        let (temp, spool) = spool();
        assert!(spool.own_dir("done").is_ok());
        let mode = std::fs::metadata(temp.path().join("done"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o022, 0, "made without group or other write");

        symlink(temp.path().join("done"), temp.path().join("rejected")).unwrap();
        let why = spool.own_dir("rejected").err().unwrap();
        assert!(why.contains("symbolic link"), "{why}");

        std::fs::create_dir(temp.path().join("open")).unwrap();
        std::fs::set_permissions(
            temp.path().join("open"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let why = spool.own_dir("open").err().unwrap();
        assert!(why.contains("written by group or others"), "{why}");

        std::fs::write(temp.path().join("file"), "").unwrap();
        let why = spool.own_dir("file").err().unwrap();
        assert!(why.contains("regular file"), "{why}");

        if rustix::process::geteuid().is_root() {
            let theirs = temp.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(4242), Some(4242)).unwrap();
            let why = spool.own_dir("theirs").err().unwrap();
            assert!(why.contains("belongs to uid 4242"), "{why}");
        }
    }

    #[test]
    fn moving_never_replaces_a_name_and_notes_never_follow_links() {
        let (temp, spool) = spool();
        let own = spool.own_dir("rejected").unwrap();
        let rejected = temp.path().join("rejected");
        std::fs::write(rejected.join("x.json"), "earlier").unwrap();
        std::fs::write(temp.path().join("x.json"), "now").unwrap();
        let listed = entry(&spool, "x.json");
        assert_eq!(
            spool.move_listed(&listed, &own).unwrap().as_deref(),
            Some("x.json.1")
        );
        assert_eq!(
            std::fs::read_to_string(rejected.join("x.json")).unwrap(),
            "earlier"
        );
        assert_eq!(
            std::fs::read_to_string(rejected.join("x.json.1")).unwrap(),
            "now"
        );
        // Already moved: the name no longer holds the listed file.
        assert_eq!(spool.move_listed(&listed, &own).unwrap(), None);

        let target = temp.path().join("store.db");
        std::fs::write(&target, "store").unwrap();
        symlink(&target, rejected.join("x.json.1.reason.txt")).unwrap();
        assert!(own.write_new("x.json.1.reason.txt", "note").is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "store");
    }

    #[test]
    fn a_file_replaced_since_the_listing_is_not_removed() {
        let (temp, spool) = spool();
        let path = temp.path().join("x.json");
        std::fs::write(&path, "read").unwrap();
        let listed = entry(&spool, "x.json");
        // Renamed over it, as a producer writes the next file of the same name.
        std::fs::write(temp.path().join(".next"), "new, not read yet").unwrap();
        std::fs::rename(temp.path().join(".next"), &path).unwrap();
        spool.remove_listed(&listed).unwrap();
        assert!(path.exists(), "removed a file nobody read");
        // Rewritten in place.
        let listed = entry(&spool, "x.json");
        std::fs::write(&path, "rewritten, longer than before").unwrap();
        spool.remove_listed(&listed).unwrap();
        assert!(path.exists(), "removed a file nobody read");
        let now = entry(&spool, "x.json");
        spool.remove_listed(&now).unwrap();
        assert!(!path.exists());
    }
}
