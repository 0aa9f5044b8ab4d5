//! The samples file: appends batches of whole lines, makes them durable, and rotates by size.
//!
//! Invariant: the file always ends at the end of a complete record. A write or fsync that
//! fails is cut back to the length before it, so a torn record can never become the head of
//! the next line, and records that were not synced (and so never acknowledged) do not linger.
//! A tail torn by a crash is cut when the file is opened.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::metrics::{Metrics, Op};

/// When a batch counts as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fsync {
    /// After `fdatasync`: a crash of the process or the machine loses nothing acknowledged.
    Always,
    /// After `write`: a crash of the process loses nothing acknowledged, one of the machine
    /// may lose what the kernel had not written back yet.
    Never,
}

#[derive(Clone, Debug)]
pub struct FileConfig {
    pub path: PathBuf,
    pub fsync: Fsync,
    /// Rotate before a record would take the file past this; 0: never.
    pub max_file_bytes: u64,
    /// Rotated files kept, `path.1` the newest.
    pub max_files: usize,
    /// No sample older than this stays on disk: see [`Writer::expire`].
    pub max_age: Option<Duration>,
}

/// With a maximum age, a file holds at most this share of it: a file is deleted whole, so
/// its newest samples go up to a sixth of the age early.
const AGE_SEGMENTS: u32 = 6;

/// How often retention is checked without traffic: every minute, or every sixth of the age
/// when that is shorter.
pub fn retention_tick(max_age: Duration) -> Duration {
    (max_age / AGE_SEGMENTS).min(Duration::from_secs(60))
}

/// What the writer needs of an open file: a seam so that tests can fill the disk or fail
/// fsync on a real file.
pub trait SegmentFile: Write {
    fn sync_data(&self) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
}

impl SegmentFile for File {
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

/// Opens `path` for appending, creating it.
pub type Opener<F> = Box<dyn FnMut(&Path) -> io::Result<F> + Send>;

/// What [`Writer::commit`] did: the first `stored` records are in the file (synced under
/// [`Fsync::Always`]); the others are not, because of `error`.
#[derive(Debug)]
pub struct Commit {
    pub stored: usize,
    pub error: Option<io::Error>,
}

pub struct Writer<F: SegmentFile = File> {
    config: FileConfig,
    open: Opener<F>,
    /// `None` when reopening after a rotation failed; the next commit tries again.
    file: Option<F>,
    /// The offset after the last complete record.
    len: u64,
    /// A failed write left bytes past `len` that could not be cut yet.
    torn: bool,
    /// When the current file's first record was written (the epoch for a file found
    /// non-empty at start: its age is unknown).
    started: Option<SystemTime>,
    metrics: Metrics,
}

impl Writer<File> {
    pub fn open(config: FileConfig, metrics: Metrics) -> io::Result<Self> {
        Self::open_with(config, metrics, Box::new(open_private))
    }
}

/// Samples are payloads: readable by the collector's user only (the drift monitor runs as the
/// same user). A file found readable by others is made private too.
fn open_private(p: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let f = OpenOptions::new().create(true).append(true).mode(0o600).open(p)?;
    let mut perms = f.metadata()?.permissions();
    if perms.mode() & 0o077 != 0 {
        tracing::warn!(path = %p.display(), mode = format!("{:o}", perms.mode() & 0o777), "samples file readable by others: made private (0600)");
        perms.set_mode(0o600);
        f.set_permissions(perms)?;
    }
    Ok(f)
}

impl<F: SegmentFile> Writer<F> {
    pub fn open_with(config: FileConfig, metrics: Metrics, open: Opener<F>) -> io::Result<Self> {
        let mut w = Writer { config, open, file: None, len: 0, torn: false, started: None, metrics };
        w.reopen()?;
        Ok(w)
    }

    /// Appends `records` (each one line with its newline) in order. Records that fit in the
    /// current file go down in one write and one fsync; a record that would not fit rotates
    /// first, so a batch may span two files.
    pub fn commit(&mut self, records: &[&[u8]]) -> Commit {
        let mut stored = 0;
        let mut segment = Vec::new();
        while stored < records.len() {
            if let Err(error) = self.prepare(records[stored].len() as u64) {
                return Commit { stored, error: Some(error) };
            }
            segment.clear();
            let mut end = stored;
            while end < records.len()
                && (end == stored || !self.exceeds(self.len + segment.len() as u64, records[end].len() as u64))
            {
                segment.extend_from_slice(records[end]);
                end += 1;
            }
            if let Err(error) = self.append(&segment) {
                return Commit { stored, error: Some(error) };
            }
            self.metrics.records_written.inc_by((end - stored) as u64);
            self.metrics.written_bytes.inc_by(segment.len() as u64);
            stored = end;
        }
        Commit { stored, error: None }
    }

    /// Whether `extra` bytes would take a non-empty file of `used` bytes past the limit. An
    /// empty file takes any record, however large: a record is never split.
    fn exceeds(&self, used: u64, extra: u64) -> bool {
        let max = self.config.max_file_bytes;
        max > 0 && used > 0 && used + extra > max
    }

    /// Cuts bytes a failed write left past the last complete record.
    fn untear(&mut self) -> io::Result<()> {
        if self.torn
            && let Some(file) = &self.file
        {
            file.set_len(self.len).inspect_err(|_| self.metrics.write_error(Op::Truncate))?;
            self.torn = false;
        }
        Ok(())
    }

    /// Makes the file ready to take a record of `next` bytes.
    fn prepare(&mut self, next: u64) -> io::Result<()> {
        self.untear()?;
        if self.file.is_none() {
            self.reopen()?;
        }
        if self.exceeds(self.len, next) {
            self.rotate()?;
        }
        Ok(())
    }

    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("the samples file is not open"));
        };
        let result = match file.write_all(buf) {
            Err(e) => Err((Op::Write, e)),
            Ok(()) if self.config.fsync == Fsync::Always => {
                self.metrics.fsyncs.inc();
                file.sync_data().map_err(|e| (Op::Fsync, e))
            }
            Ok(()) => Ok(()),
        };
        match result {
            Ok(()) => {
                self.len += buf.len() as u64;
                self.started.get_or_insert_with(SystemTime::now);
                Ok(())
            }
            Err((op, e)) => {
                self.metrics.write_error(op);
                if file.set_len(self.len).is_err() {
                    self.metrics.write_error(Op::Truncate);
                    self.torn = true;
                }
                Err(e)
            }
        }
    }

    /// Moves the full file to `path.1` (older ones up by one, the oldest past `max_files`
    /// deleted) and starts an empty one. Only called between records, and under
    /// [`Fsync::Always`] after the file's last records were synced.
    fn rotate(&mut self) -> io::Result<()> {
        shift(&self.config.path, self.config.max_files).inspect_err(|_| self.metrics.write_error(Op::Rotate))?;
        self.metrics.rotations.inc();
        // The old file is complete under its new name; if no new one can be opened, the next
        // commit tries again.
        self.file = None;
        self.len = 0;
        self.reopen()
    }

    fn reopen(&mut self) -> io::Result<()> {
        let path = &self.config.path;
        let len = cut_torn_tail(path).inspect_err(|_| self.metrics.write_error(Op::Open))?;
        let file = (self.open)(path).inspect_err(|_| self.metrics.write_error(Op::Open))?;
        if self.config.fsync == Fsync::Always {
            // The file's name (new, or renamed by rotation) must survive a crash as well.
            sync_dir(path).inspect_err(|_| self.metrics.write_error(Op::Fsync))?;
        }
        self.file = Some(file);
        self.len = len;
        self.started = (len > 0).then_some(SystemTime::UNIX_EPOCH);
        Ok(())
    }

    /// Enforces `max_age` at `now`: the current file is rotated once its first record is a
    /// segment (a sixth of the age) old, and a rotated file is deleted once its newest record
    /// (its modification time: rotation renames, which keeps it) is older than the age less a
    /// segment and a check interval ([`retention_tick`]): every file spans at most a segment
    /// plus the interval it waited for a check, so no record on disk is older than `max_age`.
    /// Run by the writer with every batch and at least every [`retention_tick`]. Expired files
    /// go first: a rotation that fails (a full disk) does not keep them.
    pub fn expire(&mut self, now: SystemTime) -> io::Result<()> {
        let Some(age) = self.config.max_age else { return Ok(()) };
        let segment = age / AGE_SEGMENTS;
        let old = |t: SystemTime, limit: Duration| now.duration_since(t).is_ok_and(|d| d >= limit);
        let keep_for = age.saturating_sub(segment).saturating_sub(retention_tick(age));
        for n in 1..=self.config.max_files {
            let path = rotated(&self.config.path, n);
            let Ok(modified) = fs::metadata(&path).and_then(|m| m.modified()) else { continue };
            if old(modified, keep_for) {
                if_exists(fs::remove_file(&path))?;
                self.metrics.expired_files.inc();
            }
        }
        if self.len > 0 && self.started.is_some_and(|s| old(s, segment)) {
            self.untear()?;
            self.rotate()?;
        }
        Ok(())
    }
}

/// `path.n`.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn shift(path: &Path, keep: usize) -> io::Result<()> {
    if keep == 0 {
        return fs::remove_file(path);
    }
    if_exists(fs::remove_file(rotated(path, keep)))?;
    for n in (1..keep).rev() {
        if_exists(fs::rename(rotated(path, n), rotated(path, n + 1)))?;
    }
    fs::rename(path, rotated(path, 1))
}

fn if_exists(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// Cuts whatever follows the last newline of `path` (a record torn by a crash) and returns
/// the length kept; 0 when the file does not exist.
fn cut_torn_tail(path: &Path) -> io::Result<u64> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut buf = vec![0; 64 * 1024];
    let (mut end, mut keep) = (len, 0);
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if keep < len {
        tracing::warn!(path = %path.display(), bytes = len - keep, "cutting a torn last line");
        file.set_len(keep)?;
        file.sync_data()?;
    }
    Ok(keep)
}

#[cfg(test)]
pub mod testing {
    //! A real file on a disk that tests can fill up, fail fsync on, and hold fsync on.

    use std::fs::File;
    use std::io::{self, Write};
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};

    use super::{Opener, SegmentFile};

    #[derive(Default)]
    pub struct Disk {
        /// The most a file may hold, like `ulimit -f` (0: no limit).
        pub limit: AtomicU64,
        pub fail_sync: AtomicBool,
        pub fail_open: AtomicBool,
        pub syncs: AtomicUsize,
        /// While true, fsync waits.
        pub hold_sync: Mutex<bool>,
        pub released: Condvar,
    }

    impl Disk {
        pub fn new() -> Arc<Disk> {
            Arc::new(Disk::default())
        }

        pub fn opener(self: &Arc<Self>) -> Opener<FaultyFile> {
            let disk = self.clone();
            Box::new(move |p: &Path| {
                if disk.fail_open.load(Ordering::SeqCst) {
                    return Err(io::Error::other("injected open failure"));
                }
                let file = std::fs::OpenOptions::new().create(true).append(true).open(p)?;
                Ok(FaultyFile { file, disk: disk.clone() })
            })
        }

        pub fn hold(&self, hold: bool) {
            *self.hold_sync.lock().unwrap() = hold;
            self.released.notify_all();
        }
    }

    pub struct FaultyFile {
        file: File,
        disk: Arc<Disk>,
    }

    impl Write for FaultyFile {
        /// As much as fits, then an error: what a full disk or a file-size limit does.
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let limit = self.disk.limit.load(Ordering::SeqCst);
            if limit == 0 {
                return self.file.write(buf);
            }
            let room = limit.saturating_sub(self.file.metadata()?.len());
            if room == 0 {
                return Err(io::ErrorKind::StorageFull.into());
            }
            self.file.write(&buf[..buf.len().min(room as usize)])
        }

        fn flush(&mut self) -> io::Result<()> {
            self.file.flush()
        }
    }

    impl SegmentFile for FaultyFile {
        fn sync_data(&self) -> io::Result<()> {
            self.disk.syncs.fetch_add(1, Ordering::SeqCst);
            let mut held = self.disk.hold_sync.lock().unwrap();
            while *held {
                held = self.disk.released.wait(held).unwrap();
            }
            if self.disk.fail_sync.load(Ordering::SeqCst) {
                return Err(io::Error::other("injected fsync failure"));
            }
            self.file.sync_data()
        }

        fn set_len(&self, len: u64) -> io::Result<()> {
            self.file.set_len(len)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use super::testing::{Disk, FaultyFile};
    use super::{FileConfig, Fsync, Writer, rotated};
    use crate::collector::metrics::Metrics;

    fn config(name: &str, max_file_bytes: u64, max_files: usize) -> FileConfig {
        let dir = switchyard_testkit::scratch(&format!("collector-file-{name}"));
        FileConfig { path: dir.join("samples.jsonl"), fsync: Fsync::Always, max_file_bytes, max_files, max_age: None }
    }

    fn writer(config: &FileConfig) -> (Writer<FaultyFile>, Arc<Disk>, Metrics) {
        let disk = Disk::new();
        let metrics = Metrics::default();
        let w = Writer::open_with(config.clone(), metrics.clone(), disk.opener()).unwrap();
        (w, disk, metrics)
    }

    /// A line of exactly `len` bytes, newline included.
    fn rec(tag: char, len: usize) -> Vec<u8> {
        let mut r = format!("{{\"t\":\"{}\"}}", tag.to_string().repeat(len - 9)).into_bytes();
        r.push(b'\n');
        assert_eq!(r.len(), len);
        r
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    fn cat(rs: &[&[u8]]) -> String {
        String::from_utf8(rs.concat()).unwrap()
    }

    fn dir_files(c: &FileConfig) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> =
            std::fs::read_dir(c.path.parent().unwrap()).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    }

    #[test]
    fn sample_files_are_private_to_the_collectors_user() {
        use std::os::unix::fs::PermissionsExt as _;
        let c = config("private", 0, 5);
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        drop(Writer::open(c.clone(), Metrics::default()).unwrap());
        assert_eq!(mode(&c.path), 0o600, "created private");
        std::fs::set_permissions(&c.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(Writer::open(c.clone(), Metrics::default()).unwrap());
        assert_eq!(mode(&c.path), 0o600, "made private when found readable by others");
    }

    #[test]
    fn with_a_max_age_no_sample_older_than_it_stays_on_disk() {
        use std::time::{Duration, SystemTime};
        let mut c = config("max-age", 0, 5);
        c.max_age = Some(Duration::from_secs(60));
        let metrics = Metrics::default();
        let mut w = Writer::open(c.clone(), metrics.clone()).unwrap();
        let t0 = SystemTime::now();
        assert!(w.commit(&[&rec('a', 20)]).error.is_none());
        // Within a segment (10 s): nothing moves.
        w.expire(t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(dir_files(&c), [c.path.clone()]);
        // A segment old: the file is rotated (its samples stay, they are young enough).
        w.expire(t0 + Duration::from_secs(11)).unwrap();
        assert_eq!(metrics.rotations.get(), 1);
        assert_eq!(read(&rotated(&c.path, 1)), cat(&[&rec('a', 20)]));
        assert!(w.commit(&[&rec('b', 20)]).error.is_none());
        // b's file is a segment old too: rotated; both kept (their samples are under 50 s old).
        w.expire(t0 + Duration::from_secs(30)).unwrap();
        assert_eq!(metrics.rotations.get(), 2);
        assert_eq!(read(&rotated(&c.path, 2)), cat(&[&rec('a', 20)]));
        assert_eq!(read(&rotated(&c.path, 1)), cat(&[&rec('b', 20)]));
        assert_eq!(metrics.expired_files.get(), 0);
        // Their newest samples (the files' modification times) are the age less a segment old:
        // both go, and nothing on disk is older than the age.
        w.expire(t0 + Duration::from_secs(51)).unwrap();
        assert_eq!(metrics.expired_files.get(), 2);
        assert_eq!(dir_files(&c), [c.path.clone()]);
        assert_eq!(read(&c.path), "");
        drop(w);
        // A file found non-empty at start is of unknown age: rotated at the first check.
        let mut w = Writer::open(c.clone(), metrics.clone()).unwrap();
        assert!(w.commit(&[&rec('c', 20)]).error.is_none());
        drop(w);
        let mut w = Writer::open(c.clone(), metrics).unwrap();
        w.expire(SystemTime::now()).unwrap();
        assert_eq!(read(&rotated(&c.path, 1)), cat(&[&rec('c', 20)]));
        // Without a max age nothing is expired.
        let mut c = config("no-max-age", 0, 5);
        c.max_age = None;
        let mut w = Writer::open(c.clone(), Metrics::default()).unwrap();
        assert!(w.commit(&[&rec('d', 20)]).error.is_none());
        w.expire(SystemTime::now() + Duration::from_secs(86_400 * 365)).unwrap();
        assert_eq!(dir_files(&c), [c.path.clone()]);
    }

    #[test]
    fn a_failed_write_is_cut_back_and_the_next_record_starts_on_its_own_line() {
        let c = config("torn", 0, 5);
        let (mut w, disk, m) = writer(&c);
        let (a, b, small) = (rec('a', 10), rec('b', 20), rec('s', 10));
        assert!(w.commit(&[&a]).error.is_none());
        disk.limit.store(25, Ordering::SeqCst);
        // 15 of b's 20 bytes fit: the write is torn, then fails.
        let failed = w.commit(&[&b]);
        assert_eq!(failed.stored, 0);
        assert_eq!(failed.error.unwrap().kind(), std::io::ErrorKind::StorageFull);
        assert_eq!(read(&c.path), cat(&[&a]));
        // What is left still takes a smaller record, cleanly.
        assert!(w.commit(&[&small]).error.is_none());
        assert_eq!(read(&c.path), cat(&[&a, &small]));
        // Space is back: writes resume.
        disk.limit.store(0, Ordering::SeqCst);
        assert!(w.commit(&[&b]).error.is_none());
        assert_eq!(read(&c.path), cat(&[&a, &small, &b]));
        assert_eq!(m.write_errors(super::Op::Write), 1);
        assert_eq!(m.records_written.get(), 3);
    }

    #[test]
    fn a_batch_that_does_not_fit_is_failed_whole() {
        let c = config("batch", 0, 5);
        let (mut w, disk, _) = writer(&c);
        disk.limit.store(25, Ordering::SeqCst);
        // 10 + 10 fit, the third does not: nothing of the batch stays, nothing is acknowledged.
        let r = w.commit(&[&rec('a', 10), &rec('b', 10), &rec('c', 10)]);
        assert_eq!((r.stored, r.error.is_some()), (0, true));
        assert_eq!(read(&c.path), "");
    }

    #[test]
    fn a_failed_fsync_drops_the_records_it_was_to_make_durable() {
        let c = config("fsync", 0, 5);
        let (mut w, disk, m) = writer(&c);
        let (a, b, d) = (rec('a', 10), rec('b', 10), rec('d', 10));
        disk.fail_sync.store(true, Ordering::SeqCst);
        let r = w.commit(&[&a, &b]);
        assert_eq!((r.stored, r.error.is_some()), (0, true));
        assert_eq!(read(&c.path), "", "unsynced records were never acknowledged: they must not stay");
        disk.fail_sync.store(false, Ordering::SeqCst);
        assert!(w.commit(&[&d]).error.is_none());
        assert_eq!(read(&c.path), cat(&[&d]));
        assert_eq!(m.write_errors(super::Op::Fsync), 1);
    }

    #[test]
    fn fsync_never_writes_without_syncing() {
        let mut c = config("never", 0, 5);
        c.fsync = Fsync::Never;
        let (mut w, disk, m) = writer(&c);
        assert!(w.commit(&[&rec('a', 10), &rec('b', 10)]).error.is_none());
        assert_eq!(read(&c.path).lines().count(), 2);
        assert_eq!((disk.syncs.load(Ordering::SeqCst), m.fsyncs.get()), (0, 0));
    }

    #[test]
    fn rotation_happens_before_a_record_that_would_not_fit_and_never_splits_one() {
        let c = config("rotate", 100, 5);
        let (mut w, disk, m) = writer(&c);
        let (a, b, d, e) = (rec('a', 50), rec('b', 50), rec('d', 40), rec('e', 150));
        // Exactly at the limit: no rotation.
        assert_eq!(w.commit(&[&a, &b]).stored, 2);
        assert_eq!(read(&c.path), cat(&[&a, &b]));
        assert!(!rotated(&c.path, 1).exists());
        // One batch across the boundary: a+b move to .1; e, larger than a file may be, gets
        // a file of its own rather than being split.
        assert_eq!(w.commit(&[&d, &e, &d]).stored, 3);
        assert_eq!(read(&rotated(&c.path, 3)), cat(&[&a, &b]));
        assert_eq!(read(&rotated(&c.path, 2)), cat(&[&d]));
        assert_eq!(read(&rotated(&c.path, 1)), cat(&[&e]));
        assert_eq!(read(&c.path), cat(&[&d]));
        assert_eq!(m.rotations.get(), 3);
        // One fsync per run of records in one file (a+b, d, e, d), each before its file was
        // renamed.
        assert_eq!(disk.syncs.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn rotation_keeps_max_files_old_files() {
        let c = config("keep", 10, 2);
        let (mut w, _, _) = writer(&c);
        let recs: Vec<Vec<u8>> = "abcdef".chars().map(|t| rec(t, 10)).collect();
        for r in &recs {
            assert!(w.commit(&[r]).error.is_none());
        }
        assert_eq!(dir_files(&c), vec![c.path.clone(), rotated(&c.path, 1), rotated(&c.path, 2)]);
        assert_eq!(read(&c.path), cat(&[&recs[5]]));
        assert_eq!(read(&rotated(&c.path, 1)), cat(&[&recs[4]]));
        assert_eq!(read(&rotated(&c.path, 2)), cat(&[&recs[3]]));
    }

    #[test]
    fn max_files_zero_keeps_no_old_file() {
        let c = config("keep0", 10, 0);
        let (mut w, _, _) = writer(&c);
        let (a, b) = (rec('a', 10), rec('b', 10));
        assert!(w.commit(&[&a, &b]).error.is_none());
        assert_eq!(dir_files(&c), vec![c.path.clone()]);
        assert_eq!(read(&c.path), cat(&[&b]));
    }

    #[test]
    fn a_failed_reopen_after_rotation_keeps_earlier_records_and_recovers_on_the_next_commit() {
        let c = config("reopen", 10, 3);
        let (mut w, disk, _) = writer(&c);
        let (a, b, d) = (rec('a', 10), rec('b', 10), rec('d', 10));
        assert!(w.commit(&[&a]).error.is_none());
        disk.fail_open.store(true, Ordering::SeqCst);
        let r = w.commit(&[&b]);
        assert_eq!((r.stored, r.error.is_some()), (0, true));
        assert_eq!(read(&rotated(&c.path, 1)), cat(&[&a]));
        disk.fail_open.store(false, Ordering::SeqCst);
        assert!(w.commit(&[&d]).error.is_none());
        assert_eq!(read(&c.path), cat(&[&d]));
        assert_eq!(read(&rotated(&c.path, 1)), cat(&[&a]));
    }

    #[test]
    fn a_tail_torn_by_a_crash_is_cut_when_the_file_is_opened() {
        let c = config("crash", 0, 5);
        let a = rec('a', 10);
        std::fs::write(&c.path, [a.as_slice(), b"{\"torn\":"].concat()).unwrap();
        let (mut w, _, _) = writer(&c);
        let b = rec('b', 10);
        assert!(w.commit(&[&b]).error.is_none());
        assert_eq!(read(&c.path), cat(&[&a, &b]));
        // A file that is nothing but a torn line is emptied.
        std::fs::write(&c.path, b"{\"torn\":").unwrap();
        drop(w);
        let (mut w, _, _) = writer(&c);
        assert!(w.commit(&[&b]).error.is_none());
        assert_eq!(read(&c.path), cat(&[&b]));
    }
}
