//! The dynamic batcher of one model version.
//!
//! Requests wait in a bounded queue. Batching is work-conserving: an idle engine instance
//! takes whatever is queued at once (up to `max_batch_size` rows, whole requests only), and a
//! batch grows only from the requests that arrive while every instance is busy. Setting
//! `max_queue_delay` opts into hold-to-fill: an idle instance may then hold the *first* queued
//! request up to that long (from its arrival) for others to join, closing early when the batch
//! is full or when waiting longer would let a queued request's deadline pass. Entries whose
//! deadline passed or whose client went away are dropped before compute.
//!
//! `QueueState` holds the rules and is tested with paused time; `run_batcher` is the task that
//! applies them; the engine side lives in `engine.rs`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
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
    Engine(crate::error::EngineError),
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
    /// Hold-to-fill: the batch is not full; wait until then (the first arrival's delay ends,
    /// or a queued deadline is near) or a push.
    WaitUntil(Instant),
}

/// A held batch is cut this long before the earliest queued deadline: the cut counts a
/// request as expired from its deadline on, and the batch still has to reach the engine.
const DEADLINE_MARGIN: Duration = Duration::from_millis(1);

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

    /// Whether the next batch may be cut now. Without a queue delay anything queued is: the
    /// batcher cuts as soon as an instance is idle (work-conserving).
    pub fn readiness(&self, now: Instant) -> Readiness {
        let Some(first) = self.entries.front() else {
            return Readiness::Empty { closed: self.closed };
        };
        if self.closed || self.rows >= self.policy.max_batch_size || self.policy.max_queue_delay.is_zero() {
            return Readiness::Ready;
        }
        // The batch is not full, so every queued entry would be in it. Dead ones are left out:
        // they are dropped at the cut anyway and must not hurry the others.
        let due = self
            .entries
            .iter()
            .filter(|p| now < p.deadline && !p.reply.is_closed())
            .map(|p| p.deadline.checked_sub(DEADLINE_MARGIN).unwrap_or(p.deadline))
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

/// How early tokio's timer is aimed before a hold ends. It fires on whole milliseconds and
/// rounds a wake-up up, never down, so it ends up to a tick (plus scheduling) late: alone it
/// would stretch a 2 ms hold to about 3.
const COARSE_MARGIN: Duration = Duration::from_millis(2);

/// The part of a precise wait that is spun rather than slept: `thread::sleep` wakes late by
/// the kernel's timer slack (50 µs by default) plus the wake-up itself.
const SPIN: Duration = Duration::from_micros(100);

/// Sleeps until `due` to within tens of microseconds, where tokio's timer alone is up to a
/// millisecond late. tokio sleeps until `COARSE_MARGIN` before; the rest is slept natively on
/// a blocking thread (not a runtime worker), spinning only its last `SPIN`: a hold costs at
/// most that much CPU, and a cancelled one (the batch filled) none, leaving at most
/// `COARSE_MARGIN` of a sleeping thread behind.
async fn hold_until(due: Instant) {
    if let Some(coarse) = due.checked_sub(COARSE_MARGIN)
        && Instant::now() < coarse
    {
        tokio::time::sleep_until(coarse).await;
    }
    // The target is fixed here, so the blocking thread's start-up does not delay it.
    if let Some(left) = due.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        let target = std::time::Instant::now() + left;
        let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        let cancelled = cancel.0.clone();
        let _ = tokio::task::spawn_blocking(move || sleep_precisely_until(target, &cancelled)).await;
    }
    // A no-op on a real clock (the wait above ended at or after `due`). Under a paused test
    // clock the real wait moved no time, and this advances it to `due`. Only when not yet due:
    // tokio could hold an already-past deadline until its next tick.
    if Instant::now() < due {
        tokio::time::sleep_until(due).await;
    }
}

/// Tells the blocking thread of a dropped hold not to spin.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn sleep_precisely_until(target: std::time::Instant, cancelled: &AtomicBool) {
    if let Some(left) = target.checked_duration_since(std::time::Instant::now())
        && left > SPIN
    {
        std::thread::sleep(left - SPIN);
    }
    while std::time::Instant::now() < target && !cancelled.load(Ordering::Relaxed) {
        std::hint::spin_loop();
    }
}

type Hold = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Forms batches until the queue is closed and drained. `idle` holds one permit per idle
/// engine instance; each batch is sent with one, and the engine releases it when done.
pub async fn run_batcher(queue: Arc<Queue>, idle: Arc<Semaphore>, work: std::sync::mpsc::Sender<Work>) {
    // The running hold and when it ends: kept across pushes, which do not move the end
    // unless a sooner deadline arrives, so a busy queue does not re-arm it on every push.
    let mut hold: Option<(Instant, Hold)> = None;
    loop {
        // Wait until a batch may be cut: at once unless hold-to-fill is on.
        loop {
            let notified = queue.notify.notified();
            let readiness = queue.lock().readiness(Instant::now());
            match readiness {
                Readiness::Ready => break,
                Readiness::Empty { closed: true } => return,
                Readiness::Empty { closed: false } => notified.await,
                Readiness::WaitUntil(due) => {
                    let timer = match hold.take() {
                        Some((end, timer)) if end == due => timer,
                        _ => Box::pin(hold_until(due)),
                    };
                    let timer = &mut hold.insert((due, timer)).1;
                    let ended = tokio::select! {
                        () = notified => false,
                        () = timer => true,
                    };
                    if ended {
                        hold = None;
                    }
                }
            }
        }
        hold = None;
        // When every instance is busy, requests keep joining until one is idle.
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
        // Abandoned entries are counted where the client's handler is dropped (service.rs, `InFlight`).
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

    #[tokio::test(start_paused = true)]
    async fn without_a_queue_delay_a_lone_request_is_ready_at_once() {
        let mut q = QueueState::new(policy(8, 0, 100));
        let (a, _ra) = pending(1, LONG);
        q.push(a).unwrap();
        assert_eq!(q.readiness(Instant::now()), Readiness::Ready);
        assert_eq!(q.take_batch(Instant::now()).batch.len(), 1);
    }

    // ---- the batcher task, against a channel standing in for the engine ----------------------

    type WorkRx = std::sync::mpsc::Receiver<Work>;

    struct Batcher {
        queue: Arc<Queue>,
        idle: Arc<Semaphore>,
        rx: WorkRx,
        task: tokio::task::JoinHandle<()>,
    }

    fn start_batcher(policy: BatchingPolicy, instances: usize) -> Batcher {
        let queue = Queue::new(policy, VersionMetrics::detached());
        let idle = Arc::new(Semaphore::new(instances));
        let (tx, rx) = std::sync::mpsc::channel();
        let task = tokio::spawn(run_batcher(queue.clone(), idle.clone(), tx));
        Batcher { queue, idle, rx, task }
    }

    /// Lets the batcher task run without moving the paused clock: the batch it sent, if any.
    async fn sent(rx: &WorkRx) -> Option<Work> {
        for _ in 0..100 {
            if let Ok(w) = rx.try_recv() {
                return Some(w);
            }
            tokio::task::yield_now().await;
        }
        None
    }

    fn push(queue: &Queue, rows: usize, rxs: &mut Vec<Rx>) {
        let (p, r) = pending(rows, LONG);
        queue.push(p).unwrap();
        rxs.push(r);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_engine_takes_a_lone_request_at_once() {
        let Batcher { queue, idle, rx, task } = start_batcher(policy(8, 0, 100), 1);
        let t0 = Instant::now();
        let mut rxs = Vec::new();
        push(&queue, 1, &mut rxs);
        let work = sent(&rx).await.expect("a batch without waiting");
        assert_eq!(work.batch.len(), 1);
        assert_eq!(Instant::now(), t0, "no time passed: nothing waited for others to join");
        assert_eq!(idle.available_permits(), 0);
        drop(work);
        queue.close();
        task.await.unwrap();
    }

    /// Formerly the batcher waited out a 1 ms delay before the first batch; without a delay
    /// it is cut at once, and batching comes only from the engine being busy.
    #[tokio::test(start_paused = true)]
    async fn while_the_engine_is_busy_arrivals_join_the_next_batch_which_takes_all_up_to_the_max() {
        let Batcher { queue, rx, .. } = start_batcher(policy(8, 0, 100), 1);
        let mut rxs = Vec::new();
        push(&queue, 1, &mut rxs);
        let busy = sent(&rx).await.expect("first batch");
        assert_eq!(busy.batch.len(), 1);
        // The instance is busy for 50 ms: ten one-row requests arrive meanwhile.
        for _ in 0..10 {
            push(&queue, 1, &mut rxs);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(sent(&rx).await.is_none(), "no batch may be cut while no instance is idle");
        drop(busy); // releases the permit
        let second = sent(&rx).await.expect("second batch as soon as the instance is idle");
        assert_eq!(second.batch.len(), 8, "everything queued, up to max_batch_size");
        assert!(sent(&rx).await.is_none());
        drop(second);
        assert_eq!(sent(&rx).await.expect("the rest").batch.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn with_several_instances_none_sits_idle_while_requests_wait() {
        let Batcher { queue, idle, rx, .. } = start_batcher(policy(8, 0, 100), 3);
        let mut rxs = Vec::new();
        let mut busy = Vec::new();
        for _ in 0..3 {
            push(&queue, 1, &mut rxs);
            busy.push(sent(&rx).await.expect("an idle instance takes the request at once"));
        }
        assert_eq!(idle.available_permits(), 0);
        push(&queue, 2, &mut rxs);
        push(&queue, 3, &mut rxs);
        assert!(sent(&rx).await.is_none(), "all three instances are busy");
        assert_eq!(queue.lock().len(), 2);
        drop(busy.remove(1));
        let next = sent(&rx).await.expect("the freed instance takes both waiting requests");
        assert_eq!(next.batch.iter().map(|p| p.rows).collect::<Vec<_>>(), [2, 3]);
        assert!(queue.lock().is_empty());
    }

    /// Opt-in hold-to-fill: an idle instance holds the first request for exactly the delay.
    #[tokio::test(start_paused = true)]
    async fn hold_to_fill_waits_exactly_the_delay_from_the_first_arrival_then_cuts_one_batch() {
        let ms = Duration::from_millis;
        let Batcher { queue, idle, rx, task } = start_batcher(policy(8, 10, 100), 1);
        let t0 = Instant::now();
        let mut rxs = Vec::new();
        for _ in 0..3 {
            push(&queue, 1, &mut rxs);
            tokio::time::advance(ms(2)).await;
        }
        tokio::time::sleep_until(t0 + ms(9)).await;
        assert!(sent(&rx).await.is_none(), "held: the delay is not over");
        tokio::time::sleep_until(t0 + ms(10)).await;
        let work = sent(&rx).await.expect("a batch when the delay ends");
        assert_eq!(Instant::now(), t0 + ms(10));
        assert_eq!(work.batch.len(), 3);
        assert_eq!(idle.available_permits(), 0);
        drop(work);
        queue.close();
        task.await.unwrap();
    }

    /// Shutdown does not wait for a hold: what is queued is served at once.
    #[tokio::test(start_paused = true)]
    async fn closing_the_queue_ends_a_hold() {
        let Batcher { queue, rx, task, .. } = start_batcher(policy(8, 10, 100), 1);
        let t0 = Instant::now();
        let mut rxs = Vec::new();
        push(&queue, 1, &mut rxs);
        tokio::time::advance(Duration::from_millis(1)).await;
        queue.close();
        assert_eq!(sent(&rx).await.expect("served without waiting for the delay").batch.len(), 1);
        assert_eq!(Instant::now(), t0 + Duration::from_millis(1));
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn hold_to_fill_ends_early_when_the_batch_is_full() {
        let Batcher { queue, rx, .. } = start_batcher(policy(4, 10, 100), 1);
        let t0 = Instant::now();
        let mut rxs = Vec::new();
        push(&queue, 1, &mut rxs);
        tokio::time::advance(Duration::from_millis(3)).await;
        assert!(sent(&rx).await.is_none());
        push(&queue, 3, &mut rxs);
        let work = sent(&rx).await.expect("a full batch is cut at once");
        assert_eq!(work.batch.iter().map(|p| p.rows).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(Instant::now(), t0 + Duration::from_millis(3));
    }

    #[tokio::test(start_paused = true)]
    async fn batcher_does_not_wait_out_the_delay_past_a_queued_deadline() {
        let Batcher { queue, rx, .. } = start_batcher(policy(8, 1000, 100), 1);
        let (p, mut r) = pending(1, Duration::from_millis(20));
        let deadline = p.deadline;
        queue.push(p).unwrap();
        tokio::time::sleep_until(deadline).await;
        let work = rx.try_recv().expect("a batch before the deadline, not after the 1 s delay");
        assert_eq!(work.batch.len(), 1);
        assert!(r.try_recv().is_err(), "not answered as expired");
    }

    /// The precise wait on the real clock: never early (how late is measured, not tested).
    #[tokio::test]
    async fn a_hold_never_ends_early_on_the_real_clock() {
        for us in [0, 300, 2500] {
            let due = Instant::now() + Duration::from_micros(us);
            hold_until(due).await;
            assert!(Instant::now() >= due, "{us} µs");
        }
    }
}
