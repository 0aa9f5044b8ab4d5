//! Who the clients are and what each tenant may send (the policy's `identity`).
//!
//! Envoy checks the client's token (its JWT filter, with the keys of a local JWKS) before the
//! filter runs, answers 401 itself, and copies the tenant claim into [`TENANT_HEADER`] — a
//! header Envoy drops from every client request first, so a client cannot name its own
//! tenant. Quotas are Envoy's local rate limit, one token bucket per tenant, answered 429 with
//! `Retry-After` and [`QUOTA_HEADER`], by which the filter tells a quota refusal from a
//! version that shed load. The filter labels per-tenant metrics with the named tenants and
//! [`OTHER_TENANT`] for every other one, so their cardinality stays bounded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::names::valid_name;

/// Set by Envoy from the token's tenant claim; never taken from a client.
pub const TENANT_HEADER: &str = "x-switchyard-tenant";
/// Set by Envoy's local rate limit on its own 429s (with `Retry-After`).
pub const QUOTA_HEADER: &str = "x-switchyard-quota";
pub const QUOTA_EXCEEDED: &str = "exceeded";
/// The label of every tenant the policy does not name.
pub const OTHER_TENANT: &str = "other";
/// Named tenants each add series per model and outcome: a bound keeps Prometheus' cost known.
pub const MAX_NAMED_TENANTS: usize = 50;
/// The token bucket's refill period: `Retry-After` is this long.
pub const QUOTA_FILL_SECONDS: u32 = 1;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// A token must carry one of these in `aud`; empty accepts any audience.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// The claim that names the client's tenant. A token without it is refused (403).
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// The quota of each tenant the policy does not name (each has its own bucket); none: no
    /// limit for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_quota: Option<Quota>,
    /// Tenants with a label of their own and, optionally, their own quota.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tenants: BTreeMap<String, Tenant>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Falls back to `default_quota`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Sustained rate, requests per second.
    pub requests_per_second: u32,
    /// Requests that may arrive at once; defaults to one second's worth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl Quota {
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.requests_per_second)
    }
}

fn default_tenant_claim() -> String {
    "tenant".into()
}

impl Identity {
    /// The label index of a tenant: a named tenant's position, or the last ([`OTHER_TENANT`]).
    pub fn tenant_index(&self, tenant: &str) -> usize {
        self.tenants.keys().position(|t| t == tenant).unwrap_or(self.tenants.len())
    }

    /// Every label, the named tenants in order and then [`OTHER_TENANT`].
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.tenants.keys().map(String::as_str).chain([OTHER_TENANT])
    }

    /// The quota a named tenant runs under.
    pub fn quota_of(&self, tenant: &str) -> Option<Quota> {
        self.tenants.get(tenant).and_then(|t| t.quota).or(self.default_quota)
    }

    pub(crate) fn check(&self, p: &mut Vec<String>) {
        if self.issuer.is_empty() {
            p.push("identity.issuer must not be empty".into());
        }
        if self.audiences.iter().any(String::is_empty) {
            p.push("identity.audiences must not hold an empty string".into());
        }
        if !valid_name(&self.tenant_claim) {
            p.push(format!("identity.tenant_claim '{}' must be a claim name", self.tenant_claim));
        }
        if self.tenants.len() > MAX_NAMED_TENANTS {
            p.push(format!(
                "identity.tenants names {} tenants: at most {MAX_NAMED_TENANTS} (each adds series; the rest are '{OTHER_TENANT}')",
                self.tenants.len()
            ));
        }
        for name in self.tenants.keys() {
            if !valid_name(name) || name == OTHER_TENANT {
                p.push(format!("identity.tenants: '{name}' must be a name of [A-Za-z0-9_.-] and not '{OTHER_TENANT}'"));
            }
        }
        let quotas = self.default_quota.iter().map(|q| ("default_quota".to_owned(), q));
        let named = self.tenants.iter().filter_map(|(n, t)| Some((format!("tenants.{n}.quota"), t.quota.as_ref()?)));
        for (at, q) in quotas.chain(named) {
            if q.requests_per_second == 0 {
                p.push(format!("identity.{at}.requests_per_second must be at least 1"));
            }
            if q.burst() < q.requests_per_second {
                p.push(format!(
                    "identity.{at}.burst ({}) must be at least requests_per_second ({})",
                    q.burst(),
                    q.requests_per_second
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn with(identity: &str) -> Result<Config, Vec<String>> {
        let text = format!(
            r#"{{"models": {{"m": {{"versions": [{{"name": "v1", "cluster": "c1", "weight": 100}}]}}}}, "identity": {identity}}}"#
        );
        Config::parse(text.as_bytes()).map_err(|e| e.0)
    }

    #[test]
    fn named_tenants_keep_their_labels_and_every_other_tenant_is_other() {
        let cfg = with(
            r#"{"issuer": "i", "default_quota": {"requests_per_second": 5},
                "tenants": {"team-b": {"quota": {"requests_per_second": 50, "burst": 80}}, "team-a": {}}}"#,
        )
        .unwrap();
        let id = cfg.identity.unwrap();
        assert_eq!(id.labels().collect::<Vec<_>>(), ["team-a", "team-b", "other"]);
        assert_eq!([id.tenant_index("team-a"), id.tenant_index("team-b"), id.tenant_index("zeta")], [0, 1, 2]);
        assert_eq!(id.tenant_index(OTHER_TENANT), 2, "a tenant called 'other' is other");
        assert_eq!(id.quota_of("team-a").map(|q| q.burst()), Some(5), "falls back to the default");
        assert_eq!(id.quota_of("team-b").map(|q| (q.requests_per_second, q.burst())), Some((50, 80)));
        assert_eq!(id.tenant_claim, "tenant");
    }

    #[test]
    fn every_problem_is_reported() {
        let many: Vec<String> = (0..=MAX_NAMED_TENANTS).map(|i| format!(r#""t{i}": {{}}"#)).collect();
        let errors = with(&format!(
            r#"{{"issuer": "", "audiences": [""], "tenant_claim": "a b",
                "default_quota": {{"requests_per_second": 0}},
                "tenants": {{"other": {{"quota": {{"requests_per_second": 10, "burst": 5}}}}, "a;b": {{}}, {}}}}}"#,
            many.join(",")
        ))
        .unwrap_err();
        for needle in [
            "identity.issuer must not be empty",
            "identity.audiences must not hold an empty string",
            "identity.tenant_claim 'a b'",
            "at most 50",
            "'other' must be a name",
            "'a;b' must be a name",
            "identity.default_quota.requests_per_second must be at least 1",
            "identity.tenants.other.quota.burst (5) must be at least requests_per_second (10)",
        ] {
            assert!(errors.iter().any(|e| e.contains(needle)), "{needle} not in {errors:#?}");
        }
        assert!(with(r#"{"issuer": "i", "tenant": "x"}"#).is_err(), "unknown fields are refused");
    }
}
