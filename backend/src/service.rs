//! The serving core under both protocol codecs: the state every request sees, the accounting
//! of one inference request whichever protocol it came in on (draining, in flight, outcome
//! metrics), the hand-off to a version's queue, the admission ticket held until the response
//! is sent, and the drain that stops every listener and then the engines.
//!
//! REST (`server`) and gRPC (`grpc`) sit on top of this module and never import each other;
//! it imports neither, so a rule that holds for both protocols is written once, here.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::admission::{Admission, Limits, Ticket};
use crate::batcher::InferOutput;
use crate::error::ApiError;
use crate::metrics::{Metrics, Outcome};
use crate::models::{ModelVersion, Models};
use crate::v2::InferRequest;

/// What the handlers of both protocols share: the models, the metrics, admission control and
/// whether the server is draining.
pub struct AppState {
    pub models: Arc<Models>,
    pub metrics: Arc<Metrics>,
    pub admission: Admission,
    pub draining: AtomicBool,
}

impl AppState {
    pub fn new(models: Arc<Models>, metrics: Arc<Metrics>, limits: Limits) -> Arc<Self> {
        Arc::new(AppState { models, metrics, admission: Admission::new(limits), draining: AtomicBool::new(false) })
    }

    pub(crate) fn ready(&self) -> Result<(), ApiError> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(ApiError::ShuttingDown);
        }
        // Every version that is not ready, so one probe tells the whole story.
        let problems: Vec<String> =
            self.models.all().filter_map(|m| m.check_ready().err()).map(|e| e.to_string()).collect();
        if problems.is_empty() { Ok(()) } else { Err(ApiError::ServerNotReady(problems.join("; "))) }
    }
}

/// Keeps the in-flight gauge right and counts requests whose client disconnected: hyper then
/// drops the handler wherever it is (decoding, queued, computing), and a queued entry whose
/// handler is gone is skipped by the batcher, so it costs no compute.
struct InFlight<'a> {
    version: &'a ModelVersion,
    started: Instant,
    answered: bool,
}

impl<'a> InFlight<'a> {
    fn new(version: &'a ModelVersion) -> Self {
        version.metrics.in_flight.inc();
        InFlight { version, started: Instant::now(), answered: false }
    }

    fn answer(&mut self, outcome: Outcome) {
        self.answered = true;
        if outcome == Outcome::ClientGone {
            self.version.metrics.dropped_client_gone.inc();
        }
        self.version.metrics.record_request(outcome, self.started.elapsed().as_secs_f64());
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let m = &self.version.metrics;
        m.in_flight.dec();
        if !self.answered {
            m.dropped_client_gone.inc();
            m.record_request(Outcome::ClientGone, self.started.elapsed().as_secs_f64());
        }
    }
}

/// Runs one inference request of `mv`, whichever protocol it came in on: refused while
/// draining, counted in flight and in the request metrics with its outcome.
pub(crate) async fn accounted<T>(
    st: &AppState,
    mv: &ModelVersion,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    // Read before the request counts as in flight: a request counted in flight before the
    // shutdown signal is one the drain answers.
    let draining = st.draining.load(Ordering::Relaxed);
    let mut guard = InFlight::new(mv);
    let result = if draining { Err(ApiError::ShuttingDown) } else { work.await };
    guard.answer(match &result {
        Ok(_) => Outcome::Success,
        Err(e) => e.outcome(),
    });
    if let Err(ApiError::Overloaded { .. }) = &result {
        // Counted with the queue's refusals: both are refusals that cost no compute.
        mv.metrics.dropped_queue_full.inc();
    }
    result
}

/// Queues a validated request for its batch. A deadline that passed is reported as the
/// client's own when it is the timeout the client asked for.
pub(crate) async fn queue(mv: &ModelVersion, req: InferRequest) -> Result<InferOutput, ApiError> {
    let asked = req.timeout;
    mv.infer(req).await.map_err(|e| match e {
        ApiError::DeadlineExceeded(applied) if asked == Some(applied) => ApiError::ClientDeadlineExceeded(applied),
        e => e,
    })
}

/// A response body that holds its request's admission ticket until it has been sent (or the
/// client left), so responses waiting on slow readers stay within the budget. Both
/// protocols' responses are HTTP bodies: REST wraps axum's, gRPC tonic's.
pub(crate) struct Held<B> {
    body: B,
    _ticket: Ticket,
}

impl<B> Held<B> {
    pub(crate) fn new(body: B, ticket: Ticket) -> Self {
        Held { body, _ticket: ticket }
    }
}

impl<B: HttpBody + Unpin> HttpBody for Held<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

type Deadline = Option<tokio::time::Instant>;

/// The start of the drain, as a protocol's listener sees it.
#[derive(Clone)]
pub struct Draining(tokio::sync::watch::Receiver<Deadline>);

impl Draining {
    /// Resolves once the shutdown signal came (at once if it already has): the listener stops
    /// accepting and finishes the requests it accepted.
    pub async fn started(mut self) {
        let _ = self.0.wait_for(Option::is_some).await;
    }
}

/// Serves with `serve` until `signal` resolves, then drains within `grace`: readiness fails
/// and new inference is refused on every protocol, `serve`'s listeners stop accepting (each
/// when its [`Draining`] resolves) and finish every accepted request (queued ones included),
/// then the engines stop. Returns false when the grace period ran out first.
pub async fn serve_and_drain<F>(
    st: Arc<AppState>,
    signal: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
    serve: impl FnOnce(Draining) -> F,
) -> std::io::Result<bool>
where
    F: Future<Output = std::io::Result<()>>,
{
    let (deadline_tx, mut deadline_rx) = tokio::sync::watch::channel(None::<tokio::time::Instant>);
    let st2 = st.clone();
    tokio::spawn(async move {
        signal.await;
        // Readiness fails from here on, so a load balancer stops sending.
        st2.draining.store(true, Ordering::Relaxed);
        tracing::info!(grace_seconds = grace.as_secs_f64(), "shutdown signal: draining");
        let _ = deadline_tx.send(Some(tokio::time::Instant::now() + grace));
    });
    let listeners = serve(Draining(deadline_rx.clone()));
    let mut overdue_rx = deadline_rx.clone();
    let overdue = async move {
        if let Ok(d) = overdue_rx.wait_for(Option::is_some).await
            && let Some(d) = *d
        {
            tokio::time::sleep_until(d).await;
        }
    };
    let connections_closed = tokio::select! {
        r = listeners => { r?; true }
        () = overdue => false,
    };
    let deadline = deadline_rx.borrow_and_update().unwrap_or_else(|| tokio::time::Instant::now() + grace);
    let stopped = connections_closed && tokio::time::timeout_at(deadline, st.models.stop()).await.is_ok();
    if !stopped {
        tracing::warn!("grace period over before every request was answered");
    }
    Ok(stopped)
}
