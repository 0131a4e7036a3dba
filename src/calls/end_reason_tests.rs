//! Tests of the end reasons' names: the stored, logged and close-frame text of every reason, and README.md's list.

use super::*;

/// Every failure with a fixed name and the name README.md documents for it.
fn named_failures() -> Vec<(CallFailure, &'static str)> {
    vec![
        (CallFailure::StreamIdle, "stream_idle"),
        (CallFailure::TwilioStalled, "twilio_stalled"),
        (CallFailure::OpenAiStalled, "openai_stalled"),
        (CallFailure::OpenAiClosed, "openai_closed"),
        (
            CallFailure::OpenAiReconnectFailed,
            "openai_reconnect_failed",
        ),
        (CallFailure::FrameTooLarge, "frame_too_large"),
        (CallFailure::TwilioProtocolError, "twilio_protocol_error"),
        (CallFailure::CallSidMismatch, "call_sid_mismatch"),
        (CallFailure::OpenAiUnavailable, "openai_unavailable"),
        (CallFailure::OpenAiError, "openai_error"),
        (CallFailure::StreamExpired, "stream_expired"),
        (CallFailure::StreamNeverOpened, "stream_never_opened"),
        (CallFailure::StreamNotAwaited, "stream_not_awaited"),
        (CallFailure::ServerStopped, "server_stopped"),
    ]
}

/// True when `failure` is in [`named_failures`] (or carries OpenAI's code). The match has no wildcard: a new
/// variant does not compile until it is handled here, and then this test fails until it is in the list above.
fn is_listed(failure: &CallFailure) -> bool {
    match failure {
        CallFailure::OpenAiUnavailable
        | CallFailure::OpenAiClosed
        | CallFailure::OpenAiReconnectFailed
        | CallFailure::OpenAiStalled
        | CallFailure::OpenAiError
        | CallFailure::TwilioStalled
        | CallFailure::StreamIdle
        | CallFailure::FrameTooLarge
        | CallFailure::TwilioProtocolError
        | CallFailure::CallSidMismatch
        | CallFailure::StreamExpired
        | CallFailure::StreamNeverOpened
        | CallFailure::StreamNotAwaited
        | CallFailure::ServerStopped => named_failures().iter().any(|(f, _)| f == failure),
        CallFailure::OpenAiFatal(_) => true,
    }
}

fn serialized(reason: &EndReason) -> String {
    serde_json::to_value(reason)
        .expect("serializes")
        .as_str()
        .expect("a string")
        .to_owned()
}

#[test]
fn end_reasons_serialize_as_their_documented_names() {
    let names: Vec<String> = [
        EndReason::CallerHungUp,
        EndReason::Goodbye,
        EndReason::MaxDuration,
        EndReason::HungUpByApi,
        EndReason::Shutdown,
        EndReason::VoicemailLeft,
        EndReason::MachineHungUp,
        EndReason::StreamHandoverTimeout,
        EndReason::Transferred,
        EndReason::Error(CallFailure::OpenAiClosed),
    ]
    .iter()
    .map(serialized)
    .collect();
    assert_eq!(
        names,
        [
            "caller_hung_up",
            "goodbye",
            "max_duration",
            "hung_up_by_api",
            "shutdown",
            "voicemail_left",
            "machine_hung_up",
            "stream_handover_timeout",
            "transferred",
            "error:openai_closed"
        ]
    );
}

#[test]
fn every_failure_prints_as_its_documented_name_with_the_error_prefix() {
    for (failure, name) in named_failures() {
        assert!(is_listed(&failure));
        assert_eq!(failure.name(), name);
        let reason = EndReason::Error(failure);
        assert_eq!(reason.to_string(), format!("error:{name}"));
        assert_eq!(serialized(&reason), format!("error:{name}"));
    }
}

#[test]
fn a_fatal_openai_error_prints_as_the_code_openai_sent() {
    let reason = EndReason::Error(CallFailure::OpenAiFatal("insufficient_quota".into()));
    assert!(is_listed(&CallFailure::OpenAiFatal(String::new())));
    assert_eq!(reason.to_string(), "error:insufficient_quota");
    assert_eq!(serialized(&reason), "error:insufficient_quota");
}

#[test]
fn readme_lists_every_named_failure_in_its_end_reason_table() {
    let readme = include_str!("../../README.md");
    let table: Vec<&str> = readme
        .lines()
        .skip_while(|line| !line.starts_with("| end reason |"))
        .take_while(|line| line.starts_with('|'))
        .collect();
    assert!(!table.is_empty(), "README.md has the end reason table");
    for (_, name) in named_failures() {
        let cell = format!("| `error:{name}` |");
        assert!(
            table.iter().any(|line| line.starts_with(&cell)),
            "README.md's end reason table lists `error:{name}`"
        );
    }
    assert_eq!(
        table.len(),
        2 + named_failures().len() + 1,
        "README.md's table lists exactly the named failures and OpenAI's codes: {table:#?}"
    );
}
