//! `switchyard_http_requests_total` and
//! `switchyard_http_request_duration_seconds`: counted per route in
//! stripes by thread ([`crate::stripes`]) and added up when scraped.
//!
//! Every request counts into both. Prometheus' own counter and histogram
//! are atomics every thread writes, so both shard threads took the same
//! cache lines from each other on every request; here each thread writes
//! only its own stripe. A scrape reads every stripe of every route that
//! has had a request, which is the work a scrape did before (one child
//! per series) times the stripe count.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

use crate::stripes::{self, STRIPES};

/// Bucket bounds of the duration histogram, in microseconds: from a fast
/// local upstream to a long poll (0.5 ms … 60 s).
const BOUNDS_US: [u64; 16] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// Status codes counted in the stripes; others (rare) in a locked map.
/// Fourteen, so a stripe fills two cache lines exactly.
const COMMON_CODES: [u16; 14] = [
    200, 201, 204, 206, 301, 302, 304, 400, 404, 499, 500, 502, 503, 504,
];

const REQUESTS: &str = "switchyard_http_requests_total";
const DURATION: &str = "switchyard_http_request_duration_seconds";

/// One thread's counts for one route.
#[derive(Default)]
struct Stripe {
    codes: [AtomicU64; COMMON_CODES.len()],
    /// Requests per bucket, not cumulative; the last slot is above the
    /// last bound. Their total is the request count, so a scrape's count
    /// and buckets always agree.
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_nanos: AtomicU64,
}

/// One route's counts: a stripe per thread, and the rare status codes.
#[derive(Default)]
pub(crate) struct RouteCells {
    stripes: [CachePadded<Stripe>; STRIPES],
    other_codes: Mutex<BTreeMap<u16, u64>>,
}

impl RouteCells {
    /// Counts one finished request.
    pub(crate) fn count(&self, code: u16, elapsed: Duration) {
        let stripe = &self.stripes[stripes::current()];
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_US
            .iter()
            .position(|&us| nanos <= us * 1_000)
            .unwrap_or(BOUNDS_US.len());
        stripe.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        stripe.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        match COMMON_CODES.iter().position(|&c| c == code) {
            Some(i) => {
                stripe.codes[i].fetch_add(1, Ordering::Relaxed);
            }
            None => {
                if let Ok(mut other) = self.other_codes.lock() {
                    *other.entry(code).or_default() += 1;
                }
            }
        }
    }

    /// Requests by status code, the stripes added up.
    fn by_code(&self) -> BTreeMap<u16, u64> {
        let mut out = match self.other_codes.lock() {
            Ok(other) => other.clone(),
            Err(_) => BTreeMap::new(),
        };
        for (i, &code) in COMMON_CODES.iter().enumerate() {
            let n: u64 = self
                .stripes
                .iter()
                .map(|s| s.codes[i].load(Ordering::Relaxed))
                .sum();
            if n > 0 {
                *out.entry(code).or_default() += n;
            }
        }
        out
    }

    /// The duration histogram, the stripes added up; `None` before the
    /// first request.
    fn histogram(&self) -> Option<proto::Histogram> {
        let mut per_bucket = [0u64; BOUNDS_US.len() + 1];
        let mut sum_nanos: u64 = 0;
        for s in &self.stripes {
            for (total, n) in per_bucket.iter_mut().zip(&s.buckets) {
                *total += n.load(Ordering::Relaxed);
            }
            sum_nanos = sum_nanos.wrapping_add(s.sum_nanos.load(Ordering::Relaxed));
        }
        let count: u64 = per_bucket.iter().sum();
        if count == 0 {
            return None;
        }
        let mut cumulative = 0;
        let buckets = BOUNDS_US
            .iter()
            .zip(per_bucket)
            .map(|(&us, n)| {
                cumulative += n;
                let mut b = proto::Bucket::default();
                b.set_cumulative_count(cumulative);
                b.set_upper_bound(us as f64 / 1e6);
                b
            })
            .collect();
        let mut h = proto::Histogram::default();
        h.set_sample_count(count);
        h.set_sample_sum(sum_nanos as f64 / 1e9);
        h.set_bucket(buckets);
        Some(h)
    }
}

/// The two request metrics of every route that has had a request: a
/// route's cells are made on its first request (so a large table of idle
/// routes costs nothing) and kept by its label for good, so a reloaded
/// table that keeps a route keeps counting into its series.
pub(crate) struct RequestSeries {
    descs: [Desc; 2],
    routes: Mutex<BTreeMap<String, Arc<RouteCells>>>,
}

impl RequestSeries {
    pub(crate) fn new() -> prometheus::Result<Self> {
        let requests = Desc::new(
            REQUESTS.to_owned(),
            "Requests on the main listener by configured route path (unmatched when none) and status code.".to_owned(),
            vec!["route".to_owned(), "code".to_owned()],
            Default::default(),
        )?;
        let duration = Desc::new(
            DURATION.to_owned(),
            "Full request time on the main listener, by configured route path.".to_owned(),
            vec!["route".to_owned()],
            Default::default(),
        )?;
        Ok(RequestSeries {
            descs: [requests, duration],
            routes: Mutex::new(BTreeMap::new()),
        })
    }

    /// The cells of `route`, made if it has none yet.
    pub(crate) fn cells(&self, route: &str) -> Arc<RouteCells> {
        match self.routes.lock() {
            Ok(mut routes) => Arc::clone(routes.entry(route.to_owned()).or_default()),
            // A panic while holding the map (there is no code that can)
            // loses the series, never the request.
            Err(_) => Arc::default(),
        }
    }

    /// `switchyard_http_requests_total` as it stands.
    pub(crate) fn requests(&self) -> MetricFamily {
        let routes = self.routes();
        let mut metrics = Vec::new();
        for (route, cells) in &routes {
            for (code, n) in cells.by_code() {
                let mut counter = proto::Counter::default();
                counter.set_value(n as f64);
                let mut m = proto::Metric::from_label(labels(&[
                    ("code", &code.to_string()),
                    ("route", route),
                ]));
                m.set_counter(counter);
                metrics.push(m);
            }
        }
        family(&self.descs[0], MetricType::COUNTER, metrics)
    }

    fn durations(&self) -> MetricFamily {
        let metrics = self
            .routes()
            .iter()
            .filter_map(|(route, cells)| {
                let mut m = proto::Metric::from_label(labels(&[("route", route)]));
                m.set_histogram(cells.histogram()?);
                Some(m)
            })
            .collect();
        family(&self.descs[1], MetricType::HISTOGRAM, metrics)
    }

    /// The routes and their cells, copied out so the lock is not held
    /// while the stripes are read.
    fn routes(&self) -> Vec<(String, Arc<RouteCells>)> {
        match self.routes.lock() {
            Ok(routes) => routes
                .iter()
                .map(|(r, c)| (r.clone(), Arc::clone(c)))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Label pairs, given in name order (as Prometheus' own metrics keep them).
fn labels(pairs: &[(&str, &str)]) -> Vec<proto::LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut l = proto::LabelPair::default();
            l.set_name((*name).to_owned());
            l.set_value((*value).to_owned());
            l
        })
        .collect()
}

fn family(desc: &Desc, kind: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(desc.fq_name.clone());
    f.set_help(desc.help.clone());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

/// Registers [`RequestSeries`] (shared with the routes' handles).
pub(crate) struct Registered(pub(crate) Arc<RequestSeries>);

impl Collector for Registered {
    fn desc(&self) -> Vec<&Desc> {
        self.0.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        vec![self.0.requests(), self.0.durations()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts from several threads add up per code and per bucket, with
    /// the bucket bounds and the sum in seconds.
    #[test]
    fn counts_from_every_thread_add_up() {
        let series = Arc::new(RequestSeries::new().unwrap_or_else(|e| panic!("{e}")));
        let cells = series.cells("/a");
        assert!(Arc::ptr_eq(&cells, &series.cells("/a")), "one per route");
        let threads: Vec<_> = (0..STRIPES + 2)
            .map(|_| {
                let cells = Arc::clone(&cells);
                std::thread::spawn(move || {
                    cells.count(200, Duration::from_micros(500));
                    cells.count(418, Duration::from_millis(2));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap_or_else(|_| panic!("thread"));
        }
        cells.count(200, Duration::from_secs(61));
        let threads = (STRIPES + 2) as u64;
        assert_eq!(
            cells.by_code(),
            BTreeMap::from([(200, threads + 1), (418, threads)])
        );
        let h = cells.histogram().unwrap_or_else(|| panic!("histogram"));
        assert_eq!(h.get_sample_count(), 2 * threads + 1);
        let expected_sum = threads as f64 * 0.0025 + 61.0;
        assert!(
            (h.get_sample_sum() - expected_sum).abs() < 1e-9,
            "{}",
            h.get_sample_sum()
        );
        let b = h.get_bucket();
        assert_eq!(b.len(), BOUNDS_US.len());
        // 500 µs is in the first bucket (bounds are inclusive), 2 ms in
        // the third; 61 s only in the count.
        assert_eq!(
            (b[0].upper_bound(), b[0].cumulative_count()),
            (0.0005, threads)
        );
        assert_eq!(b[1].cumulative_count(), threads);
        assert_eq!(
            (b[2].upper_bound(), b[2].cumulative_count()),
            (0.0025, 2 * threads)
        );
        assert_eq!(b[15].upper_bound(), 60.0);
        assert_eq!(b[15].cumulative_count(), 2 * threads);
    }

    #[test]
    fn a_stripe_fills_two_cache_lines() {
        assert_eq!(std::mem::size_of::<Stripe>(), 256);
        assert_eq!(std::mem::size_of::<CachePadded<Stripe>>(), 256);
    }

    /// A route without requests has no series; one with requests has
    /// both, labelled as Prometheus' own metrics would be.
    #[test]
    fn only_routes_with_requests_have_series() {
        let series = RequestSeries::new().unwrap_or_else(|e| panic!("{e}"));
        let _idle = series.cells("/idle");
        series.cells("/busy").count(404, Duration::from_millis(1));
        let requests = series.requests();
        assert_eq!(requests.name(), REQUESTS);
        let m = requests.get_metric();
        assert_eq!(m.len(), 1);
        let pairs: Vec<(&str, &str)> = m[0]
            .get_label()
            .iter()
            .map(|l| (l.name(), l.value()))
            .collect();
        assert_eq!(pairs, [("code", "404"), ("route", "/busy")]);
        assert_eq!(m[0].get_counter().get_value(), 1.0);
        let durations = series.durations();
        assert_eq!(durations.get_metric().len(), 1);
        assert_eq!(durations.get_field_type(), MetricType::HISTOGRAM);
    }
}
