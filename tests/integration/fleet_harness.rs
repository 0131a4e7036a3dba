//! Several instances behind a real load balancer, for the fleet tests: two `callbridge serve` processes sharing one
//! Redis (a key prefix of their own) and one PostgreSQL database (created for the test, dropped after it), behind an
//! `haproxy` process running deploy/haproxy/haproxy.cfg (the file that ships) on loopback, all talking to one fake
//! Realtime server.
//!
//! The services come from the environment, as `make services` writes them (target/services/env):
//! `CALLBRIDGE_TEST_REDIS_URL` and `CALLBRIDGE_TEST_DATABASE_URL` (a database whose role may create databases).
//! A test without them fails and says to run `make services`; it never skips. `psql` creates and drops the test's
//! database, `haproxy` is found on PATH, in /usr/sbin, or at `HAPROXY`.

use std::time::Duration;

use callbridge::simulate::webhook::random_hex_id;
use callbridge::simulate::{MediaStreamClient, WebhookAnswer, WebhookCall, local_stream_url};
use serde_json::Value;

use crate::fake_realtime::{FakeRealtime, Script};
use crate::helpers::{AUTH_TOKEN, PUBLIC_URL, RunningBinary, get_status, spawn_binary};

/// The bearer key both instances accept on `/api`.
pub const FLEET_API_KEY: &str = "fleet-test-api-key-0123456789";
/// The lease the instances take, seconds: short, so a lost instance's calls are closed soon.
pub const LEASE_S: u64 = 3;
/// Time between two HAProxy health checks of an instance, ms.
pub const CHECK_INTER_MS: u64 = 200;

/// The test services: a PostgreSQL database URL and a Redis URL.
pub struct Services {
    /// `postgres://...`: a database in which the role may create databases.
    pub database_url: String,
    /// `redis://...`
    pub redis_url: String,
}

impl Services {
    /// The services `make services` started, from `CALLBRIDGE_TEST_DATABASE_URL` and `CALLBRIDGE_TEST_REDIS_URL`.
    ///
    /// # Panics
    /// When either is unset: the test fails, naming `make services`.
    pub fn from_env() -> Self {
        let read = |name: &str| {
            std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
                panic!(
                    "{name} is not set: these tests need Redis and PostgreSQL. Run `make services` and \
                     `. target/services/env` (make test does both)"
                )
            })
        };
        Services {
            database_url: read("CALLBRIDGE_TEST_DATABASE_URL"),
            redis_url: read("CALLBRIDGE_TEST_REDIS_URL"),
        }
    }
}

/// A PostgreSQL database of one test: created empty, dropped (connections and all) when dropped.
pub struct TestDatabase {
    /// The URL of the maintenance database the test database was created from.
    admin_url: String,
    /// The database's name.
    pub name: String,
    /// Its URL, for `CALLBRIDGE_DATABASE_URL`.
    pub url: String,
}

impl TestDatabase {
    /// Creates a fresh database next to the one `services.database_url` names.
    pub fn create(services: &Services) -> Self {
        let name = format!("fleet_{}", &random_hex_id("")[..16]);
        psql(&services.database_url, &format!("CREATE DATABASE {name}"));
        let mut url =
            url::Url::parse(&services.database_url).expect("CALLBRIDGE_TEST_DATABASE_URL is a URL");
        url.set_path(&format!("/{name}"));
        TestDatabase {
            admin_url: services.database_url.clone(),
            name,
            url: url.to_string(),
        }
    }

    /// Runs one SQL statement in this database and returns what `psql -tA` printed.
    pub fn query(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // WITH (FORCE) ends the sessions of instances still running (a test that failed half-way).
        let _ = std::process::Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &self.admin_url, "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

/// Runs `sql` with `psql` against `url`; returns its unaligned, tuples-only output.
fn psql(url: &str, sql: &str) -> String {
    let output = std::process::Command::new("psql")
        .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .expect("psql runs (Debian: apt-get install postgresql-client)");
    assert!(
        output.status.success(),
        "psql {sql:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The `haproxy` binary: `HAPROXY`, else the first on PATH, else Debian's /usr/sbin/haproxy.
fn haproxy_bin() -> String {
    if let Ok(path) = std::env::var("HAPROXY") {
        return path;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("haproxy"))
            .find(|candidate| candidate.is_file())
    });
    on_path.map_or_else(
        || "/usr/sbin/haproxy".to_owned(),
        |path| path.display().to_string(),
    )
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// HAProxy running deploy/haproxy/haproxy.cfg on loopback in front of two instances.
pub struct Balancer {
    /// The process (killed when dropped).
    child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`: where Twilio and agents send their requests.
    pub address: String,
    /// `http://127.0.0.1:PORT`: the statistics page (`/stats;csv`).
    stats_address: String,
}

/// One server line of HAProxy's statistics.
#[derive(Debug, Clone)]
pub struct ServerStats {
    /// `UP`, `DOWN`, `UP 1/2`, `NOLB`, ...
    pub status: String,
    /// Requests (sessions) sent to the server so far.
    pub sessions_total: u64,
}

impl Balancer {
    /// Starts HAProxy with the shipped configuration, balancing over `server_a` and `server_b` (`host:port`), and
    /// waits until its front end accepts connections and both servers are up.
    pub async fn start(server_a: &str, server_b: &str) -> Self {
        let config =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy/haproxy.cfg");
        let port = free_port();
        let stats_port = free_port();
        let child = tokio::process::Command::new(haproxy_bin())
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .env("CALLBRIDGE_LB_BIND", format!("127.0.0.1:{port}"))
            .env(
                "CALLBRIDGE_LB_STATS_BIND",
                format!("127.0.0.1:{stats_port}"),
            )
            .env("CALLBRIDGE_LB_SERVER_A", server_a)
            .env("CALLBRIDGE_LB_SERVER_B", server_b)
            .env("CALLBRIDGE_LB_CHECK_INTER", format!("{CHECK_INTER_MS}ms"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("haproxy starts (Debian: apt-get install haproxy)");
        let balancer = Balancer {
            child,
            address: format!("http://127.0.0.1:{port}"),
            stats_address: format!("http://127.0.0.1:{stats_port}"),
        };
        let up = balancer
            .wait_for_servers(Duration::from_secs(10), |a, b| {
                a.status == "UP" && b.status == "UP"
            })
            .await;
        assert!(
            up,
            "haproxy did not see both instances up: {:?}",
            balancer.stats().await
        );
        balancer
    }

    /// The statistics of servers `a` and `b`, `None` while HAProxy does not answer.
    pub async fn stats(&self) -> Option<(ServerStats, ServerStats)> {
        let mut response = awc::Client::default()
            .get(format!("{}/stats;csv", self.stats_address))
            .send()
            .await
            .ok()?;
        let body = response.body().await.ok()?;
        let text = String::from_utf8_lossy(&body);
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
        let column = |name: &str| header.iter().position(|h| *h == name);
        let (px, sv, status, stot) = (
            column("pxname")?,
            column("svname")?,
            column("status")?,
            column("stot")?,
        );
        let mut found = (None, None);
        for line in lines {
            let fields: Vec<&str> = line.split(',').collect();
            if fields.get(px) != Some(&"callbridge") {
                continue;
            }
            let stats = ServerStats {
                status: fields.get(status)?.to_string(),
                sessions_total: fields.get(stot)?.parse().ok()?,
            };
            match fields.get(sv) {
                Some(&"a") => found.0 = Some(stats),
                Some(&"b") => found.1 = Some(stats),
                _ => {}
            }
        }
        Some((found.0?, found.1?))
    }

    /// Waits up to `timeout` for the statistics of `a` and `b` to satisfy `pred`; true when they did.
    pub async fn wait_for_servers(
        &self,
        timeout: Duration,
        pred: impl Fn(&ServerStats, &ServerStats) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some((a, b)) = self.stats().await
                && pred(&a, &b)
            {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Two instances, A and B, behind HAProxy, sharing Redis and a fresh PostgreSQL database.
pub struct Fleet {
    /// Instance A (`CALLBRIDGE_INSTANCE_ID=fleet-a`).
    pub a: RunningBinary,
    /// Instance B (`CALLBRIDGE_INSTANCE_ID=fleet-b`).
    pub b: RunningBinary,
    /// The load balancer in front of both.
    pub lb: Balancer,
    /// The fake OpenAI Realtime server both talk to.
    pub fake: FakeRealtime,
    /// The database both keep their records in.
    pub database: TestDatabase,
    /// The Redis key prefix of this fleet (`callbridge-test:<random>:`).
    pub redis_prefix: String,
    /// B's settings, for [`Fleet::restart_b`].
    env_b: Vec<(String, String)>,
}

impl Fleet {
    /// Starts the fake Realtime server playing `script`, a database, both instances (each with `extra_env` on top of
    /// the shared settings) and the balancer.
    pub async fn start(script: Script, extra_env: &[(&str, &str)]) -> Self {
        let services = Services::from_env();
        let fake = FakeRealtime::start(script).await;
        let database = TestDatabase::create(&services);
        let redis_prefix = format!("callbridge-test:{}:", &random_hex_id("")[..16]);
        let lease_s = LEASE_S.to_string();
        let shared: Vec<(&str, &str)> = vec![
            ("CALLBRIDGE_REDIS_URL", services.redis_url.as_str()),
            ("CALLBRIDGE_REDIS_KEY_PREFIX", redis_prefix.as_str()),
            ("CALLBRIDGE_DATABASE_URL", database.url.as_str()),
            ("CALLBRIDGE_INSTANCE_LEASE_S", lease_s.as_str()),
            ("CALLBRIDGE_API_KEY", FLEET_API_KEY),
            // The tests poll the API and place calls from one address; the limits are not what they test.
            ("CALLBRIDGE_API_RATE_LIMIT_PER_MIN", "100000"),
            ("CALLBRIDGE_WEBHOOK_RATE_LIMIT_PER_MIN", "100000"),
        ];
        let env_of = |id: &'static str| {
            let mut env = shared.clone();
            env.push(("CALLBRIDGE_INSTANCE_ID", id));
            env.extend_from_slice(extra_env);
            env
        };
        let a = spawn_binary(&fake.url(), &env_of("fleet-a")).await;
        let b = spawn_binary(&fake.url(), &env_of("fleet-b")).await;
        let lb = Balancer::start(
            &format!("127.0.0.1:{}", a.port),
            &format!("127.0.0.1:{}", b.port),
        )
        .await;
        let env_b = env_of("fleet-b")
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Fleet {
            a,
            b,
            lb,
            fake,
            database,
            redis_prefix,
            env_b,
        }
    }

    /// Restarts B as a deploy does: SIGTERM, wait for it to exit (asserting exit 0), then a new process with the same
    /// settings and instance id (on a port of its own: HAProxy keeps the old address, so reach it directly).
    pub async fn restart_b(&mut self) {
        let (status, logs) = self.b.stop().await;
        assert!(status.success(), "B exits 0 on SIGTERM: {status:?}\n{logs}");
        let env: Vec<(&str, &str)> = self
            .env_b
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.b = spawn_binary(&self.fake.url(), &env).await;
    }
}

impl Drop for Fleet {
    /// A failing test shows what both instances logged (the tail of each).
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, instance) in [("A", &self.a), ("B", &self.b)] {
                let lines = instance.log_lines();
                let tail = &lines[lines.len().saturating_sub(200)..];
                eprintln!("--- instance {name} logged ---\n{}", tail.join("\n"));
            }
        }
    }
}

/// A webhook for a fresh inbound call, to be posted at `address` (an instance or the balancer), signed for
/// `PUBLIC_URL` as Twilio signs it.
pub fn webhook_at(address: &str) -> WebhookCall {
    WebhookCall {
        server_url: address.to_owned(),
        public_url: PUBLIC_URL.to_owned(),
        auth_token: AUTH_TOKEN.to_owned(),
        call_sid: random_hex_id("CA"),
        account_sid: random_hex_id("AC"),
        from: "+15550100001".to_owned(),
        to: "+15550100002".to_owned(),
    }
}

/// Posts a fresh inbound call's webhook at `address`; returns the webhook and the answer.
pub async fn incoming_at(address: &str) -> (WebhookCall, WebhookAnswer) {
    let webhook = webhook_at(address);
    let answer = webhook
        .post_incoming()
        .await
        .expect("the webhook is answered");
    (webhook, answer)
}

/// The stream URL of a webhook `answer` (a `<Connect><Stream>` on the public URL), as a `ws://` URL on `address`.
pub fn stream_url_at(answer: &WebhookAnswer, address: &str) -> String {
    assert_eq!(answer.status, 200, "webhook refused: {}", answer.body);
    let stream = answer
        .stream
        .as_ref()
        .unwrap_or_else(|| panic!("TwiML with <Connect><Stream>: {}", answer.body));
    local_stream_url(&stream.url, address).expect("a stream URL")
}

/// A call whose webhook is posted at `webhook_address` and whose media stream opens at `stream_address` (either
/// an instance or the balancer), started as Twilio starts it.
pub async fn call_via(
    webhook_address: &str,
    stream_address: &str,
) -> (WebhookCall, MediaStreamClient) {
    let (webhook, answer) = incoming_at(webhook_address).await;
    let url = stream_url_at(&answer, stream_address);
    let stream = MediaStreamClient::connect(&url)
        .await
        .expect("the media stream upgrade succeeds");
    stream
        .start(&webhook.call_sid, &[])
        .await
        .expect("start is sent");
    (webhook, stream)
}

/// True when `instance` logged that it relays the media stream of `call_sid`.
pub fn holds(instance: &RunningBinary, call_sid: &str) -> bool {
    instance
        .log_lines()
        .iter()
        .any(|line| line.contains("media stream started") && line.contains(call_sid))
}

/// Waits up to `timeout` for `instance` to relay the stream of `call_sid`; true when it does.
pub async fn wait_until_held(instance: &RunningBinary, call_sid: &str, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if holds(instance, call_sid) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `method path` on the REST API at `address` with the fleet's key and an optional JSON body; the status and the
/// JSON answer (`Null` when the body is not JSON).
pub async fn api(address: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let request = match method {
        "POST" => client.post(format!("{address}{path}")),
        _ => client.get(format!("{address}{path}")),
    }
    .bearer_auth(FLEET_API_KEY);
    let mut response = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    }
    .unwrap_or_else(|e| panic!("{method} {address}{path} is answered: {e}"));
    let bytes = response.body().await.expect("a body");
    (
        response.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The stored call of `call_sid` as `GET /api/calls/{id}` at `address` shows it, `None` before it is stored.
pub async fn call_of(address: &str, call_sid: &str) -> Option<Value> {
    let (status, list) = api(address, "GET", "/api/calls?limit=100", None).await;
    assert_eq!(status, 200, "{list}");
    for summary in list["calls"].as_array().into_iter().flatten() {
        let id = summary["id"].as_str().expect("an id");
        let (status, call) = api(address, "GET", &format!("/api/calls/{id}"), None).await;
        assert_eq!(status, 200, "{call}");
        if call["call_sid"] == call_sid {
            return Some(call);
        }
    }
    None
}

/// Waits up to `timeout` for the stored call of `call_sid`, read at `address`, to satisfy `pred`; returns it, or
/// fails the test with what was last seen.
pub async fn wait_for_call(
    address: &str,
    call_sid: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut id: Option<String> = None;
    loop {
        let call = match &id {
            Some(id) => Some(
                api(address, "GET", &format!("/api/calls/{id}"), None)
                    .await
                    .1,
            ),
            None => call_of(address, call_sid).await,
        };
        if let Some(call) = &call {
            id = call["id"].as_str().map(str::to_owned);
            if pred(call) {
                return call.clone();
            }
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; the call is {call:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits up to `timeout` for `GET /ready` at `address` to answer `status`; true when it did.
pub async fn wait_for_ready_status(address: &str, status: u16, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if get_status(address, "/ready").await == Some(status) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
