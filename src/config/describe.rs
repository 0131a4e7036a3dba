//! `callbridge check-config`: the effective settings as `key = value  (source)` lines, secrets masked, values
//! spelled as they are written in `.env` and `callbridge.toml` (`server_vad`, `near_field`).

use std::fmt::Write as _;

use secrecy::ExposeSecret;

use super::Settings;
use crate::realtime::session::TurnDetection;

impl Settings {
    /// The effective settings as `key = value  (source)` lines with secrets masked, for `callbridge check-config`.
    /// The source is `default`, `.env: NAME`, `environment: NAME` or the settings file's path.
    pub fn describe(&self) -> String {
        let rt = &self.realtime;
        let mut out = String::new();
        let sources = &self.sources;
        let mut line = |key: &str, value: String| {
            let _ = writeln!(out, "{key:<26} = {value}  ({})", sources.describe(key));
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
            "stream_public_url",
            self.stream_public_url
                .as_ref()
                .map_or("(not set: public_url)".to_owned(), |u| u.to_string()),
        );
        line(
            "trust_forwarded_headers",
            self.trust_forwarded_headers.to_string(),
        );
        line("drain_timeout_s", self.drain_timeout.as_secs().to_string());
        line("data_dir", self.data_dir.display().to_string());
        line(
            "database_url",
            self.database_url.as_ref().map_or(
                "(not set: SQLite in data_dir)".to_owned(),
                super::database::redacted,
            ),
        );
        line("api_key", mask(self.api_key.expose_secret()));
        line("ring_timeout_s", self.ring_timeout_s.to_string());
        let amd = &self.amd;
        line("answering_machine", amd.policy.to_string());
        line("amd_timeout_s", amd.tuning.timeout_s.to_string());
        line("amd_verdict_wait_s", amd.verdict_wait.as_secs().to_string());
        let tuning =
            |value: Option<u32>| value.map_or("(Twilio's default)".to_owned(), |v| v.to_string());
        line(
            "amd_speech_threshold_ms",
            tuning(amd.tuning.speech_threshold_ms),
        );
        line(
            "amd_speech_end_threshold_ms",
            tuning(amd.tuning.speech_end_threshold_ms),
        );
        line(
            "amd_silence_timeout_ms",
            tuning(amd.tuning.silence_timeout_ms),
        );
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
        line("engine", self.engine.to_string());
        line("live_model", self.live.model.clone());
        line("live_voice", self.live.voice.clone());
        line("live_backend_model", self.live.backend_model.clone());
        line("live_url", self.live.url.to_string());
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
            "twilio_signing_keys",
            if self.twilio.signing_keys.is_empty() {
                "(not set)".to_owned()
            } else {
                self.twilio
                    .signing_keys
                    .iter()
                    .map(|(id, secret)| format!("{id}={}", mask(secret.expose_secret())))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
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
        match &rt.turn_detection {
            TurnDetection::ServerVad {
                threshold,
                prefix_padding_ms,
                silence_duration_ms,
                idle_timeout_ms,
            } => {
                line("turn_detection", "server_vad".to_owned());
                line("vad_threshold", threshold.to_string());
                line("vad_prefix_padding_ms", prefix_padding_ms.to_string());
                line("vad_silence_duration_ms", silence_duration_ms.to_string());
                line(
                    "vad_idle_timeout_ms",
                    idle_timeout_ms.map_or("(none)".to_owned(), |ms| ms.to_string()),
                );
            }
            TurnDetection::SemanticVad { eagerness } => {
                line("turn_detection", "semantic_vad".to_owned());
                line("vad_eagerness", eagerness.to_string());
            }
        }
        line(
            "noise_reduction",
            rt.noise_reduction
                .map_or("none".to_owned(), |n| n.to_string()),
        );
        line(
            "transcription_model",
            rt.transcription_model
                .clone()
                .unwrap_or_else(|| "none".to_owned()),
        );
        line("goodbye_phrases", rt.goodbye_phrases.join(", "));
        line(
            "realtime_session_limit_s",
            rt.sessions.session_limit.as_secs().to_string(),
        );
        line(
            "realtime_reconnect_attempts",
            rt.sessions.reconnect_attempts.to_string(),
        );
        line("truncation", rt.truncation.kind().to_owned());
        let (ratio, max_tokens) = match rt.truncation {
            crate::realtime::truncation::Truncation::RetentionRatio {
                retention_ratio,
                post_instructions_tokens,
            } => (
                retention_ratio.to_string(),
                post_instructions_tokens
                    .map_or("(the model's limit)".to_owned(), |t| t.to_string()),
            ),
            _ => ("(unused)".to_owned(), "(unused)".to_owned()),
        };
        line("truncation_retention_ratio", ratio);
        line("truncation_max_tokens", max_tokens);
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
        let cost = &self.cost;
        let dollars = |v: Option<f64>| v.map_or("(none)".to_owned(), |v| format!("{v}"));
        line("max_call_cost_usd", dollars(cost.max_call_cost_usd));
        line("daily_cost_budget_usd", dollars(cost.daily_cost_budget_usd));
        line(
            "model_prices",
            format!("(built-in, as of {})", crate::cost::PRICES_AS_OF),
        );
        line(
            "twilio_inbound_price_per_min_usd",
            cost.prices.twilio_inbound_per_min_usd.to_string(),
        );
        line(
            "twilio_outbound_price_per_min_usd",
            cost.prices.twilio_outbound_per_min_usd.to_string(),
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
        let on_off = |on: bool| if on { "on" } else { "off" }.to_owned();
        let rec = &self.recording;
        line("recording", on_off(rec.outbound));
        line("recording_inbound", on_off(rec.inbound));
        line(
            "recording_consent_message",
            rec.consent_message
                .as_ref()
                .map_or("none".to_owned(), |m| format!("{m:?}")),
        );
        let retention_s = rec.retention.map(|r| r.as_secs());
        line(
            "recording_retention_days",
            retention_s.map_or("(not set: recordings are kept)".to_owned(), |s| {
                format!("{:.2}", s as f64 / 86_400.0)
            }),
        );
        line(
            "recording_retention_s",
            retention_s.map_or("(not set)".to_owned(), |s| s.to_string()),
        );
        let hooks = &self.webhooks;
        line(
            "webhook_url",
            hooks
                .default_url
                .as_ref()
                .map_or("(none: only calls that name one)".to_owned(), |u| {
                    u.to_string()
                }),
        );
        line(
            "webhook_secret",
            if hooks.secret.is_some() {
                "whsec_******** (set)"
            } else {
                "(not set)"
            }
            .to_owned(),
        );
        line(
            "webhook_retry_base_ms",
            hooks.schedule.base.as_millis().to_string(),
        );
        line(
            "webhook_max_attempts",
            hooks.schedule.max_attempts.to_string(),
        );
        let mcp: Vec<String> = self
            .calls
            .voice_mcp_servers
            .all()
            .iter()
            .map(|server| {
                let mut text = format!("{} = {}", server.label, server.url);
                if let Some(tools) = &server.allowed_tools {
                    text.push_str(&format!(" tools [{}]", tools.join(" ")));
                }
                let headers = server.header_names_masked();
                if !headers.is_empty() {
                    text.push_str(&format!(" headers [{}]", headers.join("; ")));
                }
                text.push_str(&format!(" approval {}", server.require_approval));
                if server.default {
                    text.push_str(" (default)");
                }
                text
            })
            .collect();
        line(
            "voice_mcp_servers",
            list_or(&mcp, "(none: the voice has no remote MCP tools)"),
        );
        let fleet = &self.fleet;
        line("redis_url", fleet.describe_redis_url());
        line("redis_key_prefix", fleet.key_prefix.clone());
        line("instance_id", fleet.instance_id.clone());
        line("instance_lease_s", fleet.lease_s.to_string());
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
    fn describe_shows_signing_key_ids_with_their_secrets_masked() {
        let mut pairs = minimal();
        pairs.push((
            "CALLBRIDGE_TWILIO_SIGNING_KEYS",
            "webhooks_sharedkey_a=sharedsecretvalueAAAA, key2=sharedsecretvalue=BBBB",
        ));
        let settings = Settings::load(&env(&pairs), None, Requirement::Serve).expect("valid");
        let text = settings.describe();
        let line = text
            .lines()
            .find(|l| l.starts_with("twilio_signing_keys"))
            .expect("a twilio_signing_keys line");
        assert!(!text.contains("sharedsecretvalue"), "{line}");
        assert_eq!(
            line.split_once(" = ").map(|(_, v)| v),
            Some(
                "webhooks_sharedkey_a=********AAAA (21 chars), key2=********BBBB (22 chars)  (environment: CALLBRIDGE_TWILIO_SIGNING_KEYS)"
            )
        );
    }

    #[test]
    fn describe_shows_the_voice_mcp_servers_with_their_header_values_masked() {
        let mut pairs = minimal();
        pairs.push((
            "CALLBRIDGE_VOICE_MCP_SERVERS",
            r#"[{"label":"calendar","url":"https://mcp.example.com/cal","allowed_tools":["find_slot"],
                 "headers":{"Authorization":"Bearer mcpsecretvalue"},"default":true}]"#,
        ));
        let settings = Settings::load(&env(&pairs), None, Requirement::Serve).expect("valid");
        let text = settings.describe();
        let line = text
            .lines()
            .find(|l| l.starts_with("voice_mcp_servers"))
            .expect("a voice_mcp_servers line");
        assert!(!text.contains("mcpsecretvalue"), "{line}");
        assert!(
            line.contains(
                "calendar = https://mcp.example.com/cal tools [find_slot] headers [Authorization: ***] \
                 approval \"never\" (default)"
            ),
            "{line}"
        );
    }

    #[test]
    fn an_invalid_voice_mcp_servers_setting_is_refused_naming_it() {
        let mut pairs = minimal();
        pairs.push((
            "CALLBRIDGE_VOICE_MCP_SERVERS",
            r#"[{"label":"x","url":"ftp://x"}]"#,
        ));
        let error = Settings::load(&env(&pairs), None, Requirement::Serve).expect_err("ftp URL");
        assert!(
            error
                .to_string()
                .contains("CALLBRIDGE_VOICE_MCP_SERVERS is invalid"),
            "{error}"
        );
    }

    #[test]
    fn without_signing_keys_describe_says_not_set() {
        let settings = Settings::load(&env(&minimal()), None, Requirement::Serve).expect("valid");
        assert!(
            settings
                .describe()
                .lines()
                .any(|l| l.starts_with("twilio_signing_keys")
                    && l.ends_with("= (not set)  (default)"))
        );
    }

    #[test]
    fn a_short_secret_shows_only_its_length_and_an_empty_one_shows_not_set() {
        assert_eq!(super::mask(""), "(not set)");
        assert_eq!(super::mask("12345678"), "******** (8 chars)");
        assert_eq!(super::mask("123456789"), "********6789 (9 chars)");
    }
}
