//! Benchmark of the relay's per-frame hot path, in process (no sockets): what one Twilio `media` frame and one OpenAI
//! `response.output_audio.delta` cost in time, heap allocations and bytes.
//!
//! Run with `cargo bench --bench relay` (release profile). It prints figures; it asserts nothing about time (the
//! machines are shared and noisy). Each case runs [`WARMUP_ITERATIONS`] untimed, then [`RUNS`] timed runs of
//! [`ITERATIONS`]; the table gives the median and the fastest run in ns per operation, and allocations and bytes
//! allocated per operation counted by a wrapper around the system allocator (the `#[global_allocator]` below).
//!
//! Messages are realistic: the Twilio `media` frame is `tests/fixtures/twilio/media.json` (a 160-byte / 20 ms μ-law
//! frame, base64) made compact as Twilio sends it; the OpenAI delta is `tests/fixtures/realtime/
//! response.output_audio.delta.json`, compact, carrying 100 ms (800 bytes) of μ-law tone. The conductor is driven
//! the way the bridge drives it: `parse_*` → `Conductor::on_*` into one `Vec<Action>` reused across frames.
//!
//! The issue's budget (DESIGN.md "The bridge"): no base64 decoding, no allocation per frame beyond the outgoing
//! message(s), no info-level logging per frame. The `expected` column is that budget; a final pass counts the
//! `tracing` events each case emits, by level.
// The counting allocator below is a `GlobalAlloc`, which cannot be written without `unsafe`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use callbridge::calls::{CallRecord, Direction};
use callbridge::realtime::client_events::ClientEvent;
use callbridge::realtime::server_events::parse_server_event;
use callbridge::relay::conductor::{Action, Conductor, ConductorConfig};
use callbridge::relay::goodbye::GoodbyeMatcher;
use callbridge::relay::playback::{MarkEcho, MarkName, PlaybackLedger};
use callbridge::simulate::mulaw_encode;
use callbridge::twilio::media::{TwilioEvent, mark_message, media_message, parse_twilio_event};

/// Untimed iterations before each case (also fills the ledger's mark queue to its cap in the no-echo case).
const WARMUP_ITERATIONS: u64 = 20_000;
/// Timed iterations per run.
const ITERATIONS: u64 = 200_000;
/// Timed runs per case; the median and the minimum are reported.
const RUNS: usize = 5;
/// Iterations of the logging pass (a counting `tracing` subscriber is installed: slower, so fewer).
const LOGGING_PASS_ITERATIONS: u64 = 2_000;

/// Assistant audio per OpenAI delta in this benchmark: 100 ms of 8 kHz μ-law.
const DELTA_AUDIO_BYTES: usize = 800;
/// Twilio sends one `media` frame per 20 ms of caller audio: frames per second of call.
const TWILIO_FRAMES_PER_S: u64 = 50;

// ---------------------------------------------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------------------------------------------

/// Heap allocations (`alloc`, `alloc_zeroed`, and each `realloc`) since the process started.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes requested by those allocations (the new size for a `realloc`).
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting allocations and bytes requested (frees are not counted).
struct CountingAllocator;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counters are atomics.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (every allocation goes through this wrapper) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract on `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// (allocations, bytes) so far.
fn allocation_counters() -> (u64, u64) {
    (
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED_BYTES.load(Ordering::Relaxed),
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Counting tracing subscriber (the logging pass)
// ---------------------------------------------------------------------------------------------------------------

/// Counts `tracing` events by level: index 0 = TRACE … 4 = ERROR.
#[derive(Clone, Default)]
struct LevelCounter {
    counts: Arc<[AtomicU64; 5]>,
}

impl LevelCounter {
    fn snapshot(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }
}

impl tracing::Subscriber for LevelCounter {
    fn enabled(&self, _metadata: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _span: &tracing::span::Id, _values: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _span: &tracing::span::Id, _follows: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let index = match *event.metadata().level() {
            tracing::Level::TRACE => 0,
            tracing::Level::DEBUG => 1,
            tracing::Level::INFO => 2,
            tracing::Level::WARN => 3,
            tracing::Level::ERROR => 4,
        };
        self.counts[index].fetch_add(1, Ordering::Relaxed);
    }

    fn enter(&self, _span: &tracing::span::Id) {}

    fn exit(&self, _span: &tracing::span::Id) {}
}

// ---------------------------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------------------------

/// `json` without the whitespace outside strings: the compact form Twilio and OpenAI send on the wire.
fn compact_json(json: &str) -> String {
    let mut compact = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            compact.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !c.is_whitespace() {
            compact.push(c);
            in_string = c == '"';
        }
    }
    compact
}

/// Every message the cases use, built once.
struct Messages {
    /// Twilio `start` (compact fixture).
    twilio_start: String,
    /// Twilio `media`: 160 bytes of μ-law, base64 (compact fixture).
    twilio_media: String,
    /// The base64 payload inside [`Messages::twilio_media`].
    twilio_payload_b64: String,
    /// OpenAI `response.created` (compact fixture).
    openai_response_created: String,
    /// OpenAI `response.output_audio.delta` carrying [`DELTA_AUDIO_BYTES`] of μ-law tone (compact fixture, longer
    /// delta).
    openai_delta: String,
    /// The base64 delta inside [`Messages::openai_delta`].
    openai_delta_b64: String,
    /// The delta's `item_id`.
    item_id: String,
    /// The StreamSid of the `start`.
    stream_sid: String,
}

impl Messages {
    fn load() -> Self {
        let twilio_start = compact_json(include_str!("../tests/fixtures/twilio/start.json"));
        let twilio_media = compact_json(include_str!("../tests/fixtures/twilio/media.json"));
        let openai_response_created = compact_json(include_str!(
            "../tests/fixtures/realtime/response.created.json"
        ));
        let fixture_delta = compact_json(include_str!(
            "../tests/fixtures/realtime/response.output_audio.delta.json"
        ));

        let media: serde_json::Value =
            serde_json::from_str(&twilio_media).expect("the media fixture is JSON");
        let twilio_payload_b64 = media["media"]["payload"]
            .as_str()
            .expect("the media fixture has a payload")
            .to_owned();
        let stream_sid = media["streamSid"]
            .as_str()
            .expect("the media fixture has a streamSid")
            .to_owned();

        let delta: serde_json::Value =
            serde_json::from_str(&fixture_delta).expect("the delta fixture is JSON");
        let fixture_delta_b64 = delta["delta"]
            .as_str()
            .expect("the delta fixture has a delta");
        let item_id = delta["item_id"]
            .as_str()
            .expect("the delta fixture has an item_id")
            .to_owned();
        // 100 ms of a 440 Hz tone at about -12 dBFS, as μ-law.
        let tone: Vec<u8> = (0..DELTA_AUDIO_BYTES)
            .map(|n| {
                let phase = 2.0 * std::f64::consts::PI * 440.0 * n as f64 / 8_000.0;
                mulaw_encode((phase.sin() * 8_000.0) as i16)
            })
            .collect();
        let openai_delta_b64 = base64::engine::general_purpose::STANDARD.encode(&tone);
        let openai_delta = fixture_delta.replace(fixture_delta_b64, &openai_delta_b64);

        Messages {
            twilio_start,
            twilio_media,
            twilio_payload_b64,
            openai_response_created,
            openai_delta,
            openai_delta_b64,
            item_id,
            stream_sid,
        }
    }
}

/// A conductor whose stream has started (the `start` fixture), as the bridge has it mid-call. With
/// `response_active`, a `response.created` has arrived too (the assistant is speaking).
fn started_conductor(messages: &Messages, response_active: bool) -> Conductor {
    let start = parse_twilio_event(&messages.twilio_start).expect("the start fixture parses");
    let TwilioEvent::Start { start: details, .. } = &start else {
        panic!("the start fixture is a start message");
    };
    let call_sid = details.call_sid.clone();
    let config = ConductorConfig {
        call_sid: call_sid.clone(),
        assistant_speaks_first: false,
        greeting: String::new(),
        max_call_duration: Duration::from_secs(4 * 3600),
        farewell_grace: Duration::from_secs(2),
        goodbye: GoodbyeMatcher::default(),
        stream_idle_timeout: Duration::from_secs(4 * 3600),
        machine: None,
    };
    let record = CallRecord::new(
        call_sid,
        Direction::Inbound,
        "+15550100001".to_owned(),
        "+15550100002".to_owned(),
    );
    let now = Instant::now();
    let mut conductor = Conductor::new(config, record, now);
    let mut out = Vec::new();
    conductor.on_twilio(start, now, &mut out);
    assert!(conductor.stream_started(), "the start fixture is accepted");
    if response_active {
        let created = parse_server_event(&messages.openai_response_created)
            .expect("the response.created fixture parses");
        conductor.on_openai(created, now, &mut out);
    }
    conductor
}

/// Total bytes of the text frames in `out`.
fn output_bytes(out: &[Action]) -> usize {
    out.iter()
        .map(|action| match action {
            Action::Twilio(text) | Action::OpenAi(text) => text.len(),
            Action::HangUp(_)
            | Action::UpdateCall(_)
            | Action::SayDone(_)
            | Action::OpenSession
            | Action::SwitchSession => 0,
        })
        .sum()
}

/// The mark name in a Twilio `mark` message the relay built: `..."mark":{"name":"g0:s41"}}`.
fn mark_name(mark_message: &str) -> &str {
    const KEY: &str = "\"name\":\"";
    let start = mark_message
        .find(KEY)
        .map(|i| i + KEY.len())
        .expect("a mark message has a name");
    let end = mark_message[start..]
        .find('"')
        .map(|i| start + i)
        .expect("the name is a closed string");
    &mark_message[start..end]
}

// ---------------------------------------------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------------------------------------------

/// What one iteration produced: (actions, output bytes).
type Produced = (usize, usize);

/// One benchmark case: a name, the allocations the budget allows per operation, and the operation.
struct Case<'a> {
    name: &'static str,
    expected_allocations: u64,
    operation: Box<dyn FnMut() -> Produced + 'a>,
}

/// The figures of one case.
struct Figures {
    name: &'static str,
    median_ns: f64,
    min_ns: f64,
    allocations_per_op: f64,
    bytes_per_op: f64,
    actions_per_op: f64,
    output_bytes_per_op: f64,
    expected_allocations: u64,
}

fn measure(case: &mut Case<'_>) -> Figures {
    for _ in 0..WARMUP_ITERATIONS {
        black_box((case.operation)());
    }
    let mut run_ns_per_op = Vec::with_capacity(RUNS);
    let (mut actions, mut output) = (0u64, 0u64);
    let (allocations_before, bytes_before) = allocation_counters();
    for _ in 0..RUNS {
        let started = Instant::now();
        for _ in 0..ITERATIONS {
            let (n, bytes) = black_box((case.operation)());
            actions += n as u64;
            output += bytes as u64;
        }
        run_ns_per_op.push(started.elapsed().as_nanos() as f64 / ITERATIONS as f64);
    }
    let (allocations_after, bytes_after) = allocation_counters();
    run_ns_per_op.sort_by(f64::total_cmp);
    let operations = (RUNS as u64 * ITERATIONS) as f64;
    Figures {
        name: case.name,
        median_ns: run_ns_per_op[RUNS / 2],
        min_ns: run_ns_per_op[0],
        // The run vector was allocated before the first snapshot and has room for every run: not counted.
        allocations_per_op: (allocations_after - allocations_before) as f64 / operations,
        bytes_per_op: (bytes_after - bytes_before) as f64 / operations,
        actions_per_op: actions as f64 / operations,
        output_bytes_per_op: output as f64 / operations,
        expected_allocations: case.expected_allocations,
    }
}

/// Checks that the counting subscriber sees events at every level this build keeps (a release build could compile
/// some levels out with tracing's `max_level_*` features): one probe event per level. Returns what it counted.
fn logging_probe() -> [u64; 5] {
    let counter = LevelCounter::default();
    tracing::subscriber::with_default(counter.clone(), || {
        tracing::trace!("probe");
        tracing::debug!("probe");
        tracing::info!("probe");
        tracing::warn!("probe");
        tracing::error!("probe");
    });
    counter.snapshot()
}

/// Runs [`LOGGING_PASS_ITERATIONS`] of every case under a counting `tracing` subscriber; returns events per operation
/// by level.
fn logging_pass(cases: &mut [Case<'_>]) -> Vec<(&'static str, [f64; 5])> {
    cases
        .iter_mut()
        .map(|case| {
            let counter = LevelCounter::default();
            tracing::subscriber::with_default(counter.clone(), || {
                for _ in 0..LOGGING_PASS_ITERATIONS {
                    black_box((case.operation)());
                }
            });
            let counts = counter.snapshot();
            (
                case.name,
                counts.map(|count| count as f64 / LOGGING_PASS_ITERATIONS as f64),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------------------------

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn print_header() {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let rustc_version =
        command_output(&rustc, &["-V"]).unwrap_or_else(|| "rustc version unknown".to_owned());
    let profile = if cfg!(debug_assertions) {
        "debug assertions ON (not the bench profile: figures are not representative)"
    } else {
        "optimised, no debug assertions (cargo bench profile)"
    };
    println!("callbridge relay hot-path benchmark");
    println!("  machine: {cores} logical CPU(s), {cpu}");
    println!("  rustc:   {rustc_version}");
    println!("  build:   {profile}");
    println!(
        "  method:  {WARMUP_ITERATIONS} warm-up iterations, then {RUNS} runs × {ITERATIONS} iterations per case; \
         median and min of the runs' ns/op"
    );
    println!(
        "           allocations/bytes: counting #[global_allocator] over all timed runs (realloc counts as one)"
    );
    println!();
}

fn print_table(figures: &[Figures]) {
    println!(
        "{:<52} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9}  budget (allocs/op)",
        "case", "median", "min", "allocs", "alloc B", "actions", "out B"
    );
    println!(
        "{:<52} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9}",
        " ", "ns/op", "ns/op", "/op", "/op", "/op", "/op"
    );
    for f in figures {
        let verdict = if f.allocations_per_op <= f.expected_allocations as f64 + 0.005 {
            format!("{} ok", f.expected_allocations)
        } else {
            format!(
                "{} EXCEEDED by {:.2}",
                f.expected_allocations,
                f.allocations_per_op - f.expected_allocations as f64
            )
        };
        println!(
            "{:<52} {:>9.1} {:>9.1} {:>9.2} {:>9.1} {:>8.2} {:>9.1}  {}",
            f.name,
            f.median_ns,
            f.min_ns,
            f.allocations_per_op,
            f.bytes_per_op,
            f.actions_per_op,
            f.output_bytes_per_op,
            verdict
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------------------------------

fn main() {
    print_header();
    let messages = Messages::load();
    let media = messages.twilio_media.as_str();
    let delta = messages.openai_delta.as_str();
    let stream_sid = messages.stream_sid.as_str();
    let item_id = messages.item_id.as_str();

    // (a) Twilio media → append.
    let mut conductor_a = started_conductor(&messages, false);
    let mut out_a: Vec<Action> = Vec::with_capacity(8);
    // (b) OpenAI delta → media + mark, no echo: the ledger's queue fills to its cap, as during a long burst.
    let mut conductor_b = started_conductor(&messages, true);
    let mut out_b: Vec<Action> = Vec::with_capacity(8);
    // (b2) OpenAI delta → media + mark, then Twilio echoes that mark: the steady state of a call.
    let mut conductor_b2 = started_conductor(&messages, true);
    let mut out_b2: Vec<Action> = Vec::with_capacity(8);
    let mut echo = String::with_capacity(256);
    let mut echo_sequence: u64 = 3;
    // (c) the ledger alone; the echoed name is written into a reused buffer, as Twilio's echo text would hold it.
    let mut ledger = PlaybackLedger::new();
    let delta_bytes = DELTA_AUDIO_BYTES;
    let mut echoed_name = String::with_capacity(64);
    let mark_name_g0_s41 = MarkName::parse("g0:s41").expect("g0:s41 is a mark name");

    let mut cases: Vec<Case<'_>> = vec![
        Case {
            name: "(a) Twilio media → parse → on_twilio → append",
            expected_allocations: 1,
            operation: Box::new(|| {
                out_a.clear();
                let event = parse_twilio_event(black_box(media)).expect("the media frame parses");
                conductor_a.on_twilio(event, Instant::now(), &mut out_a);
                let produced = (out_a.len(), output_bytes(&out_a));
                black_box(&out_a);
                produced
            }),
        },
        Case {
            name: "(b) OpenAI delta → parse → on_openai → media+mark",
            expected_allocations: 2,
            operation: Box::new(|| {
                out_b.clear();
                let event = parse_server_event(black_box(delta)).expect("the delta parses");
                conductor_b.on_openai(event, Instant::now(), &mut out_b);
                let produced = (out_b.len(), output_bytes(&out_b));
                black_box(&out_b);
                produced
            }),
        },
        Case {
            name: "(b2) as (b), then the mark echo → on_twilio",
            expected_allocations: 2,
            operation: Box::new(|| {
                out_b2.clear();
                let now = Instant::now();
                let event = parse_server_event(black_box(delta)).expect("the delta parses");
                conductor_b2.on_openai(event, now, &mut out_b2);
                let produced = (out_b2.len(), output_bytes(&out_b2));
                if let Some(Action::Twilio(mark)) = out_b2.last() {
                    echo_sequence += 1;
                    echo.clear();
                    write!(
                        echo,
                        r#"{{"event":"mark","sequenceNumber":"{echo_sequence}","streamSid":"{stream_sid}","mark":{{"name":"{}"}}}}"#,
                        mark_name(mark)
                    )
                    .expect("writing to a String cannot fail");
                    let echoed = parse_twilio_event(black_box(&echo)).expect("the echo parses");
                    conductor_b2.on_twilio(echoed, now, &mut out_b2);
                }
                black_box(&out_b2);
                produced
            }),
        },
        Case {
            name: "(c) parse only: Twilio media",
            expected_allocations: 0,
            operation: Box::new(|| {
                let event = parse_twilio_event(black_box(media)).expect("the media frame parses");
                black_box(&event);
                (0, 0)
            }),
        },
        Case {
            name: "(c) parse only: OpenAI delta (800 B μ-law)",
            expected_allocations: 0,
            operation: Box::new(|| {
                let event = parse_server_event(black_box(delta)).expect("the delta parses");
                black_box(&event);
                (0, 0)
            }),
        },
        Case {
            name: "(c) parse only: Twilio mark echo",
            expected_allocations: 0,
            operation: Box::new(|| {
                let echo = r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ0a1b2c3d4e5f60718293a4b5c6d7e8f9","mark":{"name":"g3:s41"}}"#;
                let event = parse_twilio_event(black_box(echo)).expect("the echo parses");
                black_box(&event);
                (0, 0)
            }),
        },
        Case {
            name: "(c) ledger: record_sent + on_mark",
            expected_allocations: 0,
            operation: Box::new(|| {
                let now = Instant::now();
                let mark = ledger.record_sent(black_box(item_id), delta_bytes, now);
                echoed_name.clear();
                write!(echoed_name, "{mark}").expect("writing to a String cannot fail");
                let echo = ledger.on_mark(black_box(&echoed_name), now);
                debug_assert!(matches!(echo, MarkEcho::Played { .. }));
                black_box(echo);
                (0, 0)
            }),
        },
        Case {
            name: "(c) build only: append JSON",
            expected_allocations: 1,
            operation: Box::new(|| {
                let json = ClientEvent::InputAudioBufferAppend {
                    audio: black_box(messages.twilio_payload_b64.as_str()),
                }
                .to_json();
                let bytes = json.len();
                black_box(json);
                (1, bytes)
            }),
        },
        Case {
            name: "(c) build only: Twilio media + mark JSON",
            expected_allocations: 2,
            operation: Box::new(|| {
                let media = media_message(
                    black_box(stream_sid),
                    black_box(messages.openai_delta_b64.as_str()),
                );
                let mark = mark_message(black_box(stream_sid), black_box(mark_name_g0_s41));
                let bytes = media.len() + mark.len();
                black_box((media, mark));
                (2, bytes)
            }),
        },
    ];

    let started = Instant::now();
    let figures: Vec<Figures> = cases.iter_mut().map(measure).collect();
    print_table(&figures);

    println!();
    println!(
        "Payload share of the bytes sent (the base64 audio is forwarded verbatim, never decoded):"
    );
    let append = ClientEvent::InputAudioBufferAppend {
        audio: &messages.twilio_payload_b64,
    }
    .to_json();
    println!(
        "  (a) Twilio frame in {} B, payload {} B (160 B μ-law) → append out {} B: payload/out = {:.1}%",
        messages.twilio_media.len(),
        messages.twilio_payload_b64.len(),
        append.len(),
        100.0 * messages.twilio_payload_b64.len() as f64 / append.len() as f64
    );
    let media_out = media_message(stream_sid, &messages.openai_delta_b64);
    let mark_out = mark_message(stream_sid, "g0:s41");
    println!(
        "  (b) OpenAI delta in {} B, payload {} B ({DELTA_AUDIO_BYTES} B μ-law) → media {} B + mark {} B: \
         payload/out = {:.1}%",
        messages.openai_delta.len(),
        messages.openai_delta_b64.len(),
        media_out.len(),
        mark_out.len(),
        100.0 * messages.openai_delta_b64.len() as f64 / (media_out.len() + mark_out.len()) as f64
    );

    let per_call_second_ns = TWILIO_FRAMES_PER_S as f64 * figures[0].median_ns
        + (1000.0 / (DELTA_AUDIO_BYTES as f64 / 8.0)) * figures[2].median_ns;
    let per_call_second_allocations = TWILIO_FRAMES_PER_S as f64 * figures[0].allocations_per_op
        + (1000.0 / (DELTA_AUDIO_BYTES as f64 / 8.0)) * figures[2].allocations_per_op;
    println!();
    println!(
        "Per call-second while both talk ({TWILIO_FRAMES_PER_S} Twilio frames (a) + {} deltas with echo (b2)): \
         {:.1} µs CPU, {:.0} allocations → one core relays ≈ {:.0} such calls (hot path only, no socket I/O)",
        1000 / (DELTA_AUDIO_BYTES / 8),
        per_call_second_ns / 1000.0,
        per_call_second_allocations,
        1e9 / per_call_second_ns
    );

    println!();
    println!(
        "Logging pass ({LOGGING_PASS_ITERATIONS} iterations per case under a counting tracing subscriber), \
         events per op:"
    );
    println!(
        "{:<52} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "case", "TRACE", "DEBUG", "INFO", "WARN", "ERROR"
    );
    let probe = logging_probe();
    println!(
        "{:<52} {:>7} {:>7} {:>7} {:>7} {:>7}{}",
        "probe: one event per level (checks the counter)",
        probe[0],
        probe[1],
        probe[2],
        probe[3],
        probe[4],
        if probe == [1; 5] {
            "  ok"
        } else {
            "  <- some levels are compiled out or not counted"
        }
    );
    for (name, per_op) in logging_pass(&mut cases) {
        println!(
            "{:<52} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2}{}",
            name,
            per_op[0],
            per_op[1],
            per_op[2],
            per_op[3],
            per_op[4],
            if per_op[2] + per_op[3] + per_op[4] > 0.0 {
                "  <- info or above per frame"
            } else {
                ""
            }
        );
    }
    println!();
    println!(
        "Total benchmark time: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
