//! Prometheus metrics of the server, in one process-wide registry (`prometheus-client`), served at `/metrics` in
//! Prometheus's text format. README.md ("Metrics") says what each one means.
//!
//! Updates are cheap on a call's path: counters and gauges are atomics; histograms are observed once per event they
//! time (a webhook, a turn, a barge-in), never per frame. Frames and tokens are counted per call and added when the
//! call ends. Label values a peer could choose are bounded: an OpenAI error code is kept only when it looks like one
//! (`[a-z0-9_.]`, at most 64 bytes) and while fewer than [`MAX_ERROR_CODES`] codes are known, else it counts as
//! `other`; a fatal OpenAI error ends a call as `error:openai_fatal` in `callbridge_calls_total` (the record keeps
//! the code).

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::calls::{CallFailure, CallRecord, Direction, EndReason};
use crate::cost::CallCost;

/// The most distinct OpenAI error codes labelled; later ones count as `other`.
pub const MAX_ERROR_CODES: usize = 64;
/// The content type of [`encode`]'s text: Prometheus's text exposition format 0.0.4
/// (<https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format>).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Labels: name, value pairs.
type Labels = Vec<(&'static str, String)>;

/// Every metric of the server.
struct Metrics {
    registry: Registry,
    calls_live: Gauge,
    calls: Family<Labels, Counter>,
    webhook_twiml: Family<Labels, Histogram>,
    start_to_first_audio: Histogram,
    speech_end_to_first_audio: Histogram,
    barge_in_to_clear: Histogram,
    frames_relayed: Family<Labels, Counter>,
    frames_skipped: Counter,
    realtime_errors: Family<Labels, Counter>,
    error_codes: Mutex<HashSet<String>>,
    tokens: Family<Labels, Counter>,
    cost_usd: Family<Labels, Counter<f64, AtomicU64>>,
}

/// Latency buckets from 1 ms to about 33 s, doubling.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 16)
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("callbridge");
    let calls_live = Gauge::default();
    registry.register(
        "calls_live",
        "Calls whose media stream is being relayed now",
        calls_live.clone(),
    );
    let calls = Family::<Labels, Counter>::default();
    registry.register(
        "calls",
        "Calls ended, by direction and end reason",
        calls.clone(),
    );
    let webhook_twiml =
        Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(latency_buckets()));
    registry.register(
        "webhook_twiml_seconds",
        "Voice webhook received to TwiML answered, by route",
        webhook_twiml.clone(),
    );
    let start_to_first_audio = Histogram::new(latency_buckets());
    registry.register(
        "start_to_first_audio_seconds",
        "Media stream start to the first assistant audio sent to Twilio",
        start_to_first_audio.clone(),
    );
    let speech_end_to_first_audio = Histogram::new(latency_buckets());
    registry.register(
        "speech_end_to_first_audio_seconds",
        "End of the caller's speech (speech_stopped) to the first assistant audio of the answer",
        speech_end_to_first_audio.clone(),
    );
    let barge_in_to_clear = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
    registry.register(
        "barge_in_to_clear_seconds",
        "Barge-in (speech_started received) to Twilio clear queued",
        barge_in_to_clear.clone(),
    );
    let frames_relayed = Family::<Labels, Counter>::default();
    registry.register(
        "frames_relayed",
        "Audio frames relayed: caller audio to OpenAI, assistant audio to Twilio",
        frames_relayed.clone(),
    );
    let frames_skipped = Counter::default();
    registry.register(
        "frames_skipped",
        "Media-stream frames skipped (malformed, oversized, binary)",
        frames_skipped.clone(),
    );
    let realtime_errors = Family::<Labels, Counter>::default();
    registry.register(
        "realtime_errors",
        "OpenAI Realtime error events, by code",
        realtime_errors.clone(),
    );
    let tokens = Family::<Labels, Counter>::default();
    registry.register(
        "openai_tokens",
        "OpenAI Realtime tokens of ended calls, by kind",
        tokens.clone(),
    );
    let cost_usd = Family::<Labels, Counter<f64, AtomicU64>>::default();
    registry.register(
        "estimated_cost_usd",
        "Estimated cost of ended calls, US dollars, by meter",
        cost_usd.clone(),
    );
    Metrics {
        registry,
        calls_live,
        calls,
        webhook_twiml,
        start_to_first_audio,
        speech_end_to_first_audio,
        barge_in_to_clear,
        frames_relayed,
        frames_skipped,
        realtime_errors,
        error_codes: Mutex::new(HashSet::new()),
        tokens,
        cost_usd,
    }
});

/// Every metric in Prometheus's text format ([`CONTENT_TYPE`]).
pub fn encode() -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &METRICS.registry);
    to_prometheus_text(&text)
}

/// OpenMetrics text (what `prometheus-client` writes) as Prometheus text 0.0.4: a counter family is named after its
/// `_total` samples in its `# HELP` and `# TYPE` lines, and `# UNIT` and `# EOF` are left out. Prometheus reads
/// both, but the text format is what every classic parser (such as the official Python client's) understands.
fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: HashSet<&str> = open_metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// A call's media stream started to be relayed; the returned guard counts it live until dropped.
pub fn call_live() -> LiveCall {
    METRICS.calls_live.inc();
    LiveCall(())
}

/// Counts a call as live while it exists.
#[derive(Debug)]
pub struct LiveCall(());

impl Drop for LiveCall {
    fn drop(&mut self) {
        METRICS.calls_live.dec();
    }
}

/// A call ended: counts it by direction and end reason, adds its tokens and its estimated cost.
pub fn call_ended(record: &CallRecord) {
    let direction = match record.direction {
        Direction::Inbound => "inbound",
        Direction::OutboundApi => "outbound-api",
    };
    let end_reason = match &record.end_reason {
        Some(EndReason::Error(CallFailure::OpenAiFatal(_))) => "error:openai_fatal".to_owned(),
        Some(reason) => reason.to_string(),
        None => "unknown".to_owned(),
    };
    METRICS
        .calls
        .get_or_create(&vec![
            ("direction", direction.to_owned()),
            ("end_reason", end_reason),
        ])
        .inc();
    let usage = &record.usage;
    for (kind, count) in [
        ("input_text", usage.input_token_details.text_tokens),
        ("input_audio", usage.input_token_details.audio_tokens),
        ("input_cached", usage.input_token_details.cached_tokens),
        ("output_text", usage.output_token_details.text_tokens),
        ("output_audio", usage.output_token_details.audio_tokens),
    ] {
        METRICS
            .tokens
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc_by(count);
    }
    if let Some(cost) = &record.cost {
        add_cost(cost);
    }
}

/// Adds a call's estimated cost, by meter.
fn add_cost(cost: &CallCost) {
    for (meter, usd) in [
        ("openai", cost.openai_usd),
        ("transcription", cost.transcription_usd),
        ("twilio", cost.twilio_usd),
    ] {
        METRICS
            .cost_usd
            .get_or_create(&vec![("meter", meter.to_owned())])
            .inc_by(usd);
    }
}

/// A voice webhook (`route`: `incoming-call`, `outbound-call`) was answered with TwiML `elapsed` after it arrived.
pub fn webhook_answered(route: &'static str, elapsed: Duration) {
    METRICS
        .webhook_twiml
        .get_or_create(&vec![("route", route.to_owned())])
        .observe(elapsed.as_secs_f64());
}

/// Times a voice webhook: observed when dropped (the TwiML answered, or the request refused).
#[derive(Debug)]
pub struct WebhookTimer {
    route: &'static str,
    started: std::time::Instant,
}

impl WebhookTimer {
    /// Starts timing the webhook of `route` (`incoming-call`, `outbound-call`).
    pub fn start(route: &'static str) -> Self {
        WebhookTimer {
            route,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for WebhookTimer {
    fn drop(&mut self) {
        webhook_answered(self.route, self.started.elapsed());
    }
}

/// The first assistant audio of a call went out `elapsed` after its stream started.
pub fn first_audio(elapsed: Duration) {
    METRICS.start_to_first_audio.observe(elapsed.as_secs_f64());
}

/// The first assistant audio of an answer went out `elapsed` after the caller stopped speaking.
pub fn answer_audio(elapsed: Duration) {
    METRICS
        .speech_end_to_first_audio
        .observe(elapsed.as_secs_f64());
}

/// A barge-in's `clear` was queued for Twilio `elapsed` after its `speech_started` arrived.
pub fn barge_in_cleared(elapsed: Duration) {
    METRICS.barge_in_to_clear.observe(elapsed.as_secs_f64());
}

/// Adds one call's relayed and skipped frames (counted by the call, added once).
pub fn frames(caller_to_openai: u64, assistant_to_twilio: u64, skipped: u64) {
    METRICS
        .frames_relayed
        .get_or_create(&vec![("direction", "caller_to_openai".to_owned())])
        .inc_by(caller_to_openai);
    METRICS
        .frames_relayed
        .get_or_create(&vec![("direction", "assistant_to_twilio".to_owned())])
        .inc_by(assistant_to_twilio);
    METRICS.frames_skipped.inc_by(skipped);
}

/// OpenAI sent an `error` event with `code` (`None`: no code).
pub fn realtime_error(code: Option<&str>) {
    let code = bounded_code(code);
    METRICS
        .realtime_errors
        .get_or_create(&vec![("code", code)])
        .inc();
}

/// The label of an error code: `none`, the code itself, or `other` (see the module docs).
fn bounded_code(code: Option<&str>) -> String {
    let Some(code) = code else {
        return "none".to_owned();
    };
    let plausible = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    if !plausible {
        return "other".to_owned();
    }
    let mut known = METRICS
        .error_codes
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if known.contains(code) || known.len() < MAX_ERROR_CODES {
        known.insert(code.to_owned());
        code.to_owned()
    } else {
        "other".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_code_a_peer_made_up_is_labelled_other() {
        assert_eq!(bounded_code(Some("invalid_value")), "invalid_value");
        assert_eq!(bounded_code(Some("Robert'); DROP")), "other");
        assert_eq!(bounded_code(Some(&"a".repeat(65))), "other");
        assert_eq!(bounded_code(None), "none");
    }

    #[test]
    fn counters_are_named_after_their_total_samples_and_the_openmetrics_end_is_dropped() {
        let open_metrics = "# HELP x_calls Calls.\n# TYPE x_calls counter\nx_calls_total 2\n# HELP x_live Live.\n\
                            # TYPE x_live gauge\nx_live 1\n# EOF\n";

        let text = to_prometheus_text(open_metrics);

        assert_eq!(
            text,
            "# HELP x_calls_total Calls.\n# TYPE x_calls_total counter\nx_calls_total 2\n# HELP x_live Live.\n\
             # TYPE x_live gauge\nx_live 1\n"
        );
    }

    #[test]
    fn the_text_names_every_metric_family() {
        realtime_error(Some("invalid_value"));
        webhook_answered("incoming-call", Duration::from_millis(3));

        let text = encode();

        for name in [
            "callbridge_calls_live",
            "callbridge_webhook_twiml_seconds",
            "callbridge_start_to_first_audio_seconds",
            "callbridge_barge_in_to_clear_seconds",
            "callbridge_realtime_errors_total{code=\"invalid_value\"} ",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}
