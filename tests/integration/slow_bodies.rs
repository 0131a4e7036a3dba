//! Request bodies that are too large, too slow or unsigned: refused from the head where the head
//! says enough (413 for a declared length over the limit, 403 for a webhook without `X-Twilio-Signature`), cut with
//! 408 when the body is late, and 1,100 trickling bodies against the real binary held to 1,024 file descriptors do not
//! lock out `/health` or a signed webhook. Also `/mcp`'s 400 for a body that is not JSON (item 8).
//!
//! These tests speak HTTP/1.1 over raw sockets: a client library would not send a head without its body. Every
//! connection goes to 127.0.0.1, every loop is bounded in count and time.

use std::time::{Duration, Instant};

use callbridge::simulate::webhook::random_hex_id;
use callbridge::twilio::signature::RequestValidator;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::fake_realtime::{FakeRealtime, Script};
use crate::helpers::{AUTH_TOKEN, PUBLIC_URL, spawn_app_with, spawn_binary_with_fd_limit};

/// The bearer key of the apps these tests start.
const API_KEY: &str = "slow-bodies-test-key";
/// A `Content-Length` of 10 GB: no body of that size is ever sent.
const HUGE_LENGTH: &str = "10000000000";

/// Opens a connection to `127.0.0.1:port` and sends `head` (the request line and headers, without the blank line),
/// then the blank line and `body_start`.
async fn send_head(port: u16, head: &str, body_start: &[u8]) -> TcpStream {
    let mut stream = tokio::time::timeout(
        Duration::from_secs(10),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .expect("connected within 10 s")
    .expect("connect");
    let mut bytes = format!("{head}\r\n\r\n").into_bytes();
    bytes.extend_from_slice(body_start);
    stream.write_all(&bytes).await.expect("the head is sent");
    stream
}

/// Reads until the server has sent a whole response head (or closed), for at most `timeout`; returns the status
/// code and everything read. `None` when no status line came in time.
async fn read_status(stream: &mut TcpStream, timeout: Duration) -> (Option<u16>, String) {
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    // At most 64 reads: a response head is far smaller.
    for _ in 0..64 {
        if received.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => received.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&received).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    (status, text)
}

/// Reads whatever is left until the server closes the connection, for at most `timeout`; true when it closed.
async fn closed_within(stream: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    for _ in 0..64 {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
    false
}

/// The head of a `POST /incoming-call` with `Content-Length: length` and, when given, `X-Twilio-Signature`.
fn webhook_head(length: &str, signature: Option<&str>) -> String {
    let mut head = format!(
        "POST /incoming-call HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}"
    );
    if let Some(signature) = signature {
        head.push_str(&format!("\r\nX-Twilio-Signature: {signature}"));
    }
    head
}

/// A whole `POST /incoming-call` for a fresh CallSid, signed as Twilio signs it with the test token.
fn signed_webhook_request() -> Vec<u8> {
    let params: Vec<(String, String)> = [
        ("CallSid", random_hex_id("CA")),
        ("AccountSid", random_hex_id("AC")),
        ("From", "+15550100001".to_owned()),
        ("To", "+15550100002".to_owned()),
        ("CallStatus", "ringing".to_owned()),
        ("Direction", "inbound".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let signature =
        RequestValidator::new(AUTH_TOKEN).sign(&format!("{PUBLIC_URL}/incoming-call"), &params);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let mut request = webhook_head(&body.len().to_string(), Some(&signature)).into_bytes();
    request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    request.extend_from_slice(body.as_bytes());
    request
}

#[actix_web::test]
async fn a_declared_huge_content_length_is_refused_with_413_on_mcp_api_and_a_webhook_without_sending_the_body()
 {
    let app = spawn_app_with(
        Script::default(),
        &[
            ("CALLBRIDGE_API_KEY", API_KEY),
            ("CALLBRIDGE_BODY_TIMEOUT_S", "30"),
        ],
    )
    .await;
    let bearer = format!("Authorization: Bearer {API_KEY}");
    let heads = [
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n{bearer}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {HUGE_LENGTH}"
        ),
        format!(
            "POST /api/calls HTTP/1.1\r\nHost: 127.0.0.1\r\n{bearer}\r\nContent-Type: application/json\r\n\
             Content-Length: {HUGE_LENGTH}"
        ),
        webhook_head(HUGE_LENGTH, Some("forged-but-present")),
    ];

    for head in heads {
        let started = Instant::now();
        let mut stream = send_head(app.port, &head, b"").await;

        let (status, answer) = read_status(&mut stream, Duration::from_secs(5)).await;

        assert_eq!(status, Some(413), "{head}\n---\n{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "answered from the head, not after a body or timeout: {:?}",
            started.elapsed()
        );
        assert!(
            closed_within(&mut stream, Duration::from_secs(5)).await,
            "the connection is closed after the 413: {head}"
        );
    }
}

#[actix_web::test]
async fn a_webhook_without_a_signature_is_refused_with_403_before_its_trickled_body_arrives() {
    let app = spawn_app_with(Script::default(), &[("CALLBRIDGE_BODY_TIMEOUT_S", "30")]).await;
    let started = Instant::now();
    // 1,000 bytes announced, one sent: the rest would take 999 s at a byte a second.
    let mut stream = send_head(app.port, &webhook_head("1000", None), b"C").await;

    let (status, answer) = read_status(&mut stream, Duration::from_secs(5)).await;

    assert_eq!(status, Some(403), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
}

#[actix_web::test]
async fn a_body_still_trickling_at_the_deadline_is_answered_408_and_its_connection_closed() {
    let app = spawn_app_with(Script::default(), &[("CALLBRIDGE_BODY_TIMEOUT_S", "1")]).await;
    let started = Instant::now();
    let mut stream = send_head(app.port, &webhook_head("1000", Some("forged")), b"C").await;

    // A byte every 200 ms, for at most 5 s, until the server answers.
    let mut answer = (None, String::new());
    for _ in 0..25 {
        answer = read_status(&mut stream, Duration::from_millis(200)).await;
        if answer.0.is_some() || stream.write_all(b"a").await.is_err() {
            break;
        }
    }
    let (status, text) = answer;

    assert_eq!(status, Some(408), "{text}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(4),
        "cut at the 1 s deadline: {elapsed:?}"
    );
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
}

#[actix_web::test]
async fn a_body_that_arrives_in_pieces_within_the_deadline_is_served() {
    let app = spawn_app_with(Script::default(), &[("CALLBRIDGE_BODY_TIMEOUT_S", "5")]).await;
    let request = signed_webhook_request();
    let (head, body) = request.split_at(request.len() - 20);
    let mut stream = TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    stream.write_all(head).await.expect("the head");

    tokio::time::sleep(Duration::from_millis(500)).await;
    stream.write_all(body).await.expect("the rest of the body");
    let (status, text) = read_status(&mut stream, Duration::from_secs(10)).await;

    assert_eq!(status, Some(200), "{text}");
}

#[actix_web::test]
async fn mcp_with_unparseable_json_is_answered_400_with_a_json_rpc_parse_error() {
    let app = spawn_app_with(Script::default(), &[("CALLBRIDGE_API_KEY", API_KEY)]).await;

    let mut response = awc::Client::default()
        .post(format!("{}/mcp", app.address))
        .bearer_auth(API_KEY)
        .insert_header(("Accept", "application/json, text/event-stream"))
        .insert_header(("Content-Type", "application/json"))
        .send_body("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":")
        .await
        .expect("/mcp answers");
    let body: serde_json::Value =
        serde_json::from_slice(&response.body().await.expect("a body")).expect("a JSON body");

    assert_eq!(response.status().as_u16(), 400, "{body}");
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(body["id"], serde_json::Value::Null, "{body}");
    assert_eq!(body["error"]["code"], -32700, "{body}");
}

#[actix_web::test]
async fn mcp_with_json_that_is_not_json_rpc_is_answered_400_with_an_invalid_request_error() {
    let app = spawn_app_with(Script::default(), &[("CALLBRIDGE_API_KEY", API_KEY)]).await;

    let mut response = awc::Client::default()
        .post(format!("{}/mcp", app.address))
        .bearer_auth(API_KEY)
        .insert_header(("Accept", "application/json, text/event-stream"))
        .send_json(&serde_json::json!({"hello": "world"}))
        .await
        .expect("/mcp answers");
    let body: serde_json::Value =
        serde_json::from_slice(&response.body().await.expect("a body")).expect("a JSON body");

    assert_eq!(response.status().as_u16(), 400, "{body}");
    assert_eq!(body["error"]["code"], -32600, "{body}");
}

// ---- The real binary with 1,024 file descriptors ----

/// How a trickling connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trickle {
    /// The server answered with this status (then closed).
    Answered(u16),
    /// The server closed or reset the connection without a status line.
    Closed,
    /// Still open when the trickler gave up.
    StillOpen,
}

/// Sends a signed-looking webhook head announcing 1,000 bytes, then one byte a second, for at most `max_s` seconds;
/// returns how the connection ended.
async fn trickle(port: u16, max_s: u32) -> Trickle {
    let Ok(Ok(mut stream)) = tokio::time::timeout(
        Duration::from_secs(10),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        return Trickle::Closed;
    };
    let head = format!("{}\r\n\r\n", webhook_head("1000", Some("forged")));
    if stream.write_all(head.as_bytes()).await.is_err() {
        return Trickle::Closed;
    }
    let mut buf = [0u8; 1024];
    for _ in 0..max_s {
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Trickle::Closed,
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                return text
                    .strip_prefix("HTTP/1.1 ")
                    .and_then(|rest| rest.get(..3))
                    .and_then(|code| code.parse().ok())
                    .map_or(Trickle::Closed, Trickle::Answered);
            }
            Err(_) => {
                if stream.write_all(b"a").await.is_err() {
                    return Trickle::Closed;
                }
            }
        }
    }
    Trickle::StillOpen
}

/// Sends `request` whole on a fresh connection and waits at most `timeout` for the status.
async fn request_status(port: u16, request: &[u8], timeout: Duration) -> Option<u16> {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(request).await.ok()?;
        read_status(&mut stream, timeout).await.0
    };
    tokio::time::timeout(timeout, attempt).await.ok().flatten()
}

#[actix_web::test]
async fn eleven_hundred_trickling_bodies_against_1024_descriptors_are_cut_and_health_and_a_signed_webhook_are_answered()
 {
    // This process holds the 1,100 client sockets itself.
    let own_limit = rlimit::increase_nofile_limit(u64::MAX).expect("read this process's fd limit");
    assert!(
        own_limit >= 1_400,
        "the test needs about 1,400 file descriptors of its own; the hard limit is {own_limit}"
    );
    let fake = FakeRealtime::start(Script::default()).await;
    let mut server = spawn_binary_with_fd_limit(
        &fake.url(),
        &[
            ("CALLBRIDGE_BODY_TIMEOUT_S", "2"),
            // The fd limit is under test, not the rate limiter.
            ("CALLBRIDGE_WEBHOOK_RATE_LIMIT_PER_MIN", "1000000"),
            ("CALLBRIDGE_DRAIN_TIMEOUT_S", "0"),
        ],
        Some((1024, 1024)),
    )
    .await;
    let port = server.port;
    let started = Instant::now();

    let tricklers: Vec<_> = (0..1_100)
        .map(|_| tokio::spawn(trickle(port, 40)))
        .collect();
    // Let the tricklers connect and send their heads before the honest clients come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let health = request_status(
        port,
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        Duration::from_secs(20),
    );
    let webhook_request = signed_webhook_request();
    let webhook = request_status(port, &webhook_request, Duration::from_secs(20));
    let (health, webhook) = tokio::join!(health, webhook);
    let answered_after = started.elapsed();
    let mut outcomes = Vec::with_capacity(tricklers.len());
    for trickler in tricklers {
        outcomes.push(trickler.await.expect("a trickler ends"));
    }
    let all_cut_after = started.elapsed();
    let (_, logs) = server.stop().await;

    assert_eq!(health, Some(200), "/health answered within 20 s");
    assert_eq!(
        webhook,
        Some(200),
        "the signed webhook answered within 20 s"
    );
    let still_open = outcomes
        .iter()
        .filter(|o| **o == Trickle::StillOpen)
        .count();
    let timed_out = outcomes
        .iter()
        .filter(|o| **o == Trickle::Answered(408))
        .count();
    assert_eq!(
        still_open, 0,
        "every trickling connection is cut: {outcomes:?}"
    );
    assert!(
        timed_out >= 1_000,
        "most are answered 408 (the rest may be closed at accept): {timed_out}"
    );
    // The limit was really reached: the server could not accept every connection at once.
    assert!(
        logs.contains("Too many open files"),
        "the server never ran out of file descriptors"
    );
    eprintln!(
        "1,100 tricklers: /health and the webhook answered after {answered_after:?}, all cut after \
         {all_cut_after:?} ({timed_out} with 408)"
    );
}

#[actix_web::test]
async fn start_up_raises_the_soft_descriptor_limit_to_the_hard_limit_and_logs_it() {
    let fake = FakeRealtime::start(Script::default()).await;
    let mut server = spawn_binary_with_fd_limit(
        &fake.url(),
        &[("CALLBRIDGE_DRAIN_TIMEOUT_S", "0")],
        Some((256, 2048)),
    )
    .await;
    let pid = server.child.id().expect("running");

    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("/proc limits");
    let (_, logs) = server.stop().await;

    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let figures: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(figures, ["2048", "2048"], "{open_files}");
    assert!(
        logs.lines()
            .any(|l| l.contains("RLIMIT_NOFILE") && l.contains("2048")),
        "{logs}"
    );
}
