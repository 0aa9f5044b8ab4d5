//! Admission before the body is read, as TGI's router does it: every inference request takes
//! a share of a per-server budget of body bytes and of requests in flight, with `try_acquire`,
//! from its declared length, before a byte of its body is read. What cannot be admitted is
//! answered 429 at once, so memory is bounded by the budget, not by how many clients send
//! at the same time. The shares are held until the response has been sent.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use crate::config::ModelConfig;
use crate::error::ApiError;
use crate::tensor::DataType;

/// The default of `--max-body-bytes`.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// The default of `--max-inflight-requests`.
pub const DEFAULT_MAX_INFLIGHT_REQUESTS: usize = 1024;
/// The default of `--body-read-timeout-seconds`.
pub const DEFAULT_BODY_READ_TIMEOUT_SECONDS: u64 = 30;

/// The server's request limits as given (the `serve` flags of the same names), before
/// [`LimitOptions::validate`] derives the defaults that depend on others and checks them.
#[derive(Debug, Clone)]
pub struct LimitOptions {
    /// Request bodies above this get 413.
    pub max_body_bytes: usize,
    /// Body bytes admitted at once (declared lengths; a body without one counts as
    /// `max_body_bytes`). Default: 4 × `max_body_bytes`; at least `max_body_bytes`.
    pub max_inflight_bytes: Option<usize>,
    /// Inference requests admitted at once; beyond it requests get 429.
    pub max_inflight_requests: usize,
    /// Bodies not received within this get 408.
    pub body_read_timeout_seconds: u64,
    /// Large bodies decoded at once on the blocking pool. Default: the number of CPUs.
    pub max_concurrent_decodes: Option<usize>,
}

impl Default for LimitOptions {
    fn default() -> Self {
        LimitOptions {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_inflight_bytes: None,
            max_inflight_requests: DEFAULT_MAX_INFLIGHT_REQUESTS,
            body_read_timeout_seconds: DEFAULT_BODY_READ_TIMEOUT_SECONDS,
            max_concurrent_decodes: None,
        }
    }
}

/// Every broken rule of a [`LimitOptions`], reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid limits: {} problem(s): {}", .0.len(), .0.join("; "))]
pub struct InvalidLimits(pub Vec<String>);

/// Validated limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_inflight_bytes: usize,
    pub max_inflight_requests: usize,
    pub body_read_timeout: Duration,
    pub max_concurrent_decodes: usize,
}

impl LimitOptions {
    /// Checks every rule and reports every broken one at once.
    pub fn validate(&self) -> Result<Limits, InvalidLimits> {
        let max_inflight_bytes = self.max_inflight_bytes.unwrap_or(self.max_body_bytes.saturating_mul(4));
        let max_concurrent_decodes = self
            .max_concurrent_decodes
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
        let mut problems = Vec::new();
        // A share is taken in one `try_acquire_many`, which counts in u32.
        if self.max_body_bytes == 0 || self.max_body_bytes > u32::MAX as usize {
            problems.push(format!("--max-body-bytes must be 1..={}, got {}", u32::MAX, self.max_body_bytes));
        }
        if max_inflight_bytes < self.max_body_bytes {
            problems.push(format!(
                "--max-inflight-bytes ({max_inflight_bytes}) must be at least --max-body-bytes ({}), or a body of the maximum size could never be admitted",
                self.max_body_bytes
            ));
        }
        if max_inflight_bytes > Semaphore::MAX_PERMITS {
            problems.push(format!("--max-inflight-bytes must be at most {}", Semaphore::MAX_PERMITS));
        }
        if self.max_inflight_requests == 0 || self.max_inflight_requests > Semaphore::MAX_PERMITS {
            problems.push(format!(
                "--max-inflight-requests must be 1..={}, got {}",
                Semaphore::MAX_PERMITS,
                self.max_inflight_requests
            ));
        }
        if self.body_read_timeout_seconds == 0 {
            problems.push("--body-read-timeout-seconds must be at least 1".into());
        }
        if max_concurrent_decodes == 0 || max_concurrent_decodes > Semaphore::MAX_PERMITS {
            problems.push(format!("--max-concurrent-decodes must be at least 1, got {max_concurrent_decodes}"));
        }
        if !problems.is_empty() {
            return Err(InvalidLimits(problems));
        }
        Ok(Limits {
            max_body_bytes: self.max_body_bytes,
            max_inflight_bytes,
            max_inflight_requests: self.max_inflight_requests,
            body_read_timeout: Duration::from_secs(self.body_read_timeout_seconds),
            max_concurrent_decodes,
        })
    }
}

/// A request's share of the budget; dropping it gives the share back.
#[derive(Debug)]
pub struct Ticket {
    _bytes: OwnedSemaphorePermit,
    _request: OwnedSemaphorePermit,
}

pub struct Admission {
    pub limits: Limits,
    bytes: Arc<Semaphore>,
    requests: Arc<Semaphore>,
    decodes: Semaphore,
}

impl Admission {
    pub fn new(limits: Limits) -> Self {
        Admission {
            bytes: Arc::new(Semaphore::new(limits.max_inflight_bytes)),
            requests: Arc::new(Semaphore::new(limits.max_inflight_requests)),
            decodes: Semaphore::new(limits.max_concurrent_decodes),
            limits,
        }
    }

    /// Admits a request whose body declares `length` bytes (`None`: unknown, so it may be
    /// as large as allowed), or refuses it with 413 or 429 without waiting.
    pub fn try_admit(&self, length: Option<u64>) -> Result<Ticket, ApiError> {
        let max = self.limits.max_body_bytes;
        let charge = match length {
            Some(n) if n > max as u64 => return Err(ApiError::PayloadTooLarge { limit: max }),
            Some(n) => n,
            None => max as u64,
        };
        let refused = |what, limit| ApiError::Overloaded { what, limit };
        let request = self
            .requests
            .clone()
            .try_acquire_owned()
            .map_err(|_| refused("requests", self.limits.max_inflight_requests))?;
        // `charge` is at most `max_body_bytes`, which validation keeps within u32.
        let share = u32::try_from(charge).map_err(|_| ApiError::PayloadTooLarge { limit: max })?;
        let bytes = self
            .bytes
            .clone()
            .try_acquire_many_owned(share)
            .map_err(|_| refused("body bytes", self.limits.max_inflight_bytes))?;
        Ok(Ticket { _bytes: bytes, _request: request })
    }

    /// A place among the concurrent decodes. Admitted requests wait for one rather than being
    /// refused: their memory is already accounted for, the wait only bounds CPU and threads.
    pub async fn decode_slot(&self) -> Result<SemaphorePermit<'_>, ApiError> {
        self.decodes.acquire().await.map_err(|_| ApiError::Internal("the decode semaphore is closed".into()))
    }

    /// Body bytes admitted now (for tests and logs).
    pub fn bytes_in_flight(&self) -> usize {
        self.limits.max_inflight_bytes - self.bytes.available_permits()
    }
}

/// The most bytes of JSON text one element of a response takes: `-2.2250738585072014e-308,`.
const MAX_JSON_ELEMENT: f64 = 25.0;

/// How many bytes of memory one admitted body byte can account for at its peak, for the
/// models in `configs`: the worst case of
///
/// * 1 for hyper's receive buffer and 1 for the collected body,
/// * D, the decoded tensors: numbers take at least 2 bytes of JSON (`0,`), so an FP32 input
///   decodes to 2 bytes per body byte and an FP64/INT64 one to 4; binary tensors to 1,
/// * R, the response: each request row needs at least `min(2, element size)` body bytes per
///   input element and yields at most `25 + element size` bytes (JSON text and the tensor
///   behind it) per output element,
/// * 1 for strings echoed back (the `id`).
///
/// The engines' own working set (a full batch per instance) is not in it: warm-up runs a full
/// batch on every instance, so it is part of the peak RSS once the models are ready.
pub fn memory_factor<'a>(configs: impl IntoIterator<Item = &'a ModelConfig>) -> f64 {
    let bytes = |d: DataType| d.byte_size() as f64;
    configs
        .into_iter()
        .map(|c| {
            let decoded = c.inputs.iter().map(|s| (bytes(s.datatype) / 2.0).max(1.0)).fold(1.0, f64::max);
            let in_row: f64 = c.inputs.iter().map(|s| s.row_elements() as f64 * bytes(s.datatype).min(2.0)).sum();
            let out_row: f64 =
                c.outputs.iter().map(|s| s.row_elements() as f64 * (MAX_JSON_ELEMENT + bytes(s.datatype))).sum();
            let response = if in_row > 0.0 { out_row / in_row } else { out_row };
            3.0 + decoded + response
        })
        .fold(0.0, f64::max)
}

/// Fixed memory of one admitted request besides its body: its connection's buffers (hyper
/// starts them at 8 KiB), task, headers and queue entry.
const PER_REQUEST_OVERHEAD: f64 = 64.0 * 1024.0;

/// The most memory admitted requests can hold at once, on top of the RSS the server has when
/// its models are ready: `factor × max_inflight_bytes + 64 KiB × max_inflight_requests`.
pub fn request_memory_bound(limits: &Limits, factor: f64) -> u64 {
    (factor * limits.max_inflight_bytes as f64 + PER_REQUEST_OVERHEAD * limits.max_inflight_requests as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_body: usize, inflight: Option<usize>) -> Result<Limits, String> {
        LimitOptions { max_body_bytes: max_body, max_inflight_bytes: inflight, ..LimitOptions::default() }
            .validate()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_derive_the_byte_budget_from_the_body_limit() {
        let l = LimitOptions::default().validate().unwrap();
        assert_eq!(l.max_inflight_bytes, 4 * l.max_body_bytes);
        assert_eq!(l.body_read_timeout, Duration::from_secs(30));
        assert!(l.max_concurrent_decodes >= 1);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let args = LimitOptions {
            max_body_bytes: 100,
            max_inflight_bytes: Some(99),
            max_inflight_requests: 0,
            body_read_timeout_seconds: 0,
            max_concurrent_decodes: Some(0),
        };
        let e = args.validate().unwrap_err().to_string();
        for needle in [
            "4 problem(s)",
            "--max-inflight-bytes (99) must be at least --max-body-bytes (100)",
            "--max-inflight-requests must be",
            "--body-read-timeout-seconds must be at least 1",
            "--max-concurrent-decodes must be at least 1",
        ] {
            assert!(e.contains(needle), "{e} lacks {needle}");
        }
        assert!(limits(0, Some(10)).unwrap_err().contains("--max-body-bytes must be"));
        assert!(limits(1 << 33, None).unwrap_err().contains("--max-body-bytes must be"));
    }

    #[test]
    fn admission_refuses_instead_of_waiting_and_gives_shares_back() {
        let a = Admission::new(limits(100, Some(250)).unwrap());
        let first = a.try_admit(Some(100)).unwrap();
        let second = a.try_admit(None).unwrap();
        assert_eq!(a.bytes_in_flight(), 200);
        let e = a.try_admit(Some(51)).unwrap_err();
        assert!(matches!(e, ApiError::Overloaded { what: "body bytes", limit: 250 }), "{e:?}");
        assert!(matches!(a.try_admit(Some(101)).unwrap_err(), ApiError::PayloadTooLarge { limit: 100 }));
        let small = a.try_admit(Some(50)).unwrap();
        drop((first, second, small));
        assert_eq!(a.bytes_in_flight(), 0);
    }

    #[test]
    fn the_request_count_is_bounded_too() {
        let args = LimitOptions { max_body_bytes: 10, max_inflight_requests: 2, ..LimitOptions::default() };
        let a = Admission::new(args.validate().unwrap());
        let held = [a.try_admit(Some(0)).unwrap(), a.try_admit(Some(0)).unwrap()];
        let e = a.try_admit(Some(0)).unwrap_err();
        assert_eq!(e.to_string(), "the server is overloaded: 2 requests already in flight; retry later");
        drop(held);
        assert!(a.try_admit(Some(0)).is_ok());
    }

    #[test]
    fn memory_factor_follows_the_worst_model() {
        // FP32 [-1, 2] -> FP32 [-1, 2]: 3 + 2 (decoded) + 2 × 29 / (2 × 2) (response).
        let small = crate::testing::config("m", "v1");
        assert!((memory_factor([&small]) - 19.5).abs() < 1e-9);
        // FP32 [-1, 64] -> FP32 [-1, 2] (the demo MLP): 3 + 2 + 58 / 128.
        let mut mlp = small.clone();
        mlp.inputs[0].shape = vec![-1, 64];
        assert!((memory_factor([&mlp]) - (5.0 + 58.0 / 128.0)).abs() < 1e-9);
        assert!((memory_factor([&mlp, &small]) - 19.5).abs() < 1e-9);
    }
}
