//! `callbridge demo`, the real binary: a whole call with a barge-in against the built-in stand-in for OpenAI, with
//! no account, no key and no network. strace records every socket address the process (and its threads) connects,
//! binds or sends to; each must be loopback.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use callbridge::calls::Speaker;
use callbridge::calls::model::CallStatus;
use callbridge::calls::store::CallStore;

/// The addresses of the socket calls in an strace log (`sin_addr=inet_addr("…")`, `inet_pton(AF_INET6, "…"`).
fn socket_addresses(log: &str) -> Vec<String> {
    let mut addresses = Vec::new();
    for line in log.lines() {
        for marker in ["inet_addr(\"", "inet_pton(AF_INET6, \""] {
            let mut rest = line;
            while let Some(start) = rest.find(marker) {
                rest = &rest[start + marker.len()..];
                if let Some(end) = rest.find('"') {
                    addresses.push(rest[..end].to_owned());
                    rest = &rest[end..];
                }
            }
        }
    }
    addresses
}

fn is_loopback(address: &str) -> bool {
    address
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[test]
fn socket_addresses_are_read_from_strace_lines() {
    let log = r#"12 connect(9, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("1.2.3.4")}, 16) = 0
13 bind(10, {sa_family=AF_INET6, sin6_port=htons(0), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0"#;
    let addresses = socket_addresses(log);
    assert_eq!(addresses, ["1.2.3.4", "::1"]);
    assert!(!is_loopback(&addresses[0]) && is_loopback(&addresses[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_completes_a_call_with_a_barge_in_stores_its_record_and_uses_only_loopback() {
    // Arrange
    let dir = crate::helpers::temp_data_dir();
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let trace = dir.join("strace.log");
    let data_dir = dir.join("records");
    let strace = std::process::Command::new("strace").arg("-V").output();
    assert!(
        strace.is_ok_and(|o| o.status.success()),
        "strace is needed to watch the demo's sockets (apt-get install strace)"
    );

    // Act
    let output = tokio::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=connect,bind,sendto,sendmsg", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_callbridge"))
        .arg("demo")
        .arg("--data-dir")
        .arg(&data_dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        // A key in the environment must not matter: the demo reads no settings.
        .env("OPENAI_API_KEY", "sk-must-not-be-used")
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), output)
        .await
        .expect("the demo finishes")
        .expect("the demo runs");

    // Assert: the call went as scripted, and says so.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("The call completed"), "{stdout}");
    assert!(stdout.contains("clear: "), "{stdout}");
    assert!(
        stdout.contains("stand-in (not OpenAI)  conversation.item.truncate"),
        "{stdout}"
    );
    assert!(stdout.contains("End reason:   goodbye"), "{stdout}");
    assert!(
        stderr.contains("local stand-in (it is NOT OpenAI)"),
        "{stderr}"
    );

    // Assert: the record is in the database, with the answer cut where the caller talked over it.
    let store =
        CallStore::open(&data_dir.join("callbridge.db")).expect("the records database exists");
    let calls = store.list(10).expect("the records are readable");
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = store
        .get(&calls[0].id)
        .expect("readable")
        .expect("the call is stored");
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.end_reason.as_deref(), Some("goodbye"));
    let assistant: Vec<_> = call
        .transcript
        .iter()
        .filter(|turn| turn.speaker == Speaker::Assistant)
        .collect();
    assert_eq!(assistant.len(), 3, "{:?}", call.transcript);
    assert!(!assistant[0].interrupted, "the greeting played in full");
    assert!(
        assistant[1].interrupted,
        "the answer was cut by the barge-in"
    );
    assert!(!assistant[2].interrupted, "the goodbye played in full");
    assert!(stdout.contains(&assistant[1].text), "{stdout}");

    // Assert: every socket address used was loopback, and there were some.
    let log = std::fs::read_to_string(&trace).expect("strace wrote its log");
    let addresses = socket_addresses(&log);
    assert!(
        addresses.iter().filter(|a| is_loopback(a)).count() >= 3,
        "{log}"
    );
    let foreign: Vec<&String> = addresses.iter().filter(|a| !is_loopback(a)).collect();
    assert!(foreign.is_empty(), "non-loopback addresses: {foreign:?}");
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}
