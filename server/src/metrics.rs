//! Counters for `/metrics` in the Prometheus text format: requests by route and status, and
//! ADQL queries with their durations.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the query-duration histogram buckets.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    requests: BTreeMap<(String, u16), u64>,
    queries_ok: u64,
    queries_failed: u64,
    buckets: [u64; BUCKETS.len()],
    seconds_sum: f64,
}

impl Metrics {
    /// One HTTP request answered.
    pub fn request(&self, route: &str, status: u16) {
        if let Ok(mut c) = self.inner.lock() {
            *c.requests.entry((route.to_string(), status)).or_default() += 1;
        }
    }

    /// One ADQL query run, successful or not.
    pub fn query(&self, took: Duration, ok: bool) {
        if let Ok(mut c) = self.inner.lock() {
            if ok {
                c.queries_ok += 1;
            } else {
                c.queries_failed += 1;
            }
            let secs = took.as_secs_f64();
            c.seconds_sum += secs;
            for (b, bound) in c.buckets.iter_mut().zip(BUCKETS) {
                if secs <= bound {
                    *b += 1;
                }
            }
        }
    }

    /// The Prometheus exposition text.
    pub fn render(&self) -> String {
        let Ok(c) = self.inner.lock() else {
            return String::new();
        };
        let mut out = String::from(
            "# HELP insitu_http_requests_total HTTP requests answered.\n\
             # TYPE insitu_http_requests_total counter\n",
        );
        for ((route, status), n) in &c.requests {
            let _ = writeln!(
                out,
                "insitu_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let total = c.queries_ok + c.queries_failed;
        let _ = write!(
            out,
            "# HELP insitu_adql_queries_total ADQL queries run.\n\
             # TYPE insitu_adql_queries_total counter\n\
             insitu_adql_queries_total{{outcome=\"ok\"}} {}\n\
             insitu_adql_queries_total{{outcome=\"error\"}} {}\n\
             # HELP insitu_adql_query_seconds Time to plan and run an ADQL query.\n\
             # TYPE insitu_adql_query_seconds histogram\n",
            c.queries_ok, c.queries_failed
        );
        for (n, bound) in c.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                out,
                "insitu_adql_query_seconds_bucket{{le=\"{bound}\"}} {n}"
            );
        }
        let _ = write!(
            out,
            "insitu_adql_query_seconds_bucket{{le=\"+Inf\"}} {total}\n\
             insitu_adql_query_seconds_sum {}\n\
             insitu_adql_query_seconds_count {total}\n",
            c.seconds_sum
        );
        out
    }
}
