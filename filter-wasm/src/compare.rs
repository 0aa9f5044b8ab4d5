//! Shadow comparisons in flight in one worker. A compared request is not mirrored by Envoy
//! (whose mirror discards the answer): once the primary has answered, the root context sends
//! the same request to the shadow version (and, for the noise, to the primary again) with
//! `dispatch_http_call`, and when every answer is in ships them together to the collector
//! (`switchyard_policy::shadow::record`). Bounded per model by `compare.max_pending`; every
//! comparison ends in exactly one counted result.

use std::collections::HashMap;
use std::time::Duration;

use switchyard_policy::capture::Body;
use switchyard_policy::config::{Collector, Compare};
use switchyard_policy::sampling::BINARY_HEADER;
use switchyard_policy::shadow::{self, Answer, CompareResult, Names};

use crate::host::Host;
use crate::metrics::{CompareCounters, Counters, compare_counter};

/// A comparison waiting for its calls, by what the filter knew when the primary answered.
pub struct Job {
    pub model: String,
    pub primary: String,
    pub shadow: String,
    pub primary_cluster: String,
    pub shadow_cluster: String,
    pub settings: Compare,
    /// The model's `sampling.redact_fields`: a record shows no more than a sample would.
    pub redact: Vec<String>,
    /// `:path` as the primary's backend saw it.
    pub path: String,
    pub content_type: Option<String>,
    pub request_id: String,
    pub start_unix_ms: u64,
    pub request: Body,
    pub answer: Answer,
    pub counters: CompareCounters,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Call {
    Shadow,
    Noise,
}

struct Pending {
    job: Job,
    /// When the calls went out (`None`: not yet).
    sent_ms: Option<u64>,
    calls: u8,
    shadow: Option<Answer>,
    noise: Option<Answer>,
}

#[derive(Default)]
pub struct Comparisons {
    pending: HashMap<u64, Pending>,
    next: u64,
    /// Calls to the versions in flight: token → (comparison, which call).
    calls: HashMap<u32, (u64, Call)>,
    /// Records on their way to the collector: token → their model and the counters they are
    /// counted in.
    posts: HashMap<u32, (String, CompareCounters)>,
}

impl Comparisons {
    /// Takes a finished primary's comparison, unless its model already has `max_pending`
    /// comparisons in this worker (then it is dropped, and counted).
    pub fn offer(&mut self, counters: &mut Counters, job: Job) {
        let held = self.pending.values().filter(|p| p.job.model == job.model).count()
            + self.posts.values().filter(|(m, _)| *m == job.model).count();
        if held >= job.settings.max_pending {
            count(counters, &job.counters, CompareResult::Dropped);
            return;
        }
        self.next += 1;
        self.pending.insert(self.next, Pending { job, sent_ms: None, calls: 0, shadow: None, noise: None });
    }

    /// Sends the calls of every comparison not sent yet; `made` learns each token (the root
    /// context waits for them before it lets Envoy delete it).
    pub fn dispatch(&mut self, h: &mut impl Host, counters: &mut Counters, made: &mut impl Extend<u32>) {
        let now = h.now_ms();
        let mut failed = Vec::new();
        for (id, p) in self.pending.iter_mut().filter(|(_, p)| p.sent_ms.is_none()) {
            p.sent_ms = Some(now);
            let j = &p.job;
            let mut headers = vec![("x-request-id", j.request_id.as_str())];
            if let Some(ct) = &j.content_type {
                headers.push(("content-type", ct.as_str()));
            }
            let json_len = j.request.json_len.map(|n| n.to_string());
            if let Some(n) = &json_len {
                headers.push((BINARY_HEADER, n.as_str()));
            }
            let timeout = Duration::from_millis(j.settings.timeout_ms);
            let mut call = |cluster: &str, which: Call| {
                let token = h.dispatch_call(cluster, &j.path, &headers, &j.request.bytes, timeout)?;
                self.calls.insert(token, (*id, which));
                made.extend([token]);
                Some(())
            };
            if call(&j.shadow_cluster, Call::Shadow).is_none() {
                failed.push(*id);
                continue;
            }
            p.calls = 1;
            if j.settings.noise && call(&j.primary_cluster, Call::Noise).is_some() {
                p.calls = 2;
            }
        }
        for id in failed {
            if let Some(p) = self.pending.remove(&id) {
                count(counters, &p.job.counters, CompareResult::Failed);
            }
        }
    }

    /// Settles call `token` if it is one of these comparisons' (the answer is `true` then): a
    /// version's answer is kept (a comparison complete with it is posted to the collector), the
    /// collector's counts the comparison sent or failed.
    pub fn answered(
        &mut self,
        h: &mut impl Host,
        counters: &mut Counters,
        collector: Option<&Collector>,
        token: u32,
        body_size: usize,
        made: &mut impl Extend<u32>,
    ) -> bool {
        if let Some((_, c)) = self.posts.remove(&token) {
            let ok = h.call_response_status().is_some_and(|s| (200..300).contains(&s));
            count(counters, &c, if ok { CompareResult::Sent } else { CompareResult::Failed });
            return true;
        }
        let Some((id, which)) = self.calls.remove(&token) else { return false };
        let Some(p) = self.pending.get_mut(&id) else { return true };
        let status = h.call_response_status();
        let cap = p.job.settings.max_body_bytes;
        // An answer over the cap is kept without its body: the collector sees it cannot judge it.
        let bytes = if status.is_some() && body_size <= cap { h.call_response_body(body_size) } else { Vec::new() };
        let json_len = h.call_response_header(BINARY_HEADER).and_then(|v| v.trim().parse().ok());
        let answer = Answer {
            status,
            duration_ms: h.now_ms().saturating_sub(p.sent_ms.unwrap_or_default()),
            body: Body { bytes, json_len },
        };
        match which {
            Call::Shadow => p.shadow = Some(answer),
            Call::Noise => p.noise = Some(answer),
        }
        p.calls = p.calls.saturating_sub(1);
        if p.calls > 0 {
            return true;
        }
        let Some(p) = self.pending.remove(&id) else { return true };
        self.post(h, counters, collector, p, made);
        true
    }

    fn post(
        &mut self,
        h: &mut impl Host,
        counters: &mut Counters,
        collector: Option<&Collector>,
        p: Pending,
        made: &mut impl Extend<u32>,
    ) {
        let j = &p.job;
        let names = Names {
            model: &j.model,
            primary: &j.primary,
            shadow: &j.shadow,
            request_id: &j.request_id,
            start_unix_ms: j.start_unix_ms,
        };
        let shadow = p.shadow.unwrap_or_default();
        let record = shadow::record(&names, &j.settings, &j.request, &j.answer, &shadow, p.noise.as_ref(), &j.redact);
        let token = collector
            .zip(record)
            .and_then(|(c, body)| h.dispatch_post(&c.cluster, &c.path, &body, Duration::from_millis(c.timeout_ms)));
        match token {
            Some(t) => {
                self.posts.insert(t, (j.model.clone(), j.counters));
                made.extend([t]);
            }
            None => count(counters, &j.counters, CompareResult::Failed),
        }
    }

    /// Takes over an earlier worker's comparisons, calls and posts: their counters are the
    /// old worker's ids, still valid in this VM, so they are counted under their names.
    pub fn adopt(&mut self, old: &mut Comparisons) {
        let mut moved = HashMap::new();
        for (from, p) in std::mem::take(&mut old.pending) {
            self.next += 1;
            moved.insert(from, self.next);
            self.pending.insert(self.next, p);
        }
        for (token, (from, which)) in old.calls.drain() {
            if let Some(to) = moved.get(&from) {
                self.calls.insert(token, (*to, which));
            }
        }
        self.posts.extend(old.posts.drain());
    }
}

fn count(counters: &mut Counters, c: &CompareCounters, r: CompareResult) {
    if let Some(c) = compare_counter(c, r) {
        counters.inc(c);
    }
}
