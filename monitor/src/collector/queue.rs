//! Between the HTTP handlers and the file: a queue bounded in samples and in bytes, and the
//! one writer thread that drains it. File I/O and fsync block, so they stay off the async
//! runtime; a full queue refuses at once rather than growing memory.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::SystemTime;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc, oneshot};

use super::file::{SegmentFile, Writer};
use super::metrics::{Metrics, Reason};

/// Why a stored sample is not in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The disk, a quota or a file-size limit is full.
    #[error("no space left to store samples")]
    Full,
    #[error("samples cannot be stored")]
    Io,
}

impl From<&io::Error> for StoreError {
    fn from(e: &io::Error) -> Self {
        use io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
        match e.kind() {
            StorageFull | FileTooLarge | QuotaExceeded => StoreError::Full,
            _ => StoreError::Io,
        }
    }
}

/// The answer for one sample: sent once its batch is in the file (and synced), or failed.
pub type Outcome = Result<(), StoreError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    Full,
    Closed,
}

/// A sample on its way to the file.
pub struct Job {
    line: Vec<u8>,
    done: oneshot::Sender<Outcome>,
    /// Its bytes of the queue's budget, given back when the job is finished.
    _budget: OwnedSemaphorePermit,
}

/// The handlers' end of the queue.
pub struct Queue {
    jobs: mpsc::Sender<Job>,
    budget: Arc<Semaphore>,
    max_bytes: usize,
}

/// A queue of at most `max_records` samples and `max_bytes` bytes (both at least 1, and
/// `max_bytes` at most `u32::MAX`: `Config::validate` checks).
pub fn bounded(max_records: usize, max_bytes: usize) -> (Queue, mpsc::Receiver<Job>) {
    let (jobs, rx) = mpsc::channel(max_records);
    (Queue { jobs, budget: Arc::new(Semaphore::new(max_bytes)), max_bytes }, rx)
}

impl Queue {
    /// Queues `line` without waiting; the receiver gets its outcome.
    pub fn try_push(&self, line: Vec<u8>) -> Result<oneshot::Receiver<Outcome>, PushError> {
        let n = u32::try_from(line.len()).map_err(|_| PushError::Full)?;
        let budget = self.budget.clone().try_acquire_many_owned(n).map_err(|e| match e {
            TryAcquireError::NoPermits => PushError::Full,
            TryAcquireError::Closed => PushError::Closed,
        })?;
        let (done, outcome) = oneshot::channel();
        self.jobs.try_send(Job { line, done, _budget: budget }).map_err(|e| match e {
            TrySendError::Full(_) => PushError::Full,
            TrySendError::Closed(_) => PushError::Closed,
        })?;
        Ok(outcome)
    }

    /// Samples waiting for the writer.
    pub fn depth(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    /// Bytes of samples waiting for or being written by the writer.
    pub fn bytes(&self) -> usize {
        self.max_bytes.saturating_sub(self.budget.available_permits())
    }
}

/// Starts the writer thread; it stops once every [`Queue`] is dropped and the queue drained.
pub fn spawn_writer<F: SegmentFile + Send + 'static>(
    writer: Writer<F>,
    jobs: mpsc::Receiver<Job>,
    metrics: Metrics,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("samples-writer".into()).spawn(move || write_loop(writer, jobs, &metrics))
}

fn write_loop<F: SegmentFile>(mut writer: Writer<F>, mut jobs: mpsc::Receiver<Job>, metrics: &Metrics) {
    let limit = jobs.max_capacity();
    let mut batch = Vec::with_capacity(limit);
    let mut failing = false;
    // Group commit: whatever queued up while the last batch was being synced goes down in
    // one write and one fsync.
    while jobs.blocking_recv_many(&mut batch, limit) > 0 {
        // Nobody waits for these any more, and the filter has counted them as failed.
        // An empty line is no sample: the retention tick, which only wakes the writer.
        batch.retain(|job| {
            let waiting = !job.done.is_closed() || job.line.is_empty();
            if !waiting {
                metrics.reject(Reason::ClientGone);
            }
            waiting
        });
        if let Err(e) = writer.expire(SystemTime::now()) {
            tracing::warn!(error = %e, "could not expire old samples files; trying again with the next batch");
        }
        let (ticks, samples): (Vec<Job>, Vec<Job>) = batch.drain(..).partition(|job| job.line.is_empty());
        drop(ticks);
        batch = samples;
        let lines: Vec<&[u8]> = batch.iter().map(|job| job.line.as_slice()).collect();
        let commit = writer.commit(&lines);
        let failure = commit.error.as_ref().map(StoreError::from);
        // Logged on change only: a full disk fails every batch until space is back.
        match &commit.error {
            Some(e) if !failing => {
                tracing::error!(error = %e, "cannot store samples; refusing them until writes succeed again");
                failing = true;
            }
            None if failing => {
                tracing::info!("storing samples again");
                failing = false;
            }
            _ => {}
        }
        for (i, job) in batch.drain(..).enumerate() {
            let outcome = match failure {
                Some(f) if i >= commit.stored => Err(f),
                _ => Ok(()),
            };
            // A client that left meanwhile misses its answer; its sample is stored anyway.
            let _ = job.done.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use tokio::sync::oneshot::error::TryRecvError;

    use super::{PushError, StoreError, bounded, spawn_writer};
    use crate::collector::file::testing::Disk;
    use crate::collector::file::{FileConfig, Fsync, Writer};
    use crate::collector::metrics::{Metrics, Reason};

    fn file(name: &str) -> FileConfig {
        let dir = switchyard_testkit::scratch(&format!("collector-queue-{name}"));
        FileConfig {
            path: dir.join("samples.jsonl"),
            fsync: Fsync::Always,
            max_file_bytes: 0,
            max_files: 1,
            max_age: None,
        }
    }

    fn line(s: &str) -> Vec<u8> {
        format!("{s}\n").into_bytes()
    }

    #[test]
    fn a_full_queue_refuses_by_count_and_by_bytes() {
        let (q, _jobs) = bounded(1, 100);
        let _pending = q.try_push(line("{}")).unwrap();
        assert_eq!(q.try_push(line("{}")).unwrap_err(), PushError::Full);
        assert_eq!((q.depth(), q.bytes()), (1, 3));
        let (q, _jobs) = bounded(10, 5);
        assert_eq!(q.try_push(line("{\"a\":1}")).unwrap_err(), PushError::Full);
        let (q, jobs) = bounded(10, 100);
        drop(jobs);
        assert_eq!(q.try_push(line("{}")).unwrap_err(), PushError::Closed);
    }

    #[test]
    fn group_commit_acknowledges_a_batch_only_after_its_one_fsync() {
        let c = file("group");
        let disk = Disk::new();
        let writer = Writer::open_with(c.clone(), Metrics::default(), disk.opener()).unwrap();
        let (q, jobs) = bounded(16, 1 << 20);
        // Queued before the writer starts, so they form one batch.
        let mut acks: Vec<_> = (0..3).map(|i| q.try_push(line(&format!("{{\"i\":{i}}}"))).unwrap()).collect();
        disk.hold(true);
        let handle = spawn_writer(writer, jobs, Metrics::default()).unwrap();
        let start = Instant::now();
        while disk.syncs.load(Ordering::SeqCst) == 0 {
            assert!(start.elapsed() < Duration::from_secs(10), "the writer never synced");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Written, fsync under way: not acknowledged yet.
        assert_eq!(std::fs::read_to_string(&c.path).unwrap().lines().count(), 3);
        std::thread::sleep(Duration::from_millis(50));
        for ack in &mut acks {
            assert_eq!(ack.try_recv().unwrap_err(), TryRecvError::Empty);
        }
        disk.hold(false);
        for ack in acks {
            assert_eq!(ack.blocking_recv().unwrap(), Ok(()));
        }
        assert_eq!(disk.syncs.load(Ordering::SeqCst), 1);
        drop(q);
        handle.join().unwrap();
    }

    #[test]
    fn a_full_disk_fails_the_batch_with_full_and_later_samples_are_stored() {
        let c = file("full");
        let disk = Disk::new();
        let metrics = Metrics::default();
        let writer = Writer::open_with(c.clone(), metrics.clone(), disk.opener()).unwrap();
        let (q, jobs) = bounded(16, 1 << 20);
        let handle = spawn_writer(writer, jobs, metrics.clone()).unwrap();
        disk.limit.store(20, Ordering::SeqCst);
        let big = q.try_push(line(&format!("{{\"big\":\"{}\"}}", "x".repeat(30)))).unwrap();
        assert_eq!(big.blocking_recv().unwrap(), Err(StoreError::Full));
        let small = q.try_push(line("{\"s\":1}")).unwrap();
        assert_eq!(small.blocking_recv().unwrap(), Ok(()));
        assert_eq!(std::fs::read_to_string(&c.path).unwrap(), "{\"s\":1}\n");
        assert_eq!(metrics.records_written.get(), 1);
        drop(q);
        handle.join().unwrap();
    }

    #[test]
    fn samples_whose_client_left_are_not_written() {
        let c = file("gone");
        let metrics = Metrics::default();
        let writer = Writer::open(c.clone(), metrics.clone()).unwrap();
        let (q, jobs) = bounded(16, 1 << 20);
        drop(q.try_push(line("{\"gone\":1}")).unwrap());
        let kept = q.try_push(line("{\"kept\":1}")).unwrap();
        let handle = spawn_writer(writer, jobs, metrics.clone()).unwrap();
        assert_eq!(kept.blocking_recv().unwrap(), Ok(()));
        assert_eq!(std::fs::read_to_string(&c.path).unwrap(), "{\"kept\":1}\n");
        assert_eq!(metrics.rejected(Reason::ClientGone), 1);
        drop(q);
        handle.join().unwrap();
    }
}
