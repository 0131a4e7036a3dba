//! Tests of the session lifetime and truncation settings: their defaults, their parsing, and that the truncation
//! reaches the call's `session.update`.

use std::collections::HashMap;
use std::time::Duration;

use super::{Requirement, SessionLifetime, Settings};
use crate::realtime::truncation::Truncation;

fn load(pairs: &[(&str, &str)]) -> Result<Settings, super::ConfigError> {
    let env: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Settings::load(&env, None, Requirement::Nothing)
}

#[test]
fn sessions_roll_over_after_55_minutes_and_are_reopened_three_times_by_default() {
    let settings = load(&[]).expect("valid");

    assert_eq!(
        settings.realtime.sessions,
        SessionLifetime {
            session_limit: Duration::from_secs(55 * 60),
            reconnect_attempts: 3,
        }
    );
    assert_eq!(settings.realtime.truncation, Truncation::default());
}

#[test]
fn the_truncation_settings_reach_the_session_update() {
    let settings = load(&[
        ("CALLBRIDGE_TRUNCATION", "retention_ratio"),
        ("CALLBRIDGE_TRUNCATION_RETENTION_RATIO", "0.5"),
        ("CALLBRIDGE_TRUNCATION_MAX_TOKENS", "8000"),
    ])
    .expect("valid");

    let update: serde_json::Value =
        serde_json::from_str(&settings.session_config("Be brief.".into()).to_json()).expect("JSON");

    assert_eq!(
        update["session"]["truncation"],
        serde_json::json!({"type": "retention_ratio", "retention_ratio": 0.5,
                           "token_limits": {"post_instructions": 8000}})
    );
}

#[test]
fn auto_truncation_and_an_empty_token_limit_are_accepted() {
    let auto = load(&[("CALLBRIDGE_TRUNCATION", "auto")]).expect("valid");
    let model_limit = load(&[("CALLBRIDGE_TRUNCATION_MAX_TOKENS", "")]).expect("valid");

    assert_eq!(auto.realtime.truncation, Truncation::Auto);
    assert_eq!(
        model_limit.realtime.truncation,
        Truncation::RetentionRatio {
            retention_ratio: 0.8,
            post_instructions_tokens: None,
        }
    );
}

#[test]
fn a_bad_truncation_or_session_limit_is_reported_by_name() {
    let err = load(&[
        ("CALLBRIDGE_TRUNCATION", "sometimes"),
        ("CALLBRIDGE_REALTIME_SESSION_LIMIT_S", "0"),
    ])
    .expect_err("invalid")
    .to_string();

    assert!(err.contains("CALLBRIDGE_TRUNCATION is invalid"), "{err}");
    assert!(err.contains("CALLBRIDGE_REALTIME_SESSION_LIMIT_S"), "{err}");
}
