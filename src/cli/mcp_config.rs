//! `callbridge mcp config`: the exact text that connects an MCP client to this callbridge, with the API key taken from
//! the settings (`.env`, `callbridge.toml`, the environment), so nothing has to be exported or pasted by hand.
//!
//! - `--claude-code` (the default): a `claude mcp add --transport http …` command line for the server's `/mcp`
//!   endpoint, every argument shell-quoted (`shlex`), the key in the `Authorization: Bearer` header.
//! - `--claude-desktop`: a `claude_desktop_config.json` block that starts `callbridge mcp` (this binary's absolute
//!   path) over stdio with `CALLBRIDGE_URL` and `CALLBRIDGE_API_KEY` in its environment.
//!
//! The output holds the API key: it goes to stdout only, and a reminder to keep it private goes to stderr.

use serde_json::json;
use url::Url;

/// Which client the configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpClient {
    /// Claude Code's CLI, over HTTP to `/mcp`.
    ClaudeCode,
    /// Claude Desktop's `claude_desktop_config.json`, over stdio through `callbridge mcp`.
    ClaudeDesktop,
}

/// The name the server is registered under in the client.
pub const SERVER_NAME: &str = "callbridge";

/// Why no configuration can be printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpConfigError {
    /// `CALLBRIDGE_API_KEY` is empty: the configuration would be refused with 401.
    #[error(
        "CALLBRIDGE_API_KEY is not set: set it in .env (any long random string, e.g. `openssl rand -hex 32`), restart the \
         server, and run this again"
    )]
    NoApiKey,
    /// The key or a path holds a character no shell can quote (a NUL byte).
    #[error("{0} cannot be written as a shell argument")]
    Unquotable(&'static str),
}

/// The configuration text for `client`: `server` is the running callbridge (`http://127.0.0.1:5050`), `api_key` its
/// `CALLBRIDGE_API_KEY`, `binary` the absolute path of the `callbridge` executable (for the stdio client).
///
/// # Errors
/// [`McpConfigError::NoApiKey`] for an empty key; [`McpConfigError::Unquotable`] when the key holds a NUL byte.
pub fn render(
    client: McpClient,
    server: &Url,
    api_key: &str,
    binary: &str,
) -> Result<String, McpConfigError> {
    if api_key.is_empty() {
        return Err(McpConfigError::NoApiKey);
    }
    match client {
        McpClient::ClaudeCode => {
            let endpoint = server
                .join("mcp")
                .map_or_else(|_| format!("{server}mcp"), String::from);
            let header = format!("Authorization: Bearer {api_key}");
            let words = [
                "claude",
                "mcp",
                "add",
                "--transport",
                "http",
                SERVER_NAME,
                endpoint.as_str(),
                "--header",
                header.as_str(),
            ];
            shlex::try_join(words).map_err(|_| McpConfigError::Unquotable("CALLBRIDGE_API_KEY"))
        }
        McpClient::ClaudeDesktop => {
            let base = server.as_str().trim_end_matches('/');
            let config = json!({
                "mcpServers": {
                    SERVER_NAME: {
                        "command": binary,
                        "args": ["mcp"],
                        "env": { "CALLBRIDGE_URL": base, "CALLBRIDGE_API_KEY": api_key }
                    }
                }
            });
            Ok(serde_json::to_string_pretty(&config).expect("a JSON value of strings serializes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Url {
        Url::parse("http://127.0.0.1:5050").expect("url")
    }

    #[test]
    fn the_claude_code_command_carries_the_endpoint_and_the_key_as_shell_words() {
        let text = render(
            McpClient::ClaudeCode,
            &server(),
            "k3y with 'quotes' $HOME",
            "/bin/cb",
        )
        .expect("renders");

        let words = shlex::split(&text).expect("a valid shell line");
        assert_eq!(
            words,
            [
                "claude",
                "mcp",
                "add",
                "--transport",
                "http",
                "callbridge",
                "http://127.0.0.1:5050/mcp",
                "--header",
                "Authorization: Bearer k3y with 'quotes' $HOME",
            ]
        );
    }

    #[test]
    fn the_claude_desktop_block_starts_this_binary_with_the_url_and_key() {
        let text = render(
            McpClient::ClaudeDesktop,
            &server(),
            "secret",
            "/opt/callbridge",
        )
        .expect("renders");

        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let entry = &value["mcpServers"]["callbridge"];
        assert_eq!(entry["command"], "/opt/callbridge");
        assert_eq!(entry["args"], json!(["mcp"]));
        assert_eq!(entry["env"]["CALLBRIDGE_URL"], "http://127.0.0.1:5050");
        assert_eq!(entry["env"]["CALLBRIDGE_API_KEY"], "secret");
    }

    #[test]
    fn without_an_api_key_nothing_is_printed_and_the_error_names_the_setting() {
        for client in [McpClient::ClaudeCode, McpClient::ClaudeDesktop] {
            let error = render(client, &server(), "", "/bin/cb").expect_err("refused");
            assert!(error.to_string().contains("CALLBRIDGE_API_KEY is not set"));
        }
    }
}
