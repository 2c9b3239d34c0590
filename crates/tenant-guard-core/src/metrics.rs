//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! Nothing is exported until the application installs a recorder (for instance
//! `metrics-exporter-prometheus`); without one every call below is a no-op. The names are the
//! constants of this module:
//!
//! | name | kind | labels | recorded by |
//! | --- | --- | --- | --- |
//! | [`REQUESTS`] | counter | `status` | the adapters, when a response is produced |
//! | [`REQUEST_DURATION`] | histogram (seconds) | `status` | the adapters |
//! | [`REJECTIONS`] | counter | `code` (the error code) | the adapters, per refused request |
//! | [`ORG_REQUESTS`] | counter | `org_id` (capped, see below) | the adapters, per authenticated request |
//! | [`POOL_WAIT`] | histogram (seconds) | — | the guard: checking out a connection |
//! | [`SCOPE_DURATION`] | histogram (seconds) | — | the guard: `BEGIN` + scoping (the prelude) |
//! | [`TX_DURATION`] | histogram (seconds) | `outcome` | the guard: checkout to end of transaction |
//! | [`TX_OUTCOMES`] | counter | `outcome` | the guard: `committed`, `rolled_back`, `dropped`, `discarded`, `commit_failed` |
//! | [`TX_NODES`] | counter | `node` (`primary`, `replica`) | the guard: which server served a transaction |
//! | [`POOL_AFFINITY`] | counter | `affine` (`true`, `false`) | the guard, with role affinity on: whether a checkout's connection last ran as its role |
//!
//! # Cardinality
//!
//! [`ORG_REQUESTS`] carries the org id as a label for the first
//! [`org_label_limit`] distinct orgs the process sees ([`DEFAULT_ORG_LABEL_LIMIT`] unless
//! [`set_org_label_limit`] says otherwise); every later org is counted under
//! [`OTHER_ORG`] (`"other"`), so a service with many tenants cannot blow up the metrics backend.
//! No other label carries a value from a request (status codes and error codes are bounded sets).
//!
//! ```
//! use tenant_guard_core::metrics;
//!
//! // At start-up, before the first request: label the first 50 orgs individually.
//! metrics::set_org_label_limit(50);
//! assert_eq!(metrics::org_label_limit(), 50);
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, PoisonError, RwLock};
use std::time::Duration;

use crate::OrgId;
use ::metrics::{
    Counter, Histogram, Key, Label, Level, Metadata, SharedString, counter, histogram,
};

/// Counter of responses produced by the adapters, labelled `status`.
pub const REQUESTS: &str = "tenant_guard_requests_total";
/// Histogram of request latency in seconds (arrival to response produced), labelled `status`.
pub const REQUEST_DURATION: &str = "tenant_guard_request_duration_seconds";
/// Counter of requests refused by the adapters (401, 403, 429, …), labelled `code`.
pub const REJECTIONS: &str = "tenant_guard_rejections_total";
/// Counter of authenticated requests per org, labelled `org_id` with a cardinality cap.
pub const ORG_REQUESTS: &str = "tenant_guard_org_requests_total";
/// Histogram of the time to check a connection out of the pool (the pool wait), in seconds.
pub const POOL_WAIT: &str = "tenant_guard_pool_wait_seconds";
/// Histogram of the time to scope a transaction (`BEGIN` and the scoping statement), in seconds.
pub const SCOPE_DURATION: &str = "tenant_guard_scope_seconds";
/// Histogram of a guarded transaction's total time (checkout to end), labelled `outcome`.
pub const TX_DURATION: &str = "tenant_guard_tx_duration_seconds";
/// Counter of guarded transactions by `outcome`.
pub const TX_OUTCOMES: &str = "tenant_guard_tx_total";
/// Counter: transactions by the server that served them (`node`: `primary`, `replica`).
pub const TX_NODES: &str = "tenant_guard_db_transactions_by_node_total";

/// Counter: checkouts by whether the connection's last transaction ran as the same role
/// (`affine`: `true`, `false`), with the pool's role affinity on.
pub const POOL_AFFINITY: &str = "tenant_guard_pool_checkouts_total";

/// The `org_id` label of every org past the [`org_label_limit`].
pub const OTHER_ORG: &str = "other";
/// How many orgs get a label of their own unless [`set_org_label_limit`] is called.
pub const DEFAULT_ORG_LABEL_LIMIT: usize = 100;

static ORG_LABEL_LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_ORG_LABEL_LIMIT);

/// The org ids that got a label of their own, at most [`org_label_limit`] of them.
fn org_labels() -> &'static RwLock<HashMap<OrgId, &'static [Label]>> {
    static LABELS: OnceLock<RwLock<HashMap<OrgId, &'static [Label]>>> = OnceLock::new();
    LABELS.get_or_init(Default::default)
}

/// Sets how many distinct orgs get an `org_id` label of their own on [`ORG_REQUESTS`]; later
/// orgs are counted as [`OTHER_ORG`]. Orgs already labelled keep their label. `0` labels every
/// org `other`.
pub fn set_org_label_limit(limit: usize) {
    ORG_LABEL_LIMIT.store(limit, Ordering::Relaxed);
}

/// The current cap on distinct `org_id` labels (see [`set_org_label_limit`]).
pub fn org_label_limit() -> usize {
    ORG_LABEL_LIMIT.load(Ordering::Relaxed)
}

/// The label for `org`: its id while fewer than the limit are labelled, else `other`, as a
/// one-label slice for a static key (no allocation per request). A labelled org's slice is
/// leaked once: at most [`org_label_limit`] of them live for the process, as the map's entries
/// always did. A read lock on the hot path; the write lock only the first time an org is seen.
fn org_label(org: &OrgId) -> &'static [Label] {
    static OTHER: [Label; 1] = [Label::from_static_parts("org_id", OTHER_ORG)];
    let labels = org_labels();
    if let Some(label) = labels
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(org)
    {
        return label;
    }
    let mut labels = labels.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(label) = labels.get(org) {
        return label;
    }
    if labels.len() >= org_label_limit() {
        return &OTHER;
    }
    let label: &'static [Label] = Box::leak(Box::new([Label::new("org_id", org.to_string())]));
    labels.insert(org.clone(), label);
    label
}

/// A status code as a label without allocating for the usual ones.
fn status_label(status: u16) -> SharedString {
    let known = match status {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        301 => "301",
        302 => "302",
        303 => "303",
        304 => "304",
        307 => "307",
        308 => "308",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        other => return SharedString::from_owned(other.to_string()),
    };
    SharedString::const_str(known)
}

// The per-request calls below build their keys from static labels when the label's value is
// one of a known set: `counter!`/`histogram!` allocate a label list for a label whose value is
// not a literal, on every call, recorder or not (issue 18: five allocations per guarded
// request). The metadata is the macros' (target this module, level INFO).

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

fn static_counter(name: &'static str, labels: &'static [Label]) -> Counter {
    ::metrics::with_recorder(|r| {
        r.register_counter(&Key::from_static_parts(name, labels), &METADATA)
    })
}

fn static_histogram(name: &'static str, labels: &'static [Label]) -> Histogram {
    ::metrics::with_recorder(|r| {
        r.register_histogram(&Key::from_static_parts(name, labels), &METADATA)
    })
}

/// The one-label slice of `labels` whose value is `value`, if there is one.
fn known(labels: &'static [Label], value: &str) -> Option<&'static [Label]> {
    let i = labels.iter().position(|label| label.value() == value)?;
    labels.get(i..=i)
}

macro_rules! labels {
    ($key:literal: $($value:literal),+ $(,)?) => {
        [$(Label::from_static_parts($key, $value)),+]
    };
}

static STATUS_LABELS: [Label; 24] = labels!("status": "200", "201", "202", "204", "301", "302",
    "303", "304", "307", "308", "400", "401", "403", "404", "405", "409", "413", "415", "422",
    "429", "500", "502", "503", "504");
static OUTCOME_LABELS: [Label; 5] =
    labels!("outcome": "committed", "commit_failed", "rolled_back", "dropped", "discarded");
static NODE_LABELS: [Label; 2] = labels!("node": "primary", "replica");

/// A response was produced.
pub(crate) fn request_finished(status: u16, latency: Duration) {
    let label = status_label(status);
    if let Some(labels) = known(&STATUS_LABELS, &label) {
        static_counter(REQUESTS, labels).increment(1);
        static_histogram(REQUEST_DURATION, labels).record(latency.as_secs_f64());
        return;
    }
    counter!(REQUESTS, "status" => label.clone()).increment(1);
    histogram!(REQUEST_DURATION, "status" => label).record(latency.as_secs_f64());
}

/// A request was refused with `code`.
pub(crate) fn request_rejected(code: &'static str) {
    counter!(REJECTIONS, "code" => code).increment(1);
}

/// A request was authenticated for `org`.
pub(crate) fn org_request(org: &OrgId) {
    static_counter(ORG_REQUESTS, org_label(org)).increment(1);
}

/// Guard: a connection was checked out after `wait`.
pub fn record_pool_wait(wait: Duration) {
    histogram!(POOL_WAIT).record(wait.as_secs_f64());
}

/// Guard: the prelude (`BEGIN` and the scoping statement) took `scope`.
pub fn record_scope(scope: Duration) {
    histogram!(SCOPE_DURATION).record(scope.as_secs_f64());
}

/// Guard: a transaction was checked out on `node` (`primary` or `replica`).
pub fn record_tx_node(node: &'static str) {
    match known(&NODE_LABELS, node) {
        Some(labels) => static_counter(TX_NODES, labels).increment(1),
        None => counter!(TX_NODES, "node" => node).increment(1),
    }
}

/// Guard: a checkout got a connection whose last transaction ran as its role (`affine`) or not.
pub fn record_checkout_affinity(affine: bool) {
    let affine = if affine { "true" } else { "false" };
    counter!(POOL_AFFINITY, "affine" => affine).increment(1);
}

/// Guard: a transaction ended with `outcome` after `total` (from checkout).
pub fn record_tx_end(outcome: &'static str, total: Duration) {
    if let Some(labels) = known(&OUTCOME_LABELS, outcome) {
        static_counter(TX_OUTCOMES, labels).increment(1);
        static_histogram(TX_DURATION, labels).record(total.as_secs_f64());
        return;
    }
    counter!(TX_OUTCOMES, "outcome" => outcome).increment(1);
    histogram!(TX_DURATION, "outcome" => outcome).record(total.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_labels_are_capped_and_later_orgs_are_other() {
        // The only test in this binary touching the global cap and label set.
        set_org_label_limit(2);
        let orgs: Vec<OrgId> = (1..=4).map(|n| uuid::Uuid::from_u128(n).into()).collect();
        let label = |org: &OrgId| {
            let labels = org_label(org);
            assert_eq!((labels.len(), labels[0].key()), (1, "org_id"));
            labels[0].value().to_owned()
        };
        let labels: Vec<String> = orgs.iter().map(label).collect();
        assert_eq!(labels[0], orgs[0].to_string());
        assert_eq!(labels[1], orgs[1].to_string());
        assert_eq!(labels[2], OTHER_ORG);
        assert_eq!(labels[3], OTHER_ORG);
        // A labelled org keeps its label.
        assert_eq!(label(&orgs[0]), orgs[0].to_string());
        set_org_label_limit(DEFAULT_ORG_LABEL_LIMIT);
        assert_eq!(label(&orgs[3]), orgs[3].to_string());
    }

    #[test]
    fn static_labels_are_the_values_the_macros_would_record() {
        for status in [200, 204, 401, 429, 504] {
            let label = status_label(status);
            let labels = known(&STATUS_LABELS, &label).unwrap();
            assert_eq!((labels.len(), labels[0].key()), (1, "status"));
            assert_eq!(labels[0].value(), status.to_string());
        }
        assert!(known(&STATUS_LABELS, &status_label(418)).is_none());
        let committed = known(&OUTCOME_LABELS, "committed").unwrap();
        assert_eq!(
            (committed[0].key(), committed[0].value()),
            ("outcome", "committed")
        );
        assert_eq!(
            known(&NODE_LABELS, "replica").unwrap()[0].value(),
            "replica"
        );
        assert!(known(&NODE_LABELS, "other").is_none());
    }

    #[test]
    fn status_labels_are_the_numbers() {
        for status in [200, 401, 404, 429, 418, 599] {
            assert_eq!(status_label(status).to_string(), status.to_string());
        }
    }
}
