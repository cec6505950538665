//! The daemon's Prometheus metrics (`GET /metrics` on the dashboard listener).
//!
//! Owns: counters and histograms observed on the event bus (every event passes
//! [`Metrics::observe_event`] as it is published) and on the API (a middleware calls
//! [`Metrics::observe_api`]), and gauges set from a [`Snapshot`] at scrape time; renders them
//! as Prometheus/OpenMetrics text.
//!
//! Never: blocks the publisher beyond a short uncontended lock of its own; takes a lock of
//! the bus or the run manager; makes a label of anything unbounded or agent-controlled
//! (hosts, paths: never; grant names and routes: capped, the rest folded into `other`);
//! records a grant's value.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paddock_api::{AuditStats, Event, EventBusStats};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Distinct grant names kept as labels; later ones count as `other`.
const MAX_GRANT_LABELS: usize = 64;
/// Distinct API routes kept as labels (they are route templates, so this is generous).
const MAX_ROUTE_LABELS: usize = 128;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    kind: &'static str,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RcodeLabel {
    rcode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantLabel {
    grant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    listener: &'static str,
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLatencyLabels {
    listener: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    state: String,
    runtime: String,
}

/// What only the scrape can know.
pub struct Snapshot {
    /// (state, runtime) of every run the daemon knows, live and ended.
    pub runs: Vec<(String, String)>,
    pub audit: AuditStats,
    pub audit_checkpoints: u64,
    pub bus: EventBusStats,
    pub open_streams: u64,
    pub ui_sessions: u64,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    bytes: Family<DirectionLabel, Counter>,
    latency: Family<KindLabel, Histogram>,
    dns: Family<RcodeLabel, Counter>,
    grant_uses: Family<GrantLabel, Counter>,
    grants_seen: Mutex<HashSet<String>>,
    runs_created: Counter,
    run_exits: Counter,
    events: Family<KindLabel, Counter>,
    api_requests: Family<ApiLabels, Counter>,
    api_latency: Family<ApiLatencyLabels, Histogram>,
    routes_seen: Mutex<HashSet<String>>,
    runs: Family<RunLabels, Gauge>,
    audit_entries: Counter,
    audit_pending: Gauge,
    audit_failed: Counter,
    audit_logs_open: Gauge,
    audit_checkpoints: Counter,
    bus_published: Counter,
    bus_subscribers: Gauge,
    bus_dropped: Counter,
    open_streams: Gauge,
    ui_sessions: Gauge,
    /// One scrape at a time (a scrape resets the run gauges before setting them).
    scrape: Mutex<()>,
}

fn egress_histogram() -> Histogram {
    // 100 µs … ~105 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

fn api_histogram() -> Histogram {
    // 100 µs … ~13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// `name` if it is one of the first `cap` distinct values seen, else `other`.
fn capped(seen: &Mutex<HashSet<String>>, name: &str, cap: usize) -> String {
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    if seen.contains(name) {
        return name.to_string();
    }
    if seen.len() < cap {
        seen.insert(name.to_string());
        return name.to_string();
    }
    "other".to_string()
}

fn record_kind(s: &str) -> &'static str {
    match s {
        "http" => "http",
        "passthrough" => "passthrough",
        "connection" => "connection",
        "dns" => "dns",
        _ => "other",
    }
}

fn rcode(status: Option<u64>) -> &'static str {
    match status {
        Some(0) => "NOERROR",
        Some(1) => "FORMERR",
        Some(2) => "SERVFAIL",
        Some(3) => "NXDOMAIN",
        Some(4) => "NOTIMP",
        Some(5) => "REFUSED",
        _ => "other",
    }
}

fn event_family(kind: &str) -> &'static str {
    match kind.split('.').next().unwrap_or("") {
        "run" => "run",
        "init" => "init",
        "net" => "net",
        "grant" => "grant",
        "layer" => "layer",
        "daemon" => "daemon",
        "audit" => "audit",
        "worktree" => "worktree",
        _ => "other",
    }
}

fn method_label(m: &str) -> &'static str {
    match m {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

fn gauge(g: &Gauge, v: u64) {
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
}

/// A counter whose total is kept elsewhere (the audit's, the bus's): set at scrape time.
fn total(c: &Counter, v: u64) {
    c.inner().store(v, Ordering::Relaxed);
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "paddock_egress_requests",
            "Requests, connections and DNS queries from sandboxes, by record kind and decision",
            requests.clone(),
        );
        let bytes = Family::<DirectionLabel, Counter>::default();
        registry.register(
            "paddock_egress_bytes",
            "Bytes through the egress proxy (up: from sandboxes, down: to them)",
            bytes.clone(),
        );
        let latency = Family::<KindLabel, Histogram>::new_with_constructor(
            egress_histogram as fn() -> Histogram,
        );
        registry.register(
            "paddock_egress_request_duration_seconds",
            "Duration of proxied requests and connections, by record kind",
            latency.clone(),
        );
        let dns = Family::<RcodeLabel, Counter>::default();
        registry.register(
            "paddock_dns_answers",
            "Answers of the sandboxes' DNS stub, by response code",
            dns.clone(),
        );
        let grant_uses = Family::<GrantLabel, Counter>::default();
        registry.register(
            "paddock_grant_uses",
            "Credentials injected into requests, by grant name (never the value)",
            grant_uses.clone(),
        );
        let runs_created = Counter::default();
        registry.register("paddock_runs_created", "Runs created", runs_created.clone());
        let run_exits = Counter::default();
        registry.register(
            "paddock_run_exits",
            "Runs whose command ended",
            run_exits.clone(),
        );
        let events = Family::<KindLabel, Counter>::default();
        registry.register(
            "paddock_bus_events",
            "Events published on the daemon's bus, by kind family",
            events.clone(),
        );
        let api_requests = Family::<ApiLabels, Counter>::default();
        registry.register(
            "paddock_api_requests",
            "API requests, by listener (socket, ui), method, route and status",
            api_requests.clone(),
        );
        let api_latency = Family::<ApiLatencyLabels, Histogram>::new_with_constructor(
            api_histogram as fn() -> Histogram,
        );
        registry.register(
            "paddock_api_request_duration_seconds",
            "API latency until the response head, by listener and route",
            api_latency.clone(),
        );
        let runs = Family::<RunLabels, Gauge>::default();
        registry.register(
            "paddock_runs",
            "Runs the daemon knows, by state and runtime",
            runs.clone(),
        );
        let mut c = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let audit_entries = c(
            "paddock_audit_entries",
            "Audit entries written and fsynced since the daemon started",
        );
        let audit_failed = c(
            "paddock_audit_entries_failed",
            "Audit entries that could not be recorded since the daemon started",
        );
        let audit_checkpoints = c(
            "paddock_audit_checkpoints",
            "Audit checkpoints signed since the daemon started",
        );
        let bus_published = c(
            "paddock_bus_published",
            "Events published since the daemon started",
        );
        let bus_dropped = c(
            "paddock_bus_dropped",
            "Events a slow subscriber lost (the stream got a `dropped` event instead)",
        );
        let mut g = |name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let audit_pending = g(
            "paddock_audit_entries_pending",
            "Audit entries queued, not yet durable",
        );
        let audit_logs_open = g(
            "paddock_audit_logs_open",
            "Audit logs open (the daemon's and each live run's)",
        );
        let bus_subscribers = g(
            "paddock_bus_subscribers",
            "Subscribers of the event bus now",
        );
        let open_streams = g(
            "paddock_api_open_streams",
            "Long-lived API streams open (logs -f, events, attach)",
        );
        let ui_sessions = g("paddock_ui_sessions", "Dashboard sessions");
        Arc::new(Metrics {
            registry,
            requests,
            bytes,
            latency,
            dns,
            grant_uses,
            grants_seen: Mutex::new(HashSet::new()),
            runs_created,
            run_exits,
            events,
            api_requests,
            api_latency,
            routes_seen: Mutex::new(HashSet::new()),
            runs,
            audit_entries,
            audit_pending,
            audit_failed,
            audit_logs_open,
            audit_checkpoints,
            bus_published,
            bus_subscribers,
            bus_dropped,
            open_streams,
            ui_sessions,
            scrape: Mutex::new(()),
        })
    }

    /// One published event (on the publisher's thread).
    pub fn observe_event(&self, e: &Event) {
        self.events
            .get_or_create(&KindLabel {
                kind: event_family(&e.kind),
            })
            .inc();
        match e.kind.as_str() {
            "net.request" | "net.denied" => self.observe_net(e),
            "grant.used" => {
                let name = e.data["grant"].as_str().unwrap_or("unknown");
                let grant = capped(&self.grants_seen, name, MAX_GRANT_LABELS);
                self.grant_uses.get_or_create(&GrantLabel { grant }).inc();
            }
            "run.created" => {
                self.runs_created.inc();
            }
            "run.exit" => {
                self.run_exits.inc();
            }
            _ => {}
        }
    }

    fn observe_net(&self, e: &Event) {
        let d = &e.data;
        let kind = record_kind(d["kind"].as_str().unwrap_or(""));
        let decision = if e.kind == "net.request" {
            "allowed"
        } else {
            "denied"
        };
        self.requests
            .get_or_create(&RequestLabels { kind, decision })
            .inc();
        if kind == "dns" {
            self.dns
                .get_or_create(&RcodeLabel {
                    rcode: rcode(d["status"].as_u64()),
                })
                .inc();
            return;
        }
        let up = d["bytes_up"].as_u64().unwrap_or(0);
        let down = d["bytes_down"].as_u64().unwrap_or(0);
        if up > 0 {
            self.bytes
                .get_or_create(&DirectionLabel { direction: "up" })
                .inc_by(up);
        }
        if down > 0 {
            self.bytes
                .get_or_create(&DirectionLabel { direction: "down" })
                .inc_by(down);
        }
        if let Some(us) = d["duration_us"].as_u64() {
            self.latency
                .get_or_create(&KindLabel { kind })
                .observe(us as f64 / 1e6);
        }
    }

    /// One API request, `route` being the matched route template (or `unmatched`).
    pub fn observe_api(
        &self,
        listener: &'static str,
        method: &str,
        route: &str,
        status: u16,
        elapsed: Duration,
    ) {
        let route = capped(&self.routes_seen, route, MAX_ROUTE_LABELS);
        self.api_requests
            .get_or_create(&ApiLabels {
                listener,
                method: method_label(method),
                route: route.clone(),
                status,
            })
            .inc();
        self.api_latency
            .get_or_create(&ApiLatencyLabels { listener, route })
            .observe(elapsed.as_secs_f64());
    }

    /// Everything, as OpenMetrics text (which Prometheus reads).
    pub fn render(&self, snap: &Snapshot) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.runs.clear();
        for (state, runtime) in &snap.runs {
            self.runs
                .get_or_create(&RunLabels {
                    state: state.clone(),
                    runtime: runtime.clone(),
                })
                .inc();
        }
        total(&self.audit_entries, snap.audit.acked_entries);
        gauge(&self.audit_pending, snap.audit.pending);
        total(&self.audit_failed, snap.audit.failed);
        gauge(&self.audit_logs_open, snap.audit.logs_open);
        total(&self.audit_checkpoints, snap.audit_checkpoints);
        total(&self.bus_published, snap.bus.published);
        gauge(&self.bus_subscribers, snap.bus.subscribers);
        total(&self.bus_dropped, snap.bus.dropped);
        gauge(&self.open_streams, snap.open_streams);
        gauge(&self.ui_sessions, snap.ui_sessions);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "could not encode the metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_egress::{Decision, NetRecord, RecordKind};

    fn event(kind: &str, data: serde_json::Value) -> Event {
        Event {
            seq: 1,
            ts: String::new(),
            run_id: Some("r".into()),
            kind: kind.into(),
            data,
        }
    }

    /// A record as the daemon publishes it (egress.rs `publish`).
    fn net(kind: RecordKind, allowed: bool, status: u16) -> Event {
        let decision = if allowed {
            Decision {
                allowed: true,
                rule: paddock_egress::RuleRef::Default {
                    policy: "allow".into(),
                },
            }
        } else {
            Decision::builtin_deny("test")
        };
        let mut r = NetRecord::new(kind, "api.example.com", decision);
        r.status = Some(status);
        r.bytes_up = 10;
        r.bytes_down = 100;
        r.duration_us = 1500;
        let mut data = serde_json::to_value(&r).unwrap();
        data["rule"] = "x".into();
        event(if allowed { "net.request" } else { "net.denied" }, data)
    }

    fn snap() -> Snapshot {
        Snapshot {
            runs: vec![
                ("running".into(), "native".into()),
                ("running".into(), "native".into()),
                ("stopped".into(), "docker".into()),
            ],
            audit: AuditStats {
                acked_entries: 5,
                pending: 2,
                ..AuditStats::default()
            },
            audit_checkpoints: 3,
            bus: EventBusStats {
                published: 7,
                ..EventBusStats::default()
            },
            open_streams: 1,
            ui_sessions: 2,
        }
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn egress_dns_grants_and_runs() {
        let m = Metrics::new();
        m.observe_event(&net(RecordKind::Http, true, 200));
        m.observe_event(&net(RecordKind::Http, true, 200));
        m.observe_event(&net(RecordKind::Http, false, 403));
        m.observe_event(&net(RecordKind::Dns, false, 3));
        m.observe_event(&event("grant.used", serde_json::json!({"grant": "github"})));
        m.observe_event(&event("run.created", serde_json::json!({})));
        m.observe_api("socket", "GET", "/v1/runs", 200, Duration::from_millis(2));
        let text = m.render(&snap());
        let want = [
            "paddock_egress_requests_total{kind=\"http\",decision=\"allowed\"} 2",
            "paddock_egress_requests_total{kind=\"http\",decision=\"denied\"} 1",
            "paddock_egress_requests_total{kind=\"dns\",decision=\"denied\"} 1",
            "paddock_dns_answers_total{rcode=\"NXDOMAIN\"} 1",
            "paddock_egress_bytes_total{direction=\"down\"} 300",
            "paddock_egress_request_duration_seconds_count{kind=\"http\"} 3",
            "paddock_grant_uses_total{grant=\"github\"} 1",
            "paddock_runs_created_total 1",
            "paddock_runs{state=\"running\",runtime=\"native\"} 2",
            "paddock_runs{state=\"stopped\",runtime=\"docker\"} 1",
            "paddock_audit_checkpoints_total 3",
            "# TYPE paddock_audit_checkpoints counter",
            "paddock_bus_published_total 7",
            "paddock_audit_entries_total 5",
            "paddock_audit_entries_pending 2",
            "paddock_api_open_streams 1",
            "paddock_ui_sessions 2",
            "paddock_api_requests_total{listener=\"socket\",method=\"GET\",route=\"/v1/runs\",status=\"200\"} 1",
            "paddock_api_request_duration_seconds_count{listener=\"socket\",route=\"/v1/runs\"} 1",
        ];
        for w in want {
            assert!(text.lines().any(|l| l == w), "missing `{w}` in:\n{text}");
        }
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
        // Hosts and paths are never labels.
        assert!(!text.contains("api.example.com"), "{text}");
    }

    #[test]
    fn run_gauges_are_what_the_scrape_sees() {
        let m = Metrics::new();
        m.render(&snap());
        let mut s = snap();
        s.runs = vec![("failed".into(), "gvisor".into())];
        let text = m.render(&s);
        assert!(
            line(&text, "paddock_runs{state=\"running\"").is_none(),
            "{text}"
        );
        assert!(line(&text, "paddock_runs{state=\"failed\",runtime=\"gvisor\"} 1").is_some());
    }

    #[test]
    fn hostile_label_values_are_capped() {
        let m = Metrics::new();
        for i in 0..10_000 {
            m.observe_event(&event(
                "grant.used",
                serde_json::json!({"grant": format!("g{i}")}),
            ));
            m.observe_api("ui", "BREW", &format!("/r{i}"), 404, Duration::ZERO);
        }
        let text = m.render(&snap());
        let grants = text
            .lines()
            .filter(|l| l.starts_with("paddock_grant_uses_total{"))
            .count();
        assert_eq!(grants, MAX_GRANT_LABELS + 1, "{grants}");
        assert!(text.lines().any(|l| l
            == format!(
                "paddock_grant_uses_total{{grant=\"other\"}} {}",
                10_000 - MAX_GRANT_LABELS
            )),);
        let routes = text
            .lines()
            .filter(|l| l.starts_with("paddock_api_requests_total{"))
            .count();
        assert_eq!(routes, MAX_ROUTE_LABELS + 1);
        assert!(text.contains("method=\"other\""));
    }

    #[test]
    fn malformed_events_never_panic() {
        let m = Metrics::new();
        for data in [
            serde_json::Value::Null,
            serde_json::json!("text"),
            serde_json::json!({"kind": 5, "bytes_up": "x", "duration_us": -1, "status": "y"}),
            serde_json::json!({"grant": ["a"]}),
            serde_json::json!({"kind": "http", "bytes_up": "x", "bytes_down": 5, "duration_us": 2.5}),
        ] {
            for kind in [
                "net.request",
                "net.denied",
                "grant.used",
                "run.exit",
                "",
                ".",
            ] {
                m.observe_event(&event(kind, data.clone()));
            }
        }
        let text = m.render(&snap());
        assert!(
            text.contains("paddock_egress_requests_total{kind=\"other\",decision=\"allowed\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("paddock_grant_uses_total{grant=\"unknown\"} 5"),
            "{text}"
        );
        // What could be read is counted: the kind, the bytes down.
        for w in [
            "paddock_egress_requests_total{kind=\"http\",decision=\"allowed\"} 1",
            "paddock_egress_requests_total{kind=\"http\",decision=\"denied\"} 1",
            "paddock_egress_bytes_total{direction=\"down\"} 10",
            "paddock_run_exits_total 5",
        ] {
            assert!(text.lines().any(|l| l == w), "missing `{w}` in:\n{text}");
        }
        assert!(line(&text, "paddock_egress_bytes_total{direction=\"up\"}").is_none());
    }
}
