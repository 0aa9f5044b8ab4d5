//! The dynamic batcher of one model version.
//!
//! Requests wait in a bounded queue. A batch closes when it holds `max_batch_size` rows, when
//! the *first* queued request has waited `max_queue_delay`, or when waiting longer would let a
//! queued request's deadline pass; it is only cut when an engine instance is idle, so
//! everything that arrived while the engine was busy joins it. Entries whose deadline passed
//! or whose client went away are dropped before compute.
//!
//! `QueueState` holds the rules and is tested with paused time; `run_batcher` is the task that
//! applies them; the engine side lives in `engine.rs`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

use crate::config::BatchingPolicy;
use crate::metrics::VersionMetrics;
use crate::tensor::TensorData;

/// One tensor of a batch (or of a batch's result): `shape[0]` is the row count.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchTensor {
    pub shape: Vec<i64>,
    pub data: TensorData,
}

/// What a request gets back: its rows of the batch's outputs, shared, not copied.
#[derive(Clone, Debug)]
pub struct InferOutput {
    pub outputs: Arc<[BatchTensor]>,
    pub row_start: usize,
    pub rows: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// The deadline passed before compute started.
    Expired,
    /// The engine failed the whole batch.
    Engine(String),
    /// No engine instance is left to serve the request.
    EngineLost,
}

pub type Reply = oneshot::Sender<Result<InferOutput, BatchError>>;

/// A validated request waiting for a batch.
#[derive(Debug)]
pub struct Pending {
    /// One buffer per model input, in the model config's order.
    pub inputs: Vec<TensorData>,
    pub rows: usize,
    pub arrival: Instant,
    pub deadline: Instant,
    pub reply: Reply,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Nothing queued; `closed` says whether more can come.
    Empty {
        closed: bool,
    },
    Ready,
    /// The batch is not full: wait until then (the first arrival's delay ends) or a push.
    WaitUntil(Instant),
}

/// tokio's timer fires on whole milliseconds and rounds a wake-up up, never down, while a
/// request counts as expired from its deadline on. Aiming one tick early is what makes the
/// batcher wake while the request can still be served.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// A cut batch plus what was dropped while cutting it.
#[derive(Debug, Default)]
pub struct Taken {
    pub batch: Vec<Pending>,
    pub expired: u64,
    pub cancelled: u64,
}

#[derive(Debug)]
pub enum PushError {
    Full {
        capacity: usize,
    },
    /// More rows than a batch holds: `take_batch` could never cut it, and it would block every
    /// request behind it.
    TooLarge {
        rows: usize,
        max_batch_size: usize,
    },
    Closed,
}

#[derive(Debug)]
pub struct QueueState {
    entries: VecDeque<Pending>,
    rows: usize,
    closed: bool,
    policy: BatchingPolicy,
}

impl QueueState {
    pub fn new(policy: BatchingPolicy) -> Self {
        QueueState { entries: VecDeque::new(), rows: 0, closed: false, policy }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Admission control: fails fast when `max_queue_size` requests already wait. An oversized
    /// request is refused first: retrying it later cannot help.
    pub fn push(&mut self, p: Pending) -> Result<(), (PushError, Pending)> {
        if p.rows > self.policy.max_batch_size {
            return Err((PushError::TooLarge { rows: p.rows, max_batch_size: self.policy.max_batch_size }, p));
        }
        if self.closed {
            return Err((PushError::Closed, p));
        }
        if self.entries.len() >= self.policy.max_queue_size {
            return Err((PushError::Full { capacity: self.policy.max_queue_size }, p));
        }
        self.rows += p.rows;
        self.entries.push_back(p);
        Ok(())
    }

    /// No more pushes; what is queued is still served, without waiting for the delay.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Takes everything queued out, for answering when no engine is left to serve it.
    pub fn drain(&mut self) -> VecDeque<Pending> {
        self.rows = 0;
        std::mem::take(&mut self.entries)
    }

    pub fn readiness(&self, now: Instant) -> Readiness {
        let Some(first) = self.entries.front() else {
            return Readiness::Empty { closed: self.closed };
        };
        if self.closed || self.rows >= self.policy.max_batch_size {
            return Readiness::Ready;
        }
        // The batch is not full, so every queued entry would be in it. Dead ones are left out:
        // they are dropped at the cut anyway and must not hurry the others.
        let due = self
            .entries
            .iter()
            .filter(|p| now < p.deadline && !p.reply.is_closed())
            .map(|p| p.deadline.checked_sub(TIMER_TICK).unwrap_or(p.deadline))
            .fold(first.arrival + self.policy.max_queue_delay, Instant::min);
        if now >= due { Readiness::Ready } else { Readiness::WaitUntil(due) }
    }

    /// Cuts the next batch: whole requests in arrival order up to `max_batch_size` rows.
    /// Requests past their deadline are answered `Expired` and ones whose client left are
    /// discarded; neither takes a place in the batch.
    pub fn take_batch(&mut self, now: Instant) -> Taken {
        let mut taken = Taken::default();
        let mut rows = 0;
        while let Some(front) = self.entries.front() {
            let dead = now >= front.deadline || front.reply.is_closed();
            if !dead && rows + front.rows > self.policy.max_batch_size {
                break;
            }
            let Some(p) = self.entries.pop_front() else {
                break;
            };
            self.rows -= p.rows;
            // Expiry first: a handler that timed out has also dropped its receiver, and that
            // request counts as expired, not as a client that left.
            if now >= p.deadline {
                taken.expired += 1;
                let _ = p.reply.send(Err(BatchError::Expired));
            } else if p.reply.is_closed() {
                taken.cancelled += 1;
            } else {
                rows += p.rows;
                taken.batch.push(p);
            }
        }
        taken
    }
}

/// A batch handed to an engine instance; dropping `permit` marks the instance idle again.
pub struct Work {
    pub batch: Vec<Pending>,
    pub permit: OwnedSemaphorePermit,
}

/// The queue shared by request handlers and the batcher task.
pub struct Queue {
    state: Mutex<QueueState>,
    notify: Notify,
    metrics: VersionMetrics,
}

impl Queue {
    pub fn new(policy: BatchingPolicy, metrics: VersionMetrics) -> Arc<Self> {
        Arc::new(Queue { state: Mutex::new(QueueState::new(policy)), notify: Notify::new(), metrics })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // A panic while holding the lock cannot leave the queue half-updated (every method
        // finishes its bookkeeping before anything that can panic), so poison is ignored.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn push(&self, p: Pending) -> Result<(), PushError> {
        let mut s = self.lock();
        match s.push(p) {
            Ok(()) => {
                self.metrics.queue_depth.set(s.len() as i64);
                drop(s);
                self.notify.notify_one();
                Ok(())
            }
            Err((e, _)) => {
                if matches!(e, PushError::Full { .. }) {
                    self.metrics.dropped_queue_full.inc();
                }
                Err(e)
            }
        }
    }

    pub fn close(&self) {
        self.lock().close();
        self.notify.notify_one();
    }

    /// Closes the queue and answers everything in it with `EngineLost`; returns how many.
    pub fn fail_all(&self) -> usize {
        let drained = {
            let mut s = self.lock();
            s.close();
            self.metrics.queue_depth.set(0);
            s.drain()
        };
        self.notify.notify_one();
        let n = drained.len();
        for p in drained {
            let _ = p.reply.send(Err(BatchError::EngineLost));
        }
        n
    }
}

/// Forms batches until the queue is closed and drained. `idle` holds one permit per idle
/// engine instance; each batch is sent with one, and the engine releases it when done.
pub async fn run_batcher(queue: Arc<Queue>, idle: Arc<Semaphore>, work: std::sync::mpsc::Sender<Work>) {
    loop {
        // Wait until a batch is due.
        loop {
            let notified = queue.notify.notified();
            let readiness = queue.lock().readiness(Instant::now());
            match readiness {
                Readiness::Ready => break,
                Readiness::Empty { closed: true } => return,
                Readiness::Empty { closed: false } => notified.await,
                Readiness::WaitUntil(due) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(due) => {}
                    }
                }
            }
        }
        // Requests keep joining while every instance is busy.
        let Ok(permit) = idle.clone().acquire_owned().await else {
            return;
        };
        let taken = {
            let mut s = queue.lock();
            let t = s.take_batch(Instant::now());
            queue.metrics.queue_depth.set(s.len() as i64);
            t
        };
        queue.metrics.dropped_expired.inc_by(taken.expired);
        // Abandoned entries are counted where the client's handler is dropped (server.rs).
        if taken.batch.is_empty() {
            continue;
        }
        if let Err(std::sync::mpsc::SendError(w)) = work.send(Work { batch: taken.batch, permit }) {
            // Every engine instance is gone: answer instead of leaving requests hanging.
            for p in w.batch {
                let _ = p.reply.send(Err(BatchError::EngineLost));
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn policy(max_batch: usize, delay_ms: u64, cap: usize) -> BatchingPolicy {
        BatchingPolicy {
            max_batch_size: max_batch,
            max_queue_delay: Duration::from_millis(delay_ms),
            max_queue_size: cap,
            default_timeout: Duration::from_secs(10),
        }
    }

    type Rx = oneshot::Receiver<Result<InferOutput, BatchError>>;

    fn pending(rows: usize, timeout: Duration) -> (Pending, Rx) {
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        let p = Pending {
            inputs: vec![TensorData::F32(vec![rows as f32; rows])],
            rows,
            arrival: now,
            deadline: now + timeout,
            reply: tx,
        };
        (p, rx)
    }

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn delay_counts_from_the_first_arrival_not_from_polling() {
        let mut q = QueueState::new(policy(8, 10, 100));
        let t0 = Instant::now();
        let (a, _ra) = pending(1, LONG);
        q.push(a).unwrap();
        tokio::time::advance(Duration::from_millis(6)).await;
        let (b, _rb) = pending(1, LONG);
        q.push(b).unwrap();
        // The second arrival does not restart the clock.
        assert_eq!(q.readiness(Instant::now()), Readiness::WaitUntil(t0 + Duration::from_millis(10)));
        tokio::time::advance(Duration::from_millis(4)).await;
        assert_eq!(q.readiness(Instant::now()), Readiness::Ready);
        assert_eq!(q.take_batch(Instant::now()).batch.len(), 2);
        assert_eq!(q.readiness(Instant::now()), Readiness::Empty { closed: false });
    }

    #[tokio::test(start_paused = true)]
    async fn full_batch_is_ready_at_once_and_rows_not_requests_are_packed() {
        let mut q = QueueState::new(policy(8, 1000, 100));
        let mut rxs = Vec::new();
        for rows in [3, 4, 2, 1] {
            let (p, rx) = pending(rows, LONG);
            q.push(p).unwrap();
            rxs.push(rx);
        }
        assert_eq!(q.readiness(Instant::now()), Readiness::Ready);
        let first = q.take_batch(Instant::now());
        // 3 + 4 = 7 rows; the 2-row request would overflow 8, so it waits for the next batch.
        assert_eq!(first.batch.iter().map(|p| p.rows).collect::<Vec<_>>(), [3, 4]);
        let second = q.take_batch(Instant::now());
        assert_eq!(second.batch.iter().map(|p| p.rows).collect::<Vec<_>>(), [2, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn admission_control_rejects_when_full() {
        let mut q = QueueState::new(policy(8, 10, 2));
        let (a, _ra) = pending(1, LONG);
        let (b, _rb) = pending(1, LONG);
        let (c, _rc) = pending(1, LONG);
        q.push(a).unwrap();
        q.push(b).unwrap();
        assert!(matches!(q.push(c), Err((PushError::Full { capacity: 2 }, _))));
        q.close();
        let (d, _rd) = pending(1, LONG);
        assert!(matches!(q.push(d), Err((PushError::Closed, _))));
        // Closing serves what is queued without waiting for the delay.
        assert_eq!(q.readiness(Instant::now()), Readiness::Ready);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_and_abandoned_requests_are_dropped_before_compute() {
        let mut q = QueueState::new(policy(8, 10, 100));
        let (short, rshort) = pending(1, Duration::from_millis(5));
        let (gone, rgone) = pending(1, LONG);
        let (ok, _rok) = pending(2, LONG);
        q.push(short).unwrap();
        q.push(gone).unwrap();
        q.push(ok).unwrap();
        drop(rgone);
        tokio::time::advance(Duration::from_millis(10)).await;
        let t = q.take_batch(Instant::now());
        assert_eq!((t.expired, t.cancelled), (1, 1));
        assert_eq!(t.batch.iter().map(|p| p.rows).collect::<Vec<_>>(), [2]);
        assert_eq!(rshort.await.unwrap().unwrap_err(), BatchError::Expired);
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn dead_entries_do_not_block_a_batch_behind_them() {
        let mut q = QueueState::new(policy(4, 10, 100));
        let (big, rbig) = pending(4, LONG);
        let (small, _rs) = pending(2, LONG);
        q.push(big).unwrap();
        q.push(small).unwrap();
        drop(rbig);
        let t = q.take_batch(Instant::now());
        assert_eq!(t.cancelled, 1);
        assert_eq!(t.batch.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_sooner_than_the_delay_cuts_the_batch_while_it_can_be_served() {
        let ms = Duration::from_millis;
        let mut q = QueueState::new(policy(8, 50, 100));
        let t0 = Instant::now();
        let (patient, _rp) = pending(1, LONG);
        q.push(patient).unwrap();
        tokio::time::advance(ms(10)).await;
        // Due at t0 + 30 ms, long before the first arrival's delay ends at t0 + 50 ms.
        let (urgent, _ru) = pending(1, ms(20));
        q.push(urgent).unwrap();
        assert_eq!(q.readiness(Instant::now()), Readiness::WaitUntil(t0 + ms(29)));
        tokio::time::advance(ms(19)).await;
        assert_eq!(q.readiness(Instant::now()), Readiness::Ready);
        // Cut before the deadline, so the urgent request goes to compute, not to expiry.
        let t = q.take_batch(Instant::now());
        assert_eq!((t.batch.len(), t.expired), (2, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn dead_entries_do_not_hurry_the_batch() {
        let ms = Duration::from_millis;
        let mut q = QueueState::new(policy(8, 50, 100));
        let t0 = Instant::now();
        let (gone, rgone) = pending(1, ms(5));
        let (expired, _re) = pending(1, ms(10));
        let (ok, _rok) = pending(1, LONG);
        q.push(gone).unwrap();
        q.push(expired).unwrap();
        q.push(ok).unwrap();
        drop(rgone);
        tokio::time::advance(ms(10)).await;
        assert_eq!(q.readiness(Instant::now()), Readiness::WaitUntil(t0 + ms(50)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_larger_than_a_batch_is_refused_at_enqueue() {
        let mut q = QueueState::new(policy(4, 10, 100));
        let (big, _rbig) = pending(5, LONG);
        assert!(matches!(q.push(big), Err((PushError::TooLarge { rows: 5, max_batch_size: 4 }, _))));
        let (fits, _rfits) = pending(4, LONG);
        q.push(fits).unwrap();
        assert_eq!(q.readiness(Instant::now()), Readiness::Ready);
        assert_eq!(q.take_batch(Instant::now()).batch.len(), 1);
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn fail_all_closes_and_answers_everything_queued() {
        let queue = Queue::new(policy(8, 10, 100), VersionMetrics::detached());
        let (a, ra) = pending(1, LONG);
        let (b, rb) = pending(1, LONG);
        queue.push(a).unwrap();
        queue.push(b).unwrap();
        assert_eq!(queue.fail_all(), 2);
        for r in [ra, rb] {
            assert_eq!(r.await.unwrap().unwrap_err(), BatchError::EngineLost);
        }
        let (c, _rc) = pending(1, LONG);
        assert!(matches!(queue.push(c), Err(PushError::Closed)));
        assert_eq!(queue.metrics.queue_depth.get(), 0);
    }

    /// The batcher task end to end against a channel standing in for the engine.
    #[tokio::test(start_paused = true)]
    async fn batcher_waits_for_the_delay_then_cuts_one_batch() {
        let queue = Queue::new(policy(8, 10, 100), VersionMetrics::detached());
        let idle = Arc::new(Semaphore::new(1));
        let (tx, rx) = std::sync::mpsc::channel();
        let task = tokio::spawn(run_batcher(queue.clone(), idle.clone(), tx));
        let t0 = Instant::now();
        let mut rxs = Vec::new();
        for _ in 0..3 {
            let (p, r) = pending(1, LONG);
            queue.push(p).unwrap();
            rxs.push(r);
            tokio::time::advance(Duration::from_millis(2)).await;
        }
        // Not yet due: nothing has been sent.
        assert!(rx.try_recv().is_err());
        tokio::time::sleep_until(t0 + Duration::from_millis(11)).await;
        let work = rx.try_recv().expect("a batch after the delay");
        assert_eq!(work.batch.len(), 3);
        assert_eq!(idle.available_permits(), 0);
        drop(work);
        queue.close();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn batcher_does_not_wait_out_the_delay_past_a_queued_deadline() {
        let queue = Queue::new(policy(8, 1000, 100), VersionMetrics::detached());
        let idle = Arc::new(Semaphore::new(1));
        let (tx, rx) = std::sync::mpsc::channel();
        let task = tokio::spawn(run_batcher(queue.clone(), idle.clone(), tx));
        let (p, mut r) = pending(1, Duration::from_millis(20));
        let deadline = p.deadline;
        queue.push(p).unwrap();
        tokio::time::sleep_until(deadline).await;
        let work = rx.try_recv().expect("a batch before the deadline, not after the 1 s delay");
        assert_eq!(work.batch.len(), 1);
        assert!(r.try_recv().is_err(), "not answered as expired");
        drop(work);
        queue.close();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn while_the_engine_is_busy_arrivals_join_the_next_batch() {
        let queue = Queue::new(policy(64, 1, 100), VersionMetrics::detached());
        let idle = Arc::new(Semaphore::new(1));
        let (tx, rx) = std::sync::mpsc::channel();
        let task = tokio::spawn(run_batcher(queue.clone(), idle.clone(), tx));
        let mut rxs = Vec::new();
        let (p, r) = pending(1, LONG);
        queue.push(p).unwrap();
        rxs.push(r);
        tokio::time::sleep(Duration::from_millis(2)).await;
        let busy = rx.try_recv().expect("first batch");
        assert_eq!(busy.batch.len(), 1);
        // The instance is busy for 50 ms: ten requests arrive meanwhile.
        for _ in 0..10 {
            let (p, r) = pending(1, LONG);
            queue.push(p).unwrap();
            rxs.push(r);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(rx.try_recv().is_err(), "no batch may be cut while no instance is idle");
        drop(busy); // releases the permit
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(rx.try_recv().expect("second batch").batch.len(), 10);
        queue.close();
        task.await.unwrap();
    }
}
