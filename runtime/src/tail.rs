//! Reading files that other processes write: [`Follow`] follows an appended, rotated file line
//! by line; [`last_lines`] reads the end of a file once.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Follows a line-oriented file another process appends to and rotates (renames it away and
/// starts a new one), such as the collector's JSONL samples: reads to the end, and at the end checks whether the path now names another file
/// (or a shorter one) — then reads what is left of the old one and moves to the new.
pub struct Follow {
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    offset: u64,
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts.
    start: usize,
    max_line: usize,
    /// Inside a line longer than `max_line`: dropping bytes up to its end.
    discarding: bool,
    /// Where the first file is entered: from its start, or this many bytes before its end.
    near_end: Option<u64>,
}

/// What a poll found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Polled {
    pub lines: usize,
    pub oversized: usize,
}

impl Follow {
    /// Reads `path` from its start; lines longer than `max_line` bytes are skipped and counted.
    pub fn new(path: PathBuf, max_line: usize) -> Follow {
        Follow {
            path,
            file: None,
            inode: 0,
            offset: 0,
            buf: Vec::new(),
            start: 0,
            max_line,
            discarding: false,
            near_end: None,
        }
    }

    /// Reads the first file from `bytes` before its end (from its first whole line there),
    /// for a reader that wants what is recent, not the whole history; rotated files are then
    /// read from their start as usual.
    pub fn near_end(mut self, bytes: u64) -> Follow {
        self.near_end = Some(bytes);
        self
    }

    /// Reads up to `budget` complete lines and hands each to `f`.
    pub fn poll(&mut self, budget: usize, mut f: impl FnMut(&str)) -> std::io::Result<Polled> {
        let mut polled = Polled::default();
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(file) => {
                    self.switch_to(file)?;
                    if let Some(back) = self.near_end.take() {
                        self.skip_to_near_end(back)?;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(polled),
                Err(e) => return Err(e),
            }
        }
        let mut chunk = vec![0u8; 256 * 1024];
        // Set once the path names another file: the old one is read to its end first.
        let mut moved = false;
        while polled.lines < budget {
            // Lines already in the buffer first.
            if let Some(pos) = self.buf[self.start..].iter().position(|b| *b == b'\n') {
                let (from, to) = (self.start, self.start + pos);
                self.start = to + 1;
                if std::mem::take(&mut self.discarding) {
                    continue;
                }
                if to - from > self.max_line {
                    polled.oversized += 1;
                    continue;
                }
                match std::str::from_utf8(&self.buf[from..to]) {
                    Ok(s) if !s.trim().is_empty() => f(s),
                    Ok(_) => {}
                    Err(_) => f("\u{0}not utf-8"),
                }
                polled.lines += 1;
                continue;
            }
            // No whole line left: keep only the partial one, and not past the line cap.
            self.buf.drain(..self.start);
            self.start = 0;
            if self.buf.len() > self.max_line {
                self.buf.clear();
                if !self.discarding {
                    polled.oversized += 1;
                }
                self.discarding = true;
            }
            let Some(file) = &mut self.file else { break };
            let n = file.read(&mut chunk)?;
            if n > 0 {
                self.offset += n as u64;
                self.buf.extend_from_slice(&chunk[..n]);
                continue;
            }
            if !moved {
                // At the end: has the file been rotated (renamed away) or truncated?
                moved = match std::fs::metadata(&self.path) {
                    Ok(m) => m.ino() != self.inode || m.size() < self.offset,
                    Err(_) => false,
                };
                if moved {
                    // What reached the old file before the rename: read it to its end.
                    continue;
                }
                break;
            }
            // The old file is done; a partial last line goes with it (the collector writes
            // whole lines).
            self.switch_to(File::open(&self.path)?)?;
            moved = false;
        }
        Ok(polled)
    }

    fn skip_to_near_end(&mut self, back: u64) -> std::io::Result<()> {
        let Some(file) = &mut self.file else { return Ok(()) };
        let len = file.metadata()?.len();
        let from = len.saturating_sub(back);
        if from > 0 {
            file.seek(SeekFrom::Start(from))?;
            self.offset = from;
            // Entered mid-line: that line's rest is dropped, not counted as oversized.
            self.discarding = true;
        }
        Ok(())
    }

    fn switch_to(&mut self, file: File) -> std::io::Result<()> {
        self.inode = file.metadata()?.ino();
        self.file = Some(file);
        self.offset = 0;
        self.buf.clear();
        self.start = 0;
        self.discarding = false;
        Ok(())
    }
}

/// The whole lines in the last `max` bytes of a file (from the first line that starts there).
pub fn last_lines(path: &Path, max: u64) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(max);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    Ok(if start > 0 { text.split_once('\n').map_or("", |(_, rest)| rest).to_owned() } else { text.into_owned() })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn lines(tail: &mut Follow) -> (Vec<String>, usize) {
        let mut got = Vec::new();
        let polled = tail.poll(1000, |l| got.push(l.to_owned())).unwrap();
        (got, polled.oversized)
    }

    #[test]
    fn the_tail_waits_for_whole_lines_skips_long_ones_and_follows_a_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("s.jsonl");
        let mut tail = Follow::new(path.clone(), 64);
        assert_eq!(lines(&mut tail), (vec![], 0), "no file yet: nothing, no error");
        let mut f = std::fs::File::create(&path).unwrap();
        write!(f, "a\nb\npart").unwrap();
        assert_eq!(lines(&mut tail).0, ["a", "b"]);
        write!(f, "ial\n{}\nc\n", "x".repeat(200)).unwrap();
        assert_eq!(lines(&mut tail), (vec!["partial".to_owned(), "c".to_owned()], 1));
        // Rotation: a last line reaches the old file, then it is renamed and a new one begun.
        writeln!(f, "d").unwrap();
        std::fs::rename(&path, dir.join("s.jsonl.1")).unwrap();
        let mut g = std::fs::File::create(&path).unwrap();
        writeln!(g, "e").unwrap();
        assert_eq!(lines(&mut tail).0, ["d", "e"]);
        writeln!(g, "f").unwrap();
        assert_eq!(lines(&mut tail).0, ["f"]);
        // Truncated in place (copytruncate): read again from the start.
        drop(g);
        std::fs::write(&path, "g\n").unwrap();
        assert_eq!(lines(&mut tail).0, ["g"]);
    }

    #[test]
    fn near_end_starts_at_the_first_whole_line_in_the_last_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.jsonl");
        std::fs::write(&path, "first line\nsecond\nthird\n").unwrap();
        let mut tail = Follow::new(path.clone(), 64).near_end(10);
        assert_eq!(lines(&mut tail), (vec!["third".to_owned()], 0));
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"fourth\n").unwrap();
        assert_eq!(lines(&mut tail).0, ["fourth"]);
        let mut whole = Follow::new(path, 64).near_end(1000);
        assert_eq!(lines(&mut whole).0, ["first line", "second", "third", "fourth"]);
    }

    #[test]
    fn last_lines_drops_the_cut_first_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("e.jsonl");
        std::fs::write(&path, "aaaa\nbb\ncc\n").unwrap();
        assert_eq!(last_lines(&path, 5).unwrap(), "cc\n");
        assert_eq!(last_lines(&path, 100).unwrap(), "aaaa\nbb\ncc\n");
    }
}
