//! Many-call load benchmark (issue 10): what a live call costs the relay in CPU and memory, and how fast audio goes
//! through it, with N calls at once.
//!
//! Run with `make bench-load`: it builds the release binary, copies it to `target/bench-load/callbridge` and runs
//! `cargo bench --bench load` with `BENCH_LOAD_BIN` pointing at the copy (plain `cargo bench --bench load` starts the
//! binary cargo built for the bench, which has the dev-dependencies' features: tokio's test-util). The bench starts
//! that real `callbridge serve` binary on 127.0.0.1 against an **echo Realtime fake** that runs in this process, then
//! plays N Twilio calls at once, the way Twilio does: the signed incoming-call webhook (`X-Twilio-Signature`), the
//! stream token from the TwiML, the signed Media Stream upgrade, `connected`, `start`, then one 20 ms μ-law `media`
//! frame every 20 ms. Every `mark` the relay sends is echoed at
//! once. The fake answers `session.update` with `session.updated`; on a call's first `input_audio_buffer.append` it
//! opens one long response (`response.created`, `response.output_item.added`) and returns every appended chunk at once
//! as a `response.output_audio.delta` of that response. So each call-second carries about 300 WebSocket messages
//! through the relay: 50 caller frames in, 50 appends out, 50 deltas in, 50 media and 50 marks out, 50 mark echoes in.
//!
//! `make bench-load-floor` runs this bench against `examples/floor_relay.rs` instead, a relay that only moves these
//! messages: its figures are the machine's floor for this traffic, to read the relay's against.
//!
//! Each caller frame's payload carries its send time, its call and its number, so when the same bytes come back as a
//! Twilio `media` frame the round trip is known. For each N a fresh relay process is started; after every call is
//! streaming and a warm-up, a steady window is measured; then the calls stop and the relay is killed.
//!
//! How to read the table (one row per N):
//! - **relay CPU ms/call-s**: utime+stime of the relay process (`/proc/PID/stat`) over the steady window, divided by
//!   calls × window seconds. Lower is better; at low N fixed per-wake-up costs dominate.
//! - **relay RSS/call**: the relay's highest `VmRSS` sampled during the window (once a second) minus its `VmRSS`
//!   before the measured calls, divided by N. Before them, four warm-up calls stream for 1.5 s and hang up, so what a
//!   server pays once on its first calls (code paged in, per-thread allocator arenas, pools sized on first use) is
//!   not counted per call; the details line also gives the figure counted from before any call (at 10 calls that
//!   one-time cost, about 3 MB, is most of it).
//! - **round trip p50 / p99**: caller frame sent → the same bytes back as Twilio `media`, over the frames sent in the
//!   window (all calls). It includes the load generator's and the fake's own scheduling delays.
//! - **frames lost**: frames sent in the window that did not come back before the drain period ended, count and %.
//! - **fake / loadgen CPU ms/call-s**: the same CPU figure for the echo fake (this process's `load-fake` threads) and
//!   for the load generator (the rest of this process).
//! - **cores used**: relay / fake / loadgen CPU time divided by the window's wall time (1.00 = one core busy).
//! - **machine busy**: all CPUs' busy time over the window (`/proc/stat`), as % of every core. Near 100 % the machine
//!   was saturated (other processes included): the round trips then measure queueing, not the relay.
//!
//! Settings (environment): `BENCH_LOAD_BIN` (the callbridge binary to start), `BENCH_LOAD_CALLS` (comma-separated N,
//! default `10,100,200`), `BENCH_LOAD_WARMUP_S` (default 3), `BENCH_LOAD_STEADY_S` (the measured window, default 15),
//! `BENCH_LOAD_DRAIN_S` (how long returns are awaited after the window, default 2), `BENCH_LOAD_GEN_THREADS` (the
//! load generator's worker threads, default 2). Everything is on 127.0.0.1 with TCP_NODELAY on the bench's sockets
//! (the relay sets it on its own); every loop is bounded in count and time, and the started binary is killed at the
//! end of each run (also on a panic). Linux only (`/proc`).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use callbridge::simulate::webhook::random_hex_id;
use callbridge::simulate::{WebhookCall, local_stream_url};
use callbridge::twilio::signature::RequestValidator;

/// The auth token the relay checks webhook and upgrade signatures with.
const AUTH_TOKEN: &str = "load-bench-auth-token-0123456789ab";
/// The public URL the relay believes Twilio reaches it at (signatures are computed over it).
const PUBLIC_URL: &str = "https://callbridge.test";
/// One Twilio media frame of 8 kHz μ-law: 20 ms, 160 bytes.
const FRAME_BYTES: usize = 160;
/// Twilio's pacing of caller frames.
const FRAME_PERIOD: Duration = Duration::from_millis(20);
/// μ-law silence, the filler after the stamp.
const MULAW_SILENCE: u8 = 0xFF;
/// The stamp at the start of each caller frame: send time (ns since the bench's epoch, u64 LE), call index (u32
/// LE), frame number (u32 LE).
const STAMP_BYTES: usize = 16;
/// Calls set up (webhook, upgrade, start) at the same time.
const SETUP_PARALLEL: usize = 16;
/// Longest time for all calls of a run to be set up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest time for the started relay to accept connections.
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of each single connect, close or handshake.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for the relay to settle after it accepts connections, before its idle RSS is read.
const SETTLE: Duration = Duration::from_millis(500);
/// The echo fake accepts at most this many connections over the whole bench (a bound on its accept loop).
const FAKE_MAX_CONNECTIONS: u64 = 100_000;
/// Thread name of the echo fake's runtime: its CPU is told apart from the load generator's by it.
const FAKE_THREAD_NAME: &str = "load-fake";

/// What the bench does, from the environment.
#[derive(Debug, Clone)]
struct BenchConfig {
    /// The callbridge binary to start.
    bin: PathBuf,
    /// Calls at once, one run each.
    calls: Vec<usize>,
    /// From "every call is streaming" to the start of the measured window.
    warmup: Duration,
    /// The measured window.
    steady: Duration,
    /// After the window: calls keep streaming while returns of the window's frames are awaited.
    drain: Duration,
    /// Worker threads of the load generator's runtime.
    gen_threads: usize,
}

impl BenchConfig {
    fn from_env() -> anyhow::Result<Self> {
        fn seconds(name: &str, default_s: f64) -> anyhow::Result<Duration> {
            match std::env::var(name) {
                Ok(value) => {
                    let s: f64 = value
                        .trim()
                        .parse()
                        .with_context(|| format!("{name}={value:?} is not a number of seconds"))?;
                    if !(0.0..=600.0).contains(&s) {
                        bail!("{name}={value:?} must be between 0 and 600 seconds");
                    }
                    Ok(Duration::from_secs_f64(s))
                }
                Err(_) => Ok(Duration::from_secs_f64(default_s)),
            }
        }
        let bin = std::env::var_os("BENCH_LOAD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_callbridge")));
        let calls = match std::env::var("BENCH_LOAD_CALLS") {
            Ok(list) => list
                .split(',')
                .map(|n| {
                    n.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .with_context(|| {
                            format!(
                                "BENCH_LOAD_CALLS: {n:?} is not a number of calls from 1 to 1000"
                            )
                        })
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
            Err(_) => vec![10, 100, 200],
        };
        let gen_threads = match std::env::var("BENCH_LOAD_GEN_THREADS") {
            Ok(n) => n
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=16).contains(n))
                .with_context(|| format!("BENCH_LOAD_GEN_THREADS={n:?} must be 1 to 16"))?,
            Err(_) => 2,
        };
        let steady = seconds("BENCH_LOAD_STEADY_S", 15.0)?;
        if steady < Duration::from_secs(1) {
            bail!("BENCH_LOAD_STEADY_S must be at least 1 second");
        }
        Ok(BenchConfig {
            bin,
            calls,
            warmup: seconds("BENCH_LOAD_WARMUP_S", 3.0)?,
            steady,
            drain: seconds("BENCH_LOAD_DRAIN_S", 2.0)?,
            gen_threads,
        })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// /proc readings
// ---------------------------------------------------------------------------------------------------------------

/// utime + stime (clock ticks) from the text of a `/proc/.../stat` file, with the `comm` field (which may hold spaces
/// and parentheses) skipped: the fields after the last `)` start at field 3 (state); utime is field 14, stime 15.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU ticks used so far by process `pid` (all its threads, the ones that ended included).
fn process_cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    stat_cpu_ticks(&text).with_context(|| format!("no utime/stime in {path}"))
}

/// CPU ticks used so far by this process's live threads whose name starts with `prefix`.
fn own_threads_cpu_ticks(prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter(|stat| {
            let name = stat
                .find('(')
                .zip(stat.rfind(')'))
                .map(|(open, close)| &stat[open + 1..close]);
            name.is_some_and(|name| name.starts_with(prefix))
        })
        .filter_map(|stat| stat_cpu_ticks(&stat))
        .sum()
}

/// `VmRSS` of process `pid`, KiB.
fn vm_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}

/// (busy, total) ticks of all CPUs so far, from the first line of `/proc/stat` (idle and iowait count as not busy).
fn machine_cpu_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8) // user nice system idle iowait irq softirq steal (guest time is already in user)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// Clock ticks per second of the `/proc` CPU times (`getconf CLK_TCK`; 100 on Linux if that cannot be run).
fn clock_ticks_per_s() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// CPU counters at one instant.
#[derive(Debug, Clone, Copy)]
struct CpuSnapshot {
    at: Instant,
    /// The relay process, ticks.
    relay: u64,
    /// This process's echo-fake threads, ticks.
    fake: u64,
    /// This whole process (fake + load generator), ticks.
    bench: u64,
    /// All CPUs: busy and total ticks.
    machine: (u64, u64),
}

impl CpuSnapshot {
    fn take(relay_pid: u32) -> anyhow::Result<Self> {
        Ok(CpuSnapshot {
            at: Instant::now(),
            relay: process_cpu_ticks(relay_pid)?,
            fake: own_threads_cpu_ticks(FAKE_THREAD_NAME),
            bench: process_cpu_ticks(std::process::id())?,
            machine: machine_cpu_ticks(),
        })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The relay process
// ---------------------------------------------------------------------------------------------------------------

/// A started `callbridge serve`; killed when dropped (also on a panic), its scratch directory removed.
struct RelayProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    address: String,
    /// Scratch directory: working directory (so no `.env` or `callbridge.toml` is picked up), data, log.
    dir: PathBuf,
}

impl RelayProcess {
    /// Starts `bin serve` on a free loopback port with settings that admit `calls` calls at once, pointed at the fake.
    fn start(bin: &Path, fake_url: &str, calls: usize) -> anyhow::Result<Self> {
        if !bin.exists() {
            bail!(
                "the callbridge binary {} does not exist: build it (`cargo build --release`) or set BENCH_LOAD_BIN",
                bin.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("finding a free loopback port")?
            .port();
        let dir = std::env::temp_dir().join(format!(
            "callbridge-load-{}-{calls}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(dir.join("data")).context("creating the scratch directory")?;
        let log = std::fs::File::create(dir.join("relay.log")).context("creating relay.log")?;
        let headroom = (calls * 2 + 10).to_string();
        let child = Command::new(bin)
            .arg("serve")
            .current_dir(&dir)
            .env_clear()
            .env("OPENAI_API_KEY", "sk-load-bench")
            .env("OPENAI_REALTIME_URL", fake_url)
            .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
            .env("PUBLIC_URL", PUBLIC_URL)
            .env("CALLBRIDGE_HOST", "127.0.0.1")
            .env("CALLBRIDGE_PORT", port.to_string())
            .env("CALLBRIDGE_DATA_DIR", dir.join("data"))
            .env("CALLBRIDGE_ASSISTANT_SPEAKS_FIRST", "false")
            // Admit every call, and every webhook and upgrade from the one loopback address.
            .env("CALLBRIDGE_MAX_CONCURRENT_CALLS", &headroom)
            .env("CALLBRIDGE_WEBHOOK_RATE_LIMIT_PER_MIN", "1000000")
            .env("CALLBRIDGE_STREAM_IDLE_TIMEOUT_S", "30")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("relay.log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(RelayProcess {
            child,
            address: format!("http://127.0.0.1:{port}"),
            dir,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the relay accepts TCP connections (bounded by [`SERVER_READY_TIMEOUT`]).
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let addr = self.address.trim_start_matches("http://").to_owned();
        let deadline = Instant::now() + SERVER_READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().context("polling the relay")? {
                bail!("the relay exited with {status}:\n{}", self.log_tail());
            }
            if TcpStream::connect(&addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "the relay did not accept connections within {SERVER_READY_TIMEOUT:?}:\n{}",
            self.log_tail()
        )
    }

    /// The last lines of the relay's log.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("relay.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The echo Realtime fake
// ---------------------------------------------------------------------------------------------------------------

/// What the fake did over the whole bench.
#[derive(Debug, Default)]
struct FakeCounters {
    connections: AtomicU64,
    appends: AtomicU64,
    deltas: AtomicU64,
}

/// The first fields of a client event; the rest (the session, items) is skipped by serde.
#[derive(Deserialize)]
struct ClientEventHead<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    audio: Option<Cow<'a, str>>,
}

/// Starts the echo fake's accept loop on `runtime`; returns its `ws://` URL.
fn start_echo_fake(
    runtime: &tokio::runtime::Runtime,
    counters: Arc<FakeCounters>,
) -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the echo fake")?;
    listener.set_nonblocking(true)?;
    let addr: SocketAddr = listener.local_addr()?;
    runtime.spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("echo fake: cannot listen: {e}");
                return;
            }
        };
        // Bounded in count; it ends with the runtime at the end of the bench.
        for connection in 0..FAKE_MAX_CONNECTIONS {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            counters.connections.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(echo_connection(stream, connection, Arc::clone(&counters)));
        }
    });
    Ok(format!("ws://{addr}/v1/realtime"))
}

/// One Realtime session of the fake: `session.update` → `session.updated`; each `input_audio_buffer.append` →
/// the same audio as a `response.output_audio.delta` of one long response, opened at the first append. Ends when the
/// relay closes the socket (at the latest when the relay is killed).
async fn echo_connection(stream: TcpStream, connection: u64, counters: Arc<FakeCounters>) {
    let _ = stream.set_nodelay(true);
    let Ok(Ok(mut ws)) =
        tokio::time::timeout(IO_TIMEOUT, tokio_tungstenite::accept_async(stream)).await
    else {
        return;
    };
    let response_id = format!("resp_load{connection}");
    let item_id = format!("item_load{connection}");
    let mut response_open = false;
    let mut event_number: u64 = 0;
    while let Some(Ok(message)) = ws.next().await {
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => break,
            _ => continue,
        };
        let Ok(event) = serde_json::from_str::<ClientEventHead<'_>>(&text) else {
            continue;
        };
        let mut replies: Vec<String> = Vec::with_capacity(3);
        match (event.kind.as_ref(), event.audio) {
            ("session.update", _) => {
                event_number += 1;
                replies.push(format!(
                    r#"{{"type":"session.updated","event_id":"evt_{event_number}","session":{{"type":"realtime"}}}}"#
                ));
            }
            ("input_audio_buffer.append", Some(audio)) => {
                counters.appends.fetch_add(1, Ordering::Relaxed);
                if !response_open {
                    response_open = true;
                    replies.push(format!(
                        r#"{{"type":"response.created","event_id":"evt_c{connection}","response":{{"id":"{response_id}","object":"realtime.response","status":"in_progress","output":[]}}}}"#
                    ));
                    replies.push(format!(
                        r#"{{"type":"response.output_item.added","event_id":"evt_a{connection}","response_id":"{response_id}","output_index":0,"item":{{"id":"{item_id}","object":"realtime.item","type":"message","status":"in_progress","role":"assistant","content":[]}}}}"#
                    ));
                }
                event_number += 1;
                // Base64 holds no character that needs escaping in JSON.
                replies.push(format!(
                    r#"{{"type":"response.output_audio.delta","event_id":"evt_{event_number}","response_id":"{response_id}","item_id":"{item_id}","output_index":0,"content_index":0,"delta":"{audio}"}}"#
                ));
                counters.deltas.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        let last = replies.len().saturating_sub(1);
        for (i, reply) in replies.into_iter().enumerate() {
            let sent = if i == last {
                ws.send(Message::text(reply)).await
            } else {
                ws.feed(Message::text(reply)).await
            };
            if sent.is_err() {
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The load generator: simulated Twilio calls
// ---------------------------------------------------------------------------------------------------------------

/// Nanoseconds since the bench's epoch: the clock of the frame stamps.
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now_ns(self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The measured window, in [`Clock`] ns; `u64::MAX` until set. A frame belongs to it when `start ≤ sent < end`.
#[derive(Debug)]
struct Window {
    start_ns: AtomicU64,
    end_ns: AtomicU64,
}

impl Window {
    fn contains(&self, sent_ns: u64) -> bool {
        self.start_ns.load(Ordering::Relaxed) <= sent_ns
            && sent_ns < self.end_ns.load(Ordering::Relaxed)
    }
}

/// What every call of a run shares.
struct RunShared {
    server_url: String,
    clock: Clock,
    window: Window,
    /// Cancelled when the calls should hang up.
    stop: CancellationToken,
    /// Bounds the calls being set up at once.
    setup_permits: Semaphore,
    /// No call goes on after this, whatever happens.
    deadline: tokio::time::Instant,
}

impl RunShared {
    /// Calls to the relay at `server_url`, none of them stopped yet, with no measured window yet, that go on for
    /// `budget` at most.
    fn new(server_url: &str, clock: Clock, budget: Duration) -> Self {
        RunShared {
            server_url: server_url.to_owned(),
            clock,
            window: Window {
                start_ns: AtomicU64::new(u64::MAX),
                end_ns: AtomicU64::new(u64::MAX),
            },
            stop: CancellationToken::new(),
            setup_permits: Semaphore::new(SETUP_PARALLEL),
            deadline: tokio::time::Instant::now() + budget,
        }
    }
}

/// What one call observed.
#[derive(Debug, Default)]
struct CallStats {
    /// Caller frames sent in the window.
    sent_in_window: u64,
    /// Those that came back as Twilio `media`.
    returned_in_window: u64,
    /// Round trip of each returned window frame, µs.
    round_trips_us: Vec<u32>,
    /// Returned frames that were not this call's (a relay mix-up): should stay 0.
    foreign_frames: u64,
    /// `clear` messages received: should stay 0 (the fake never signals speech).
    clears: u64,
    /// Why the stream ended before the bench stopped it, if it did.
    ended_early: Option<String>,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The relay's messages to Twilio, as far as the load generator reads them.
#[derive(Deserialize)]
struct RelayFrame<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    media: Option<RelayMedia<'a>>,
    #[serde(borrow, default)]
    mark: Option<RelayMark<'a>>,
}

#[derive(Deserialize)]
struct RelayMedia<'a> {
    #[serde(borrow)]
    payload: Cow<'a, str>,
}

#[derive(Deserialize)]
struct RelayMark<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

/// A call's identity on the stream.
struct StreamIds {
    call_sid: String,
    account_sid: String,
    stream_sid: String,
}

/// The webhook, the signed upgrade, `connected` and `start`: the call is then streaming.
async fn set_up_call(shared: &RunShared) -> Result<(Ws, StreamIds), String> {
    let _permit = shared
        .setup_permits
        .acquire()
        .await
        .map_err(|e| e.to_string())?;
    let webhook = WebhookCall {
        server_url: shared.server_url.clone(),
        public_url: PUBLIC_URL.to_owned(),
        auth_token: AUTH_TOKEN.to_owned(),
        call_sid: random_hex_id("CA"),
        account_sid: random_hex_id("AC"),
        from: "+15550100001".to_owned(),
        to: "+15550100002".to_owned(),
    };
    let answer = webhook
        .post_incoming()
        .await
        .map_err(|e| format!("webhook: {e}"))?;
    let stream = answer.stream.ok_or_else(|| {
        format!(
            "webhook answered {} without a stream: {}",
            answer.status, answer.body
        )
    })?;
    let ws_url = local_stream_url(&stream.url, &shared.server_url).map_err(|e| e.to_string())?;
    let mut request = ws_url
        .into_client_request()
        .map_err(|e| format!("stream URL: {e}"))?;
    // Twilio signs the upgrade over the stream URL it was given, with no parameters.
    let signature = RequestValidator::new(AUTH_TOKEN).sign(&stream.url, &[]);
    request.headers_mut().insert(
        "X-Twilio-Signature",
        HeaderValue::from_str(&signature).map_err(|e| e.to_string())?,
    );
    let connecting = tokio_tungstenite::connect_async_with_config(request, None, true);
    let (mut ws, _) = tokio::time::timeout(IO_TIMEOUT, connecting)
        .await
        .map_err(|_| "the stream upgrade timed out".to_owned())?
        .map_err(|e| format!("stream upgrade: {e}"))?;
    let ids = StreamIds {
        call_sid: webhook.call_sid,
        account_sid: webhook.account_sid,
        stream_sid: random_hex_id("MZ"),
    };
    let parameters: serde_json::Map<String, serde_json::Value> = stream
        .parameters
        .into_iter()
        .map(|(name, value)| (name, serde_json::Value::String(value)))
        .collect();
    let connected =
        serde_json::json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
    let start = serde_json::json!({
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": ids.stream_sid,
        "start": {
            "accountSid": ids.account_sid,
            "streamSid": ids.stream_sid,
            "callSid": ids.call_sid,
            "tracks": ["inbound"],
            "customParameters": parameters,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    });
    let opening = async {
        ws.feed(Message::text(connected.to_string())).await?;
        ws.send(Message::text(start.to_string())).await
    };
    tokio::time::timeout(IO_TIMEOUT, opening)
        .await
        .map_err(|_| "sending connected/start timed out".to_owned())?
        .map_err(|e| format!("sending connected/start: {e}"))?;
    Ok((ws, ids))
}

/// Calls run through a fresh relay and ended before it is measured: what a server pays once, on its first calls
/// (code paged in, per-thread allocator arenas, pools and caches sized on first use), is then not counted per call.
const WARMUP_CALLS: u32 = 4;
/// How long each warm-up call streams.
const WARMUP_STREAM: Duration = Duration::from_millis(1500);
/// Call indexes of the warm-up calls start here (the measured calls are 0..N).
const WARMUP_FIRST_INDEX: u32 = 1_000_000;

/// Runs [`WARMUP_CALLS`] calls through the relay at `server_url` for [`WARMUP_STREAM`], hangs them up and lets the
/// relay finish them. Their frames are never in a measured window.
async fn warm_up(server_url: &str, clock: Clock) -> anyhow::Result<()> {
    let shared = Arc::new(RunShared::new(
        server_url,
        clock,
        SETUP_TIMEOUT + WARMUP_STREAM + IO_TIMEOUT,
    ));
    let (ready_tx, mut ready_rx) = mpsc::channel(WARMUP_CALLS as usize);
    let handles: Vec<_> = (0..WARMUP_CALLS)
        .map(|i| {
            tokio::spawn(drive_call(
                Arc::clone(&shared),
                WARMUP_FIRST_INDEX + i,
                ready_tx.clone(),
            ))
        })
        .collect();
    drop(ready_tx);
    let setup_deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
    for _ in 0..WARMUP_CALLS {
        match tokio::time::timeout_at(setup_deadline, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(reason))) => bail!("a warm-up call failed: {reason}"),
            Ok(None) | Err(_) => bail!("the warm-up calls were not set up in time"),
        }
    }
    tokio::time::sleep(WARMUP_STREAM).await;
    shared.stop.cancel();
    let join_deadline = tokio::time::Instant::now() + IO_TIMEOUT * 2;
    for handle in handles {
        let abort = handle.abort_handle();
        if tokio::time::timeout_at(join_deadline, handle)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    // The relay stores and closes the ended calls.
    tokio::time::sleep(SETTLE * 2).await;
    Ok(())
}

/// One call from webhook to hang-up. Reports its set-up result on `ready`, then streams until the run stops it.
async fn drive_call(
    shared: Arc<RunShared>,
    index: u32,
    ready: mpsc::Sender<Result<(), String>>,
) -> CallStats {
    let mut stats = CallStats::default();
    let set_up = tokio::time::timeout(SETUP_TIMEOUT, set_up_call(&shared)).await;
    let (mut ws, ids) = match set_up {
        Ok(Ok(call)) => {
            let _ = ready.send(Ok(())).await;
            call
        }
        Ok(Err(reason)) => {
            let _ = ready.send(Err(reason.clone())).await;
            stats.ended_early = Some(reason);
            return stats;
        }
        Err(_) => {
            let reason = "set-up timed out".to_owned();
            let _ = ready.send(Err(reason.clone())).await;
            stats.ended_early = Some(reason);
            return stats;
        }
    };
    let clock = shared.clock;
    let mut frame = [MULAW_SILENCE; FRAME_BYTES];
    frame[8..12].copy_from_slice(&index.to_le_bytes());
    let mut payload = String::with_capacity(FRAME_BYTES * 4 / 3 + 4);
    let mut decoded = [0u8; 2 * FRAME_BYTES];
    let mut sequence: u64 = 1; // `start` was 1
    let mut chunk: u32 = 0;
    let mut pacing = tokio::time::interval(FRAME_PERIOD);
    // Twilio keeps its cadence: frames a stalled generator missed go out at once.
    pacing.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let started_ns = clock.now_ns();

    let ended_early = loop {
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => break None,
            () = tokio::time::sleep_until(shared.deadline) => break Some("the bench deadline passed".to_owned()),
            message = ws.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(frame))) => break Some(format!("the relay closed the stream: {frame:?}")),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break Some(format!("stream failed: {e}")),
                    None => break Some("the relay closed the stream".to_owned()),
                };
                let Ok(relay_frame) = serde_json::from_str::<RelayFrame<'_>>(&text) else {
                    continue;
                };
                match (relay_frame.event.as_ref(), relay_frame.media, relay_frame.mark) {
                    ("media", Some(media), _) => {
                        let now_ns = clock.now_ns();
                        let Ok(len) = BASE64.decode_slice(media.payload.as_bytes(), &mut decoded) else {
                            stats.foreign_frames += 1;
                            continue;
                        };
                        if len < STAMP_BYTES || decoded[8..12] != index.to_le_bytes() {
                            stats.foreign_frames += 1;
                            continue;
                        }
                        let sent_ns = u64::from_le_bytes(decoded[..8].try_into().expect("8 bytes"));
                        if shared.window.contains(sent_ns) {
                            stats.returned_in_window += 1;
                            let round_trip_us = now_ns.saturating_sub(sent_ns) / 1_000;
                            stats.round_trips_us.push(u32::try_from(round_trip_us).unwrap_or(u32::MAX));
                        }
                    }
                    ("mark", _, Some(mark)) => {
                        // Echo at once, as Twilio does when nothing is left to play.
                        sequence += 1;
                        let name = serde_json::to_string(mark.name.as_ref()).unwrap_or_default();
                        let echo = format!(
                            r#"{{"event":"mark","sequenceNumber":"{sequence}","streamSid":"{}","mark":{{"name":{name}}}}}"#,
                            ids.stream_sid
                        );
                        if let Err(e) = ws.send(Message::text(echo)).await {
                            break Some(format!("echoing a mark failed: {e}"));
                        }
                    }
                    ("clear", _, _) => stats.clears += 1,
                    _ => {}
                }
            }
            _ = pacing.tick() => {
                sequence += 1;
                chunk += 1;
                let sent_ns = clock.now_ns();
                frame[..8].copy_from_slice(&sent_ns.to_le_bytes());
                frame[12..16].copy_from_slice(&chunk.to_le_bytes());
                payload.clear();
                BASE64.encode_string(frame, &mut payload);
                let timestamp_ms = (sent_ns - started_ns) / 1_000_000;
                let media = format!(
                    r#"{{"event":"media","sequenceNumber":"{sequence}","streamSid":"{}","media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{timestamp_ms}","payload":"{payload}"}}}}"#,
                    ids.stream_sid
                );
                if shared.window.contains(sent_ns) {
                    stats.sent_in_window += 1;
                }
                if let Err(e) = ws.send(Message::text(media)).await {
                    break Some(format!("sending a frame failed: {e}"));
                }
            }
        }
    };
    stats.ended_early = ended_early;
    // Hang up like Twilio: `stop`, then close (bounded).
    sequence += 1;
    let stop = format!(
        r#"{{"event":"stop","sequenceNumber":"{sequence}","streamSid":"{}","stop":{{"accountSid":"{}","callSid":"{}"}}}}"#,
        ids.stream_sid, ids.account_sid, ids.call_sid
    );
    let _ = tokio::time::timeout(IO_TIMEOUT, async {
        let _ = ws.send(Message::text(stop)).await;
        let _ = ws.close(None).await;
        // Read to the close handshake's end; bounded by the timeout.
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    stats
}

// ---------------------------------------------------------------------------------------------------------------
// One run: N calls
// ---------------------------------------------------------------------------------------------------------------

/// The figures of one run.
#[derive(Debug)]
struct RunFigures {
    calls: usize,
    /// Calls that streamed through the window.
    streaming: usize,
    /// Set-up failures and early ends, with one example reason.
    failed: usize,
    failure_example: Option<String>,
    window_s: f64,
    relay_cpu_ms: f64,
    fake_cpu_ms: f64,
    loadgen_cpu_ms: f64,
    machine_busy_pct: f64,
    /// Before any call.
    rss_cold_kib: u64,
    /// After the warm-up calls ended, before the measured calls.
    rss_before_kib: u64,
    rss_peak_kib: u64,
    sent: u64,
    returned: u64,
    round_trip_p50_ms: f64,
    round_trip_p99_ms: f64,
    foreign_frames: u64,
    clears: u64,
    fake_appends: u64,
    fake_deltas: u64,
}

impl RunFigures {
    fn call_seconds(&self) -> f64 {
        (self.streaming.max(1) as f64) * self.window_s
    }

    fn per_call_second(&self, cpu_ms: f64) -> f64 {
        cpu_ms / self.call_seconds()
    }

    fn cores(&self, cpu_ms: f64) -> f64 {
        cpu_ms / (self.window_s * 1000.0)
    }

    fn rss_per_call_kib(&self) -> f64 {
        self.rss_peak_kib.saturating_sub(self.rss_before_kib) as f64 / self.calls as f64
    }

    /// The per-call figure counted from the cold server (before the warm-up calls), as the bench measured it first.
    fn rss_per_call_from_cold_kib(&self) -> f64 {
        self.rss_peak_kib.saturating_sub(self.rss_cold_kib) as f64 / self.calls as f64
    }

    fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.returned)
    }

    fn lost_pct(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.lost() as f64 * 100.0 / self.sent as f64
        }
    }

    fn table_row(&self) -> String {
        format!(
            "| {:>5} | {:>10.2} ms | {:>7.0} KiB | {:>6.2} / {:>6.2} ms | {:>6} ({:.2} %) | {:>8.2} ms | {:>8.2} ms | {:.2} / {:.2} / {:.2} | {:>4.0} % |",
            self.calls,
            self.per_call_second(self.relay_cpu_ms),
            self.rss_per_call_kib(),
            self.round_trip_p50_ms,
            self.round_trip_p99_ms,
            self.lost(),
            self.lost_pct(),
            self.per_call_second(self.fake_cpu_ms),
            self.per_call_second(self.loadgen_cpu_ms),
            self.cores(self.relay_cpu_ms),
            self.cores(self.fake_cpu_ms),
            self.cores(self.loadgen_cpu_ms),
            self.machine_busy_pct,
        )
    }
}

const TABLE_HEADER: &str = "| calls | relay CPU/call-s | relay RSS/call | round trip p50 / p99 | frames lost | fake CPU/call-s | loadgen CPU/call-s | cores used relay / fake / loadgen | machine busy |\n\
|---|---|---|---|---|---|---|---|---|";

/// Nearest-rank percentile `p` (0–1) of sorted µs samples, in ms.
fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    f64::from(sorted_us[rank - 1]) / 1000.0
}

/// Starts a relay, drives `calls` calls through it, measures the window, and kills the relay.
async fn run(
    config: &BenchConfig,
    calls: usize,
    clock: Clock,
    fake_url: &str,
    fake: &FakeCounters,
    ticks_per_s: u64,
) -> anyhow::Result<RunFigures> {
    let mut relay = RelayProcess::start(&config.bin, fake_url, calls)?;
    relay.wait_ready().await?;
    tokio::time::sleep(SETTLE).await;
    let pid = relay.pid();
    let rss_cold_kib = vm_rss_kib(pid)?;
    warm_up(&relay.address, clock).await?;
    let rss_before_kib = vm_rss_kib(pid)?;
    let appends_before = fake.appends.load(Ordering::Relaxed);
    let deltas_before = fake.deltas.load(Ordering::Relaxed);

    let budget =
        SETUP_TIMEOUT + config.warmup + config.steady + config.drain + Duration::from_secs(30);
    let shared = Arc::new(RunShared::new(&relay.address, clock, budget));
    let (ready_tx, mut ready_rx) = mpsc::channel(calls);
    let handles: Vec<_> = (0..calls)
        .map(|index| {
            let index = u32::try_from(index).expect("at most 1000 calls");
            tokio::spawn(drive_call(Arc::clone(&shared), index, ready_tx.clone()))
        })
        .collect();
    drop(ready_tx);

    // Every call set up (or failed), within the set-up budget.
    let setup_started = Instant::now();
    let mut set_up = 0usize;
    let mut failed_setup = 0usize;
    let setup_deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
    while set_up + failed_setup < calls {
        match tokio::time::timeout_at(setup_deadline, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => set_up += 1,
            Ok(Some(Err(_))) => failed_setup += 1,
            Ok(None) | Err(_) => break,
        }
    }
    println!(
        "  {set_up}/{calls} calls streaming after {:.1} s of set-up{}",
        setup_started.elapsed().as_secs_f64(),
        if failed_setup > 0 {
            format!(" ({failed_setup} failed)")
        } else {
            String::new()
        }
    );

    tokio::time::sleep(config.warmup).await;
    shared
        .window
        .start_ns
        .store(clock.now_ns(), Ordering::Relaxed);
    let before = CpuSnapshot::take(pid)?;
    let mut rss_peak_kib = 0;
    let window_end = tokio::time::Instant::now() + config.steady;
    let mut sample_at = tokio::time::Instant::now();
    while sample_at < window_end {
        sample_at = (sample_at + Duration::from_secs(1)).min(window_end);
        tokio::time::sleep_until(sample_at).await;
        rss_peak_kib = rss_peak_kib.max(vm_rss_kib(pid)?);
    }
    shared
        .window
        .end_ns
        .store(clock.now_ns(), Ordering::Relaxed);
    let after = CpuSnapshot::take(pid)?;

    // Calls keep streaming while the window's last frames come back.
    tokio::time::sleep(config.drain).await;
    shared.stop.cancel();
    let mut stats = Vec::with_capacity(calls);
    let join_deadline = tokio::time::Instant::now() + IO_TIMEOUT * 2;
    for handle in handles {
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(join_deadline, handle).await {
            Ok(Ok(call)) => stats.push(call),
            Ok(Err(e)) => stats.push(CallStats {
                ended_early: Some(format!("the call task failed: {e}")),
                ..CallStats::default()
            }),
            Err(_) => {
                abort.abort();
                stats.push(CallStats {
                    ended_early: Some("the call did not hang up in time".to_owned()),
                    ..CallStats::default()
                });
            }
        }
    }
    let fake_appends = fake.appends.load(Ordering::Relaxed) - appends_before;
    let fake_deltas = fake.deltas.load(Ordering::Relaxed) - deltas_before;
    drop(relay); // kills the relay

    let failures: Vec<&String> = stats
        .iter()
        .filter_map(|s| s.ended_early.as_ref())
        .collect();
    let mut round_trips: Vec<u32> = stats
        .iter()
        .flat_map(|s| s.round_trips_us.iter().copied())
        .collect();
    round_trips.sort_unstable();
    let window_s = after.at.duration_since(before.at).as_secs_f64();
    let ms = |ticks: u64| ticks as f64 * 1000.0 / ticks_per_s as f64;
    let fake_ms = ms(after.fake - before.fake);
    let bench_ms = ms(after.bench - before.bench);
    let (busy, total) = (
        after.machine.0 - before.machine.0,
        after.machine.1 - before.machine.1,
    );
    Ok(RunFigures {
        calls,
        streaming: stats.iter().filter(|s| s.ended_early.is_none()).count(),
        failed: failures.len(),
        failure_example: failures.first().map(|s| (*s).clone()),
        window_s,
        relay_cpu_ms: ms(after.relay - before.relay),
        fake_cpu_ms: fake_ms,
        loadgen_cpu_ms: (bench_ms - fake_ms).max(0.0),
        machine_busy_pct: if total == 0 {
            f64::NAN
        } else {
            busy as f64 * 100.0 / total as f64
        },
        rss_cold_kib,
        rss_before_kib,
        rss_peak_kib,
        sent: stats.iter().map(|s| s.sent_in_window).sum(),
        returned: stats.iter().map(|s| s.returned_in_window).sum(),
        round_trip_p50_ms: percentile_ms(&round_trips, 0.50),
        round_trip_p99_ms: percentile_ms(&round_trips, 0.99),
        foreign_frames: stats.iter().map(|s| s.foreign_frames).sum(),
        clears: stats.iter().map(|s| s.clears).sum(),
        fake_appends,
        fake_deltas,
    })
}

fn print_details(figures: &RunFigures) {
    println!(
        "  window {:.1} s; frames sent {:.1} per call-second (Twilio: 50); relay RSS {} KiB before any call, {} KiB after \
         {WARMUP_CALLS} warm-up calls, {} KiB at the window's peak ({:.0} KiB per call counted from before any call)",
        figures.window_s,
        figures.sent as f64 / figures.call_seconds(),
        figures.rss_cold_kib,
        figures.rss_before_kib,
        figures.rss_peak_kib,
        figures.rss_per_call_from_cold_kib()
    );
    println!(
        "  fake: {} appends received, {} deltas sent (whole run); foreign frames {}, clears {}",
        figures.fake_appends, figures.fake_deltas, figures.foreign_frames, figures.clears
    );
    if figures.failed > 0 {
        println!(
            "  {} call(s) failed or ended early, e.g.: {}",
            figures.failed,
            figures.failure_example.as_deref().unwrap_or("?")
        );
    }
    println!("{TABLE_HEADER}");
    println!("{}", figures.table_row());
    println!();
}

fn main() -> anyhow::Result<()> {
    let config = BenchConfig::from_env()?;
    let ticks_per_s = clock_ticks_per_s();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "callbridge many-call load benchmark (issue 10): relay binary {}",
        config.bin.display()
    );
    println!(
        "  machine: {cores} logical CPU(s); calls {:?}; warm-up {:.0} s, steady window {:.0} s, drain {:.0} s; \
         load generator {} thread(s), echo fake 1 thread; bench build {}",
        config.calls,
        config.warmup.as_secs_f64(),
        config.steady.as_secs_f64(),
        config.drain.as_secs_f64(),
        config.gen_threads,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "optimised"
        },
    );
    println!();

    let fake_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(FAKE_THREAD_NAME)
        .enable_all()
        .build()
        .context("starting the echo fake's runtime")?;
    let counters = Arc::new(FakeCounters::default());
    let fake_url = start_echo_fake(&fake_runtime, Arc::clone(&counters))?;
    let gen_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.gen_threads)
        .thread_name("load-gen")
        .enable_all()
        .build()
        .context("starting the load generator's runtime")?;

    let clock = Clock(Instant::now());
    let mut rows = Vec::new();
    for &calls in &config.calls {
        println!("{calls} calls:");
        let figures = gen_runtime.block_on(run(
            &config,
            calls,
            clock,
            &fake_url,
            &counters,
            ticks_per_s,
        ))?;
        print_details(&figures);
        rows.push(figures.table_row());
    }
    println!(
        "Summary ({} echo-fake connections in all):",
        counters.connections.load(Ordering::Relaxed)
    );
    println!("{TABLE_HEADER}");
    for row in rows {
        println!("{row}");
    }
    gen_runtime.shutdown_timeout(IO_TIMEOUT);
    fake_runtime.shutdown_timeout(IO_TIMEOUT);
    Ok(())
}
