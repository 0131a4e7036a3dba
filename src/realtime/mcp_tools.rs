//! Remote MCP servers for the voice: the Realtime API's own `type: "mcp"` tool entries, which make the API (not
//! callbridge) call tools on a remote MCP server while the model talks, and the catalogue of the entries the
//! operator allows ([`VoiceMcpServers`], from `CALLBRIDGE_VOICE_MCP_SERVERS`).
//!
//! An entry goes into `session.tools` as `{"type":"mcp","server_label":..,"server_url":..,"allowed_tools":[..],
//! "headers":{..},"require_approval":..}` (OpenAI, "Realtime with tools":
//! <https://developers.openai.com/api/docs/guides/realtime-mcp>; the `openai` SDK's
//! `openai.types.realtime.realtime_tools_config_union_param.Mcp`). The headers (credentials for the MCP server)
//! stay on the server: they go to OpenAI in the `session.update` and nowhere else: not in a call record, not in a
//! log line, not in `check-config` (names only, values masked), not in [`fmt::Debug`].
//!
//! A call picks entries by label (`place_call`'s `mcp_servers`); a label or URL that is not in the catalogue is
//! refused when the call is placed, so the URLs the voice can reach come from the operator's setting only.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The most entries the setting may hold.
pub const MAX_VOICE_MCP_SERVERS: usize = 16;

/// One allowed remote MCP server, as configured and as sent in `session.tools`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceMcpServer {
    /// The name calls use to pick it and the model sees in tool calls (`server_label`): letters, digits, `_`, `-`.
    #[serde(rename(serialize = "server_label"), alias = "server_label")]
    pub label: String,
    /// The MCP server's URL (`server_url`): `https://`, or `http://` on a loopback host for development.
    #[serde(rename(serialize = "server_url"), alias = "server_url")]
    pub url: String,
    /// The tools the model may call on it (`allowed_tools`); absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_tools: Option<Vec<String>>,
    /// HTTP headers OpenAI sends to the MCP server (credentials: `Authorization: Bearer ...`). Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Which tools need an approval (`require_approval`): `"never"` (the default), `"always"`, or
    /// `{"always":{"tool_names":[..]},"never":{"tool_names":[..]}}`. Nobody can approve during a phone call:
    /// callbridge answers no approval request, so a tool that needs one is never run.
    #[serde(default = "never")]
    pub require_approval: Value,
    /// Attached to every call that names no MCP servers of its own (inbound calls included). Not sent to OpenAI.
    #[serde(default, skip_serializing)]
    pub default: bool,
}

fn never() -> Value {
    Value::from("never")
}

impl fmt::Debug for VoiceMcpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VoiceMcpServer")
            .field("label", &self.label)
            .field("url", &self.url)
            .field("allowed_tools", &self.allowed_tools)
            .field("headers", &self.header_names_masked())
            .field("require_approval", &self.require_approval)
            .field("default", &self.default)
            .finish()
    }
}

impl VoiceMcpServer {
    /// The entry as `session.tools` carries it: `{"type":"mcp", server_label, server_url, allowed_tools?,
    /// headers?, require_approval}`.
    pub fn to_tool(&self) -> Value {
        let mut tool =
            serde_json::to_value(self).expect("strings, lists and JSON values serialize");
        if let Value::Object(fields) = &mut tool {
            fields.insert("type".into(), Value::from("mcp"));
        }
        tool
    }

    /// The header names with their values masked (`Authorization: ***`), for `check-config`.
    pub fn header_names_masked(&self) -> Vec<String> {
        self.headers
            .keys()
            .map(|name| format!("{name}: ***"))
            .collect()
    }

    /// Checks one entry: the label's characters, the URL's scheme, the approval policy's shape.
    fn check(&self) -> Result<(), String> {
        let label_ok = !self.label.is_empty()
            && self.label.len() <= 64
            && self
                .label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !label_ok {
            return Err(format!(
                "label {:?} must be 1 to 64 letters, digits, _ or -",
                self.label
            ));
        }
        let url = url::Url::parse(&self.url)
            .map_err(|e| format!("{}: url {:?} is not a URL: {e}", self.label, self.url))?;
        let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Err(format!(
                "{}: url {:?} must be https:// (http:// only for a loopback host)",
                self.label, self.url
            ));
        }
        let policy_ok = match &self.require_approval {
            Value::String(s) => s == "never" || s == "always",
            Value::Object(filter) => filter.keys().all(|k| k == "always" || k == "never"),
            _ => false,
        };
        if !policy_ok {
            return Err(format!(
                "{}: require_approval must be \"never\", \"always\" or {{\"always\":{{\"tool_names\":[..]}},\"never\":{{..}}}}",
                self.label
            ));
        }
        Ok(())
    }
}

/// The allowed remote MCP servers (`CALLBRIDGE_VOICE_MCP_SERVERS`), in the order configured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VoiceMcpServers {
    /// The entries; labels are unique.
    servers: Vec<VoiceMcpServer>,
}

impl VoiceMcpServers {
    /// Parses the setting: a JSON array of entries (`[{"label":"calendar","url":"https://...","allowed_tools":
    /// ["find_slot"],"headers":{"Authorization":"Bearer ..."},"require_approval":"never","default":true}]`).
    /// `server_label`/`server_url` are accepted for `label`/`url`.
    ///
    /// # Errors
    ///
    /// A line naming the first problem: not JSON, an unknown key, a bad label, URL or approval policy, a label
    /// given twice, more than [`MAX_VOICE_MCP_SERVERS`] entries. A header value is never part of the message.
    pub fn parse(entries: Vec<Value>) -> Result<Self, String> {
        if entries.len() > MAX_VOICE_MCP_SERVERS {
            return Err(format!(
                "{} entries; at most {MAX_VOICE_MCP_SERVERS}",
                entries.len()
            ));
        }
        let mut servers: Vec<VoiceMcpServer> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let server: VoiceMcpServer = serde_json::from_value(entry)
                .map_err(|e| format!("entry {}: {}", index + 1, redact_serde(&e)))?;
            server.check()?;
            if servers.iter().any(|s| s.label == server.label) {
                return Err(format!("label {:?} is given twice", server.label));
            }
            servers.push(server);
        }
        Ok(VoiceMcpServers { servers })
    }

    /// [`VoiceMcpServers::parse`] of a JSON text (the environment's form).
    ///
    /// # Errors
    ///
    /// As [`VoiceMcpServers::parse`], and when the text is not a JSON array.
    pub fn parse_json(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(VoiceMcpServers::default());
        }
        let entries: Vec<Value> = serde_json::from_str(text)
            .map_err(|_| "must be a JSON array of {label, url, ...} objects".to_owned())?;
        Self::parse(entries)
    }

    /// Every entry, in the order configured.
    pub fn all(&self) -> &[VoiceMcpServer] {
        &self.servers
    }

    /// The labels of the entries marked `default`.
    pub fn default_labels(&self) -> Vec<String> {
        self.servers
            .iter()
            .filter(|s| s.default)
            .map(|s| s.label.clone())
            .collect()
    }

    /// Resolves what a call names (labels, or the URLs of configured entries) to labels, in the order given,
    /// without repeats.
    ///
    /// # Errors
    ///
    /// The names that match no entry, with the configured labels listed.
    pub fn resolve(&self, names: &[String]) -> Result<Vec<String>, String> {
        let mut labels: Vec<String> = Vec::new();
        let mut unknown = Vec::new();
        for name in names {
            let name = name.trim();
            match self
                .servers
                .iter()
                .find(|s| s.label == name || s.url == name)
            {
                Some(server) if !labels.contains(&server.label) => {
                    labels.push(server.label.clone())
                }
                Some(_) => {}
                None => unknown.push(format!("{name:?}")),
            }
        }
        if unknown.is_empty() {
            return Ok(labels);
        }
        let allowed: Vec<&str> = self.servers.iter().map(|s| s.label.as_str()).collect();
        Err(format!(
            "mcp_servers: {} not allowed on this server (CALLBRIDGE_VOICE_MCP_SERVERS allows: {})",
            unknown.join(", "),
            if allowed.is_empty() {
                "none".to_owned()
            } else {
                allowed.join(", ")
            }
        ))
    }

    /// The `session.tools` entries for a call: the entries it named by label, or the `default` ones when it named
    /// none (`None`). Labels that are no longer configured are skipped.
    pub fn tools_for(&self, labels: Option<&[String]>) -> Vec<Value> {
        self.servers
            .iter()
            .filter(|s| labels.map_or(s.default, |labels| labels.contains(&s.label)))
            .map(VoiceMcpServer::to_tool)
            .collect()
    }
}

/// A serde error's message, which may quote a value (a header's): only its category and position survive.
fn redact_serde(error: &serde_json::Error) -> String {
    let message = error.to_string();
    if message.starts_with("unknown field") || message.starts_with("missing field") {
        // serde names the key and the expected ones, never a value.
        message
    } else {
        "a value has the wrong type (label, url: strings; allowed_tools: a list of strings; headers: an object \
         of strings; default: true or false)"
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn calendar() -> Value {
        json!({"label": "calendar", "url": "https://mcp.example.com/calendar",
               "allowed_tools": ["find_slot"], "headers": {"Authorization": "Bearer s3cret"},
               "default": true})
    }

    fn crm() -> Value {
        json!({"server_label": "crm", "server_url": "https://crm.example.com/mcp",
               "require_approval": {"always": {"tool_names": ["delete_contact"]}}})
    }

    #[test]
    fn an_entry_becomes_the_realtime_mcp_tool_with_its_headers_and_without_default() {
        let servers = VoiceMcpServers::parse(vec![calendar()]).expect("valid");

        let tools = servers.tools_for(None);

        assert_eq!(
            tools,
            [json!({"type": "mcp", "server_label": "calendar",
                    "server_url": "https://mcp.example.com/calendar", "allowed_tools": ["find_slot"],
                    "headers": {"Authorization": "Bearer s3cret"}, "require_approval": "never"})]
        );
    }

    #[test]
    fn a_call_that_names_no_servers_gets_the_defaults_and_one_that_names_some_gets_those() {
        let servers = VoiceMcpServers::parse(vec![calendar(), crm()]).expect("valid");

        let default_labels: Vec<Value> = servers
            .tools_for(None)
            .iter()
            .map(|t| t["server_label"].clone())
            .collect();
        let named = servers.tools_for(Some(&["crm".to_owned()]));
        let none = servers.tools_for(Some(&[]));

        assert_eq!(default_labels, [json!("calendar")]);
        assert_eq!(named.len(), 1);
        assert_eq!(named[0]["server_label"], "crm");
        assert_eq!(
            named[0]["require_approval"]["always"]["tool_names"][0],
            "delete_contact"
        );
        assert!(none.is_empty());
    }

    #[test]
    fn names_resolve_by_label_or_by_a_configured_url() {
        let servers = VoiceMcpServers::parse(vec![calendar(), crm()]).expect("valid");

        let labels = servers.resolve(&[
            "https://crm.example.com/mcp".to_owned(),
            "calendar".to_owned(),
            "crm".to_owned(),
        ]);

        assert_eq!(labels, Ok(vec!["crm".to_owned(), "calendar".to_owned()]));
    }

    #[test]
    fn a_url_not_in_the_setting_is_refused_with_the_allowed_labels() {
        let servers = VoiceMcpServers::parse(vec![calendar()]).expect("valid");

        let error = servers
            .resolve(&["https://evil.example.net/mcp".to_owned()])
            .expect_err("not configured");

        assert!(
            error.contains("\"https://evil.example.net/mcp\""),
            "{error}"
        );
        assert!(error.contains("allows: calendar"), "{error}");
    }

    #[test]
    fn debug_and_errors_never_show_a_header_value() {
        let servers = VoiceMcpServers::parse(vec![calendar()]).expect("valid");
        let mut bad = calendar();
        bad["headers"]["Authorization"] = json!(42);
        bad["headers"]["X-Key"] = json!("s3cret");

        let debug = format!("{servers:?}");
        let error = VoiceMcpServers::parse(vec![bad]).expect_err("a number header");

        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("Authorization: ***"), "{debug}");
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        let cases = [
            (
                json!({"label": "cal endar", "url": "https://x.example"}),
                "label",
            ),
            (
                json!({"label": "cal", "url": "http://x.example/mcp"}),
                "https://",
            ),
            (
                json!({"label": "cal", "url": "https://x.example", "require_approval": "sometimes"}),
                "require_approval",
            ),
            (
                json!({"label": "cal", "url": "https://x.example", "token": "x"}),
                "unknown field",
            ),
            (json!({"url": "https://x.example"}), "missing field"),
        ];
        for (entry, expected) in cases {
            let error = VoiceMcpServers::parse(vec![entry.clone()]).expect_err("refused");
            assert!(error.contains(expected), "{entry}: {error}");
        }
        let twice = VoiceMcpServers::parse(vec![calendar(), calendar()]).expect_err("twice");
        assert!(twice.contains("given twice"), "{twice}");
    }

    #[test]
    fn a_loopback_http_url_is_allowed_for_development() {
        let entry = json!({"label": "dev", "url": "http://127.0.0.1:8931/mcp"});

        assert!(VoiceMcpServers::parse(vec![entry]).is_ok());
    }

    #[test]
    fn the_environment_form_is_a_json_array_and_empty_means_none() {
        assert_eq!(
            VoiceMcpServers::parse_json("  "),
            Ok(VoiceMcpServers::default())
        );
        assert!(VoiceMcpServers::parse_json("calendar=https://x").is_err());
        let parsed = VoiceMcpServers::parse_json(&json!([calendar()]).to_string()).expect("valid");
        assert_eq!(parsed.default_labels(), ["calendar"]);
    }
}
