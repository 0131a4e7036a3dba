//! `callbridge check-config`: the effective settings as `key = value` lines, secrets masked.

use std::fmt::Write as _;

use secrecy::ExposeSecret;

use super::Settings;

impl Settings {
    /// The effective settings as `key = value` lines with secrets masked, for `callbridge check-config`.
    pub fn describe(&self) -> String {
        let rt = &self.realtime;
        let mut out = String::new();
        let mut line = |key: &str, value: String| {
            let _ = writeln!(out, "{key:<26} = {value}");
        };
        line("host", self.host.clone());
        line("port", self.port.to_string());
        line(
            "public_url",
            self.public_url
                .as_ref()
                .map_or("(not set)".to_owned(), |u| u.to_string()),
        );
        line(
            "trust_forwarded_headers",
            self.trust_forwarded_headers.to_string(),
        );
        line("drain_timeout_s", self.drain_timeout.as_secs().to_string());
        line("data_dir", self.data_dir.display().to_string());
        line("api_key", mask(self.api_key.expose_secret()));
        line("ring_timeout_s", self.ring_timeout_s.to_string());
        let sec = &self.security;
        line(
            "allowed_callers",
            list_or(&sec.allowed_callers, "(everyone)"),
        );
        line(
            "outbound_allowed_prefixes",
            list_or(
                &sec.outbound_allowed_prefixes,
                "(none: outbound calls are refused)",
            ),
        );
        line(
            "outbound_allowed_numbers",
            list_or(&sec.outbound_allowed_numbers, "(none)"),
        );
        line(
            "daily_outbound_budget",
            sec.daily_outbound_budget.to_string(),
        );
        line("max_concurrent_calls", sec.max_concurrent_calls.to_string());
        line(
            "webhook_rate_limit_per_min",
            sec.webhook_rate_limit_per_min.to_string(),
        );
        line(
            "api_rate_limit_per_min",
            sec.api_rate_limit_per_min.to_string(),
        );
        line(
            "stream_idle_timeout_s",
            sec.stream_idle_timeout.as_secs().to_string(),
        );
        line("max_body_bytes", sec.max_body_bytes.to_string());
        line("body_timeout_s", sec.body_timeout.as_secs().to_string());
        line(
            "log_format",
            format!("{:?}", self.log_format).to_lowercase(),
        );
        line("openai_api_key", mask(self.openai_api_key.expose_secret()));
        line("openai_model", rt.model.clone());
        line("openai_realtime_url", rt.url.to_string());
        line(
            "twilio_account_sid",
            self.twilio
                .account_sid
                .clone()
                .unwrap_or_else(|| "(not set)".to_owned()),
        );
        line(
            "twilio_auth_token",
            mask(self.twilio.auth_token.expose_secret()),
        );
        line(
            "twilio_phone_number",
            self.twilio
                .phone_number
                .clone()
                .unwrap_or_else(|| "(not set)".to_owned()),
        );
        line("twilio_api_base_url", self.twilio.api_base_url.to_string());
        line("system_message", format!("{:?}", rt.system_message));
        line("voice", rt.voice.clone());
        line("speed", rt.speed.to_string());
        line(
            "assistant_speaks_first",
            rt.assistant_speaks_first.to_string(),
        );
        line("greeting", format!("{:?}", rt.greeting));
        line("turn_detection", format!("{:?}", rt.turn_detection));
        line(
            "noise_reduction",
            rt.noise_reduction
                .map_or("none".to_owned(), |n| format!("{n:?}")),
        );
        line(
            "transcription_model",
            rt.transcription_model
                .clone()
                .unwrap_or_else(|| "none".to_owned()),
        );
        line("goodbye_phrases", rt.goodbye_phrases.join(", "));
        line(
            "max_call_duration_s",
            self.calls.max_call_duration.as_secs().to_string(),
        );
        line(
            "stream_token_ttl_s",
            self.calls.stream_token_ttl.as_secs().to_string(),
        );
        line(
            "farewell_grace_ms",
            self.calls.farewell_grace.as_millis().to_string(),
        );
        line("max_frame_bytes", self.calls.max_frame_bytes.to_string());
        line(
            "peer_stall_timeout_ms",
            self.calls.peer_stall_timeout.as_millis().to_string(),
        );
        let targets: Vec<String> = self
            .calls
            .transfer_targets
            .iter()
            .map(crate::twilio::dial::TransferTarget::label)
            .collect();
        line(
            "transfer_targets",
            list_or(&targets, "(none: no transfer tool)"),
        );
        out
    }
}

/// The items joined with `, `, or `empty` when there are none.
fn list_or(list: &[String], empty: &str) -> String {
    if list.is_empty() {
        empty.to_owned()
    } else {
        list.join(", ")
    }
}

/// Masks a secret for display: `(not set)`, or its length and last four characters.
fn mask(secret: &str) -> String {
    if secret.is_empty() {
        return "(not set)".to_owned();
    }
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 8 {
        return format!("******** ({} chars)", chars.len());
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("********{tail} ({} chars)", chars.len())
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{env, minimal};
    use crate::config::{Requirement, Settings};

    #[test]
    fn describe_masks_secrets() {
        let mut pairs = minimal();
        pairs.retain(|(k, _)| *k != "OPENAI_API_KEY");
        pairs.push(("OPENAI_API_KEY", "sk-verysecretvalue1234"));
        let settings = Settings::load(&env(&pairs), None, Requirement::Serve).expect("valid");
        let text = settings.describe();
        assert!(!text.contains("sk-verysecretvalue1234"));
        assert!(!text.contains("= token"));
        assert!(text.contains("********1234"));
    }

    #[test]
    fn a_short_secret_shows_only_its_length_and_an_empty_one_shows_not_set() {
        assert_eq!(super::mask(""), "(not set)");
        assert_eq!(super::mask("12345678"), "******** (8 chars)");
        assert_eq!(super::mask("123456789"), "********6789 (9 chars)");
    }
}
