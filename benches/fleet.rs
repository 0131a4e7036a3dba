//! Several instances: how many calls per second two instances accept through the load balancer, and how much time
//! Redis adds to the webhook → TwiML path.
//!
//! Run with `make bench-fleet` (after `make services`): `cargo test --bench fleet` in the test profile, so it reuses
//! the debug build (dependencies at opt-level 1, the crate itself unoptimised) instead of a release build of
//! everything. Point `BENCH_FLEET_BIN` at a release binary to measure that instead. Not part of `make test`: its
//! figures depend on what else the machine does.
//!
//! Every request is what Twilio sends for an inbound call: `POST /incoming-call` with the form Twilio posts and a
//! valid `X-Twilio-Signature`; it counts as accepted when the answer is 200 with a `<Connect><Stream>`. Each accepted
//! call also pre-connects a Realtime session (to a fake in this process that answers `session.update` and holds the
//! socket) and stores its record, as a real one does; its stream never opens, so the short stream-token lifetime
//! (`CALLBRIDGE_STREAM_TOKEN_TTL_S=5`) closes it, as a call whose stream never came.
//!
//! 1. **Redis on the webhook path**: two instances side by side on SQLite, one without Redis and one with
//!    `CALLBRIDGE_REDIS_URL`; sequential webhooks sent alternately to each (so both see the same machine), after a
//!    warm-up. Prints p50/p90/p99/mean of each and the difference: what Redis (token, fleet cap, call registry) adds.
//! 2. **Throughput through HAProxy**: two instances sharing Redis and a fresh PostgreSQL database behind HAProxy
//!    running deploy/haproxy/haproxy.cfg on loopback; `BENCH_FLEET_CONCURRENCY` clients post webhooks back to back
//!    for `BENCH_FLEET_SECONDS`; prints accepted calls per second and latency percentiles. The same against one of the
//!    instances directly (no balancer), for comparison.
//!
//! Settings (environment): `CALLBRIDGE_TEST_REDIS_URL`, `CALLBRIDGE_TEST_DATABASE_URL` (from `make services`;
//! required), `BENCH_FLEET_BIN` (default: the callbridge binary cargo built), `BENCH_FLEET_REQUESTS` (part 1, per
//! instance, default 300), `BENCH_FLEET_CONCURRENCY` (part 2, default 16), `BENCH_FLEET_SECONDS` (part 2, default 10).
//! Needs `psql` and `haproxy` (PATH, /usr/sbin, or `HAPROXY`). Every started process is killed at the end (also on a
//! panic), and the database is dropped.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

use callbridge::simulate::webhook::random_hex_id;
use callbridge::twilio::signature::RequestValidator;

/// The auth token the instances check webhook signatures with.
const AUTH_TOKEN: &str = "fleet-bench-auth-token-0123456789";
/// The public URL the instances believe Twilio reaches them at (signatures are computed over it).
const PUBLIC_URL: &str = "https://callbridge.test";
/// Webhooks sent before measuring, per target.
const WARMUP_REQUESTS: usize = 30;
/// Throughput: seconds of load before the measured window.
const WARMUP_S: u64 = 2;
/// Between two throughput runs: the stream-token lifetime and a margin, so one run's unopened calls are closed
/// before the next starts.
const SETTLE: Duration = Duration::from_secs(7);
/// How long one webhook may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an instance or HAProxy may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);

fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .with_context(|| format!("{name}={value} is not a number")),
        Err(_) => Ok(default),
    }
}

fn required(name: &str) -> anyhow::Result<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty()).with_context(|| {
        format!("{name} is not set: run `make services` and `. target/services/env` (make bench-fleet does)")
    })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A started process, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A database of this run, dropped (with its sessions) when dropped.
struct Database {
    admin_url: String,
    name: String,
    url: String,
}

impl Database {
    fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!("fleet_bench_{}", &random_hex_id("")[..12]);
        psql(admin_url, &format!("CREATE DATABASE {name}"))?;
        let mut url = url::Url::parse(admin_url).context("CALLBRIDGE_TEST_DATABASE_URL")?;
        url.set_path(&format!("/{name}"));
        Ok(Database {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = psql(&self.admin_url, &sql) {
            eprintln!("could not drop the bench database: {e:#}");
        }
    }
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .context("running psql")?;
    if !output.status.success() {
        bail!("psql {sql:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// Waits until `GET http://127.0.0.1:{port}{path}` answers 200 (a plain HTTP/1.0 request).
fn wait_for_200(port: u16, path: &str) -> anyhow::Result<()> {
    use std::io::{Read as _, Write as _};
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(mut socket) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = socket.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = write!(socket, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
            let mut answer = [0_u8; 12];
            if socket.read_exact(&mut answer).is_ok() && answer.ends_with(b"200") {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing answered 200 at 127.0.0.1:{port}{path} within {START_TIMEOUT:?}")
}

/// Starts `callbridge serve` on a free port with the bench's settings plus `extra`; returns it and its port.
fn start_instance(
    bin: &str,
    realtime_url: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<(Process, u16)> {
    let port = free_port()?;
    let data_dir =
        std::env::temp_dir().join(format!("callbridge-bench-fleet-{}", random_hex_id("")));
    let child = Command::new(bin)
        .arg("serve")
        .env_clear()
        .env("PORT", port.to_string())
        .env("CALLBRIDGE_HOST", "127.0.0.1")
        .env("PUBLIC_URL", PUBLIC_URL)
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("OPENAI_API_KEY", "sk-bench-key")
        .env("OPENAI_REALTIME_URL", realtime_url)
        .env("CALLBRIDGE_CONFIG", "/nonexistent/callbridge.toml")
        .env("CALLBRIDGE_DATA_DIR", &data_dir)
        .env("CALLBRIDGE_MAX_CONCURRENT_CALLS", "1000000")
        .env("CALLBRIDGE_WEBHOOK_RATE_LIMIT_PER_MIN", "100000000")
        .env("CALLBRIDGE_STREAM_TOKEN_TTL_S", "5")
        .env("RUST_LOG", "warn")
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {bin}"))?;
    let process = Process(child);
    wait_for_200(port, "/ready")?;
    Ok((process, port))
}

/// Starts HAProxy with deploy/haproxy/haproxy.cfg in front of `servers`; returns it and its port.
fn start_haproxy(server_a: u16, server_b: u16) -> anyhow::Result<(Process, u16)> {
    let bin = std::env::var("HAPROXY").unwrap_or_else(|_| {
        if Command::new("haproxy").arg("-v").output().is_ok() {
            "haproxy".to_owned()
        } else {
            "/usr/sbin/haproxy".to_owned()
        }
    });
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy/haproxy.cfg");
    let port = free_port()?;
    let stats_port = free_port()?;
    let child = Command::new(&bin)
        .args(["-db", "-f", config])
        .env("CALLBRIDGE_LB_BIND", format!("127.0.0.1:{port}"))
        .env(
            "CALLBRIDGE_LB_STATS_BIND",
            format!("127.0.0.1:{stats_port}"),
        )
        .env("CALLBRIDGE_LB_SERVER_A", format!("127.0.0.1:{server_a}"))
        .env("CALLBRIDGE_LB_SERVER_B", format!("127.0.0.1:{server_b}"))
        .env("CALLBRIDGE_LB_CHECK_INTER", "1s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {bin}"))?;
    let process = Process(child);
    wait_for_200(port, "/ready")?;
    Ok((process, port))
}

/// A Realtime fake that answers `session.update` with `session.updated` and holds each socket until the relay closes
/// it. Runs on its own thread; returns its `ws://` URL.
fn start_realtime_fake() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("fleet-bench-fake".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => return eprintln!("realtime fake: {e}"),
            };
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return eprintln!("realtime fake: cannot listen");
                };
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(async move {
                        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                            return;
                        };
                        while let Some(Ok(message)) = ws.next().await {
                            if let Message::Text(text) = message
                                && text.contains("\"session.update\"")
                            {
                                let reply = r#"{"type":"session.updated","event_id":"evt_1","session":{"type":"realtime"}}"#;
                                if ws.send(Message::text(reply)).await.is_err() {
                                    return;
                                }
                            }
                        }
                    });
                }
            });
        })?;
    Ok(format!("ws://{addr}/v1/realtime"))
}

/// Posts one signed inbound-call webhook to `port`; its latency when the answer is 200 with a `<Stream>`.
async fn one_webhook(client: &awc::Client, port: u16) -> anyhow::Result<Duration> {
    let call_sid = random_hex_id("CA");
    let account_sid = random_hex_id("AC");
    let params: Vec<(String, String)> = [
        ("AccountSid", account_sid.as_str()),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", call_sid.as_str()),
        ("CallStatus", "ringing"),
        ("Called", "+15550100002"),
        ("Caller", "+15550100001"),
        ("Direction", "inbound"),
        ("From", "+15550100001"),
        ("To", "+15550100002"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let signature =
        RequestValidator::new(AUTH_TOKEN).sign(&format!("{PUBLIC_URL}/incoming-call"), &params);
    let started = Instant::now();
    let mut response = client
        .post(format!("http://127.0.0.1:{port}/incoming-call"))
        .insert_header(("X-Twilio-Signature", signature))
        .send_form(&params)
        .await
        .map_err(|e| anyhow::anyhow!("sending: {e}"))?;
    let body = response
        .body()
        .await
        .map_err(|e| anyhow::anyhow!("reading: {e}"))?;
    let elapsed = started.elapsed();
    let body = String::from_utf8_lossy(&body);
    if response.status().as_u16() != 200 || !body.contains("<Stream") {
        bail!("answer {}: {body}", response.status());
    }
    Ok(elapsed)
}

fn client() -> awc::Client {
    awc::Client::builder().timeout(REQUEST_TIMEOUT).finish()
}

/// `p` (0..=100) percentile of sorted `values`, ms.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn mean_ms(values: &[Duration]) -> f64 {
    values.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / values.len().max(1) as f64
}

/// Part 1: sequential webhooks alternating between an instance without Redis and one with it.
async fn redis_latency(without: u16, with: u16, requests: usize) -> anyhow::Result<()> {
    let client = client();
    for _ in 0..WARMUP_REQUESTS {
        one_webhook(&client, without).await?;
        one_webhook(&client, with).await?;
    }
    let (mut plain, mut redis) = (Vec::with_capacity(requests), Vec::with_capacity(requests));
    for n in 0..requests {
        // Each goes first half of the time: a request right after another may find caches warm, or the CPU busy.
        if n % 2 == 0 {
            plain.push(one_webhook(&client, without).await?);
            redis.push(one_webhook(&client, with).await?);
        } else {
            redis.push(one_webhook(&client, with).await?);
            plain.push(one_webhook(&client, without).await?);
        }
    }
    plain.sort();
    redis.sort();
    println!("\nWebhook → TwiML, one at a time, {requests} per instance (SQLite records; ms):");
    println!(
        "{:<22}{:>9}{:>9}{:>9}{:>9}",
        "", "p50", "p90", "p99", "mean"
    );
    for (name, values) in [("without Redis", &plain), ("with Redis", &redis)] {
        println!(
            "{name:<22}{:>9.2}{:>9.2}{:>9.2}{:>9.2}",
            percentile_ms(values, 50.0),
            percentile_ms(values, 90.0),
            percentile_ms(values, 99.0),
            mean_ms(values)
        );
    }
    println!(
        "{:<22}{:>9.2}{:>9.2}{:>9.2}{:>9.2}",
        "Redis adds",
        percentile_ms(&redis, 50.0) - percentile_ms(&plain, 50.0),
        percentile_ms(&redis, 90.0) - percentile_ms(&plain, 90.0),
        percentile_ms(&redis, 99.0) - percentile_ms(&plain, 99.0),
        mean_ms(&redis) - mean_ms(&plain)
    );
    Ok(())
}

/// Part 2: `concurrency` clients posting webhooks to `port` back to back; prints accepted calls per second.
async fn throughput(
    label: &str,
    port: u16,
    concurrency: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (measuring, stop, errors) = (measuring.clone(), stop.clone(), errors.clone());
        let label = label.to_owned();
        workers.push(actix_web::rt::spawn(async move {
            let client = client();
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let counted = measuring.load(Ordering::Relaxed);
                match one_webhook(&client, port).await {
                    Ok(latency) if counted && !stop.load(Ordering::Relaxed) => {
                        latencies.push(latency)
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if counted && errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("{label}: first error: {e:#}");
                        }
                    }
                }
            }
            latencies
        }));
    }
    actix_web::rt::time::sleep(Duration::from_secs(WARMUP_S)).await;
    measuring.store(true, Ordering::Relaxed);
    let window_start = Instant::now();
    actix_web::rt::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let window = window_start.elapsed();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.context("a client task")?);
    }
    latencies.sort();
    println!(
        "{label:<34}{:>10.1}{:>9}{:>9.1}{:>9.1}{:>8}",
        latencies.len() as f64 / window.as_secs_f64(),
        latencies.len(),
        percentile_ms(&latencies, 50.0),
        percentile_ms(&latencies, 99.0),
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}

/// `(name, value)` pairs borrowed from owned values.
fn borrow<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn main() -> anyhow::Result<()> {
    let redis_url = required("CALLBRIDGE_TEST_REDIS_URL")?;
    let admin_database_url = required("CALLBRIDGE_TEST_DATABASE_URL")?;
    let bin = std::env::var("BENCH_FLEET_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_callbridge").to_owned());
    let requests = usize::try_from(env_number("BENCH_FLEET_REQUESTS", 300)?)?;
    let concurrency = usize::try_from(env_number("BENCH_FLEET_CONCURRENCY", 16)?)?;
    let seconds = env_number("BENCH_FLEET_SECONDS", 10)?;
    let realtime_url = start_realtime_fake()?;
    println!("callbridge fleet bench: {bin}");
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!("{cpus} CPUs; other processes on the machine share them");

    // Part 1: one instance without Redis, one with it, both on SQLite.
    {
        let prefix = format!("callbridge-bench:{}:", &random_hex_id("")[..12]);
        let (_plain, plain_port) = start_instance(&bin, &realtime_url, &[])?;
        let (_redis, redis_port) = start_instance(
            &bin,
            &realtime_url,
            &[
                ("CALLBRIDGE_REDIS_URL", &redis_url),
                ("CALLBRIDGE_REDIS_KEY_PREFIX", &prefix),
                ("CALLBRIDGE_INSTANCE_ID", "bench-redis"),
            ],
        )?;
        actix_web::rt::System::new().block_on(redis_latency(plain_port, redis_port, requests))?;
    }

    // Part 2: two instances on Redis and PostgreSQL behind HAProxy.
    let database = Database::create(&admin_database_url)?;
    let prefix = format!("callbridge-bench:{}:", &random_hex_id("")[..12]);
    let shared = |id: &'static str| -> Vec<(&str, String)> {
        vec![
            ("CALLBRIDGE_REDIS_URL", redis_url.clone()),
            ("CALLBRIDGE_REDIS_KEY_PREFIX", prefix.clone()),
            ("CALLBRIDGE_DATABASE_URL", database.url.clone()),
            ("CALLBRIDGE_INSTANCE_ID", id.to_owned()),
        ]
    };
    let env_a = shared("bench-a");
    let env_b = shared("bench-b");
    let (_a, port_a) = start_instance(&bin, &realtime_url, &borrow(&env_a))?;
    let (_b, port_b) = start_instance(&bin, &realtime_url, &borrow(&env_b))?;
    let (_lb, lb_port) = start_haproxy(port_a, port_b)?;
    println!(
        "\nAccepted inbound calls (200 with <Stream>), {concurrency} clients back to back, {seconds} s after {WARMUP_S} s \
         warm-up; Redis + PostgreSQL:"
    );
    println!(
        "{:<34}{:>10}{:>9}{:>9}{:>9}{:>8}",
        "", "calls/s", "calls", "p50 ms", "p99 ms", "errors"
    );
    actix_web::rt::System::new().block_on(async {
        throughput(
            "two instances through HAProxy",
            lb_port,
            concurrency,
            seconds,
        )
        .await?;
        // The first run's calls close when their stream tokens expire (5 s): let that pass before the next.
        actix_web::rt::time::sleep(SETTLE).await;
        throughput("one instance, direct", port_a, concurrency, seconds).await
    })?;
    Ok(())
}
