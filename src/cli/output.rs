//! What the subcommands print with, in one place so they agree: the server a client subcommand talks to
//! ([`server_url`], default [`default_server_url`]), the one duration format ([`format_duration`], `m:ss`),
//! [`printable`] for text that came from a peer, and [`emit`] for stdout.

use std::io::Write as _;

use url::Url;

/// The address of a local server in examples and messages (`PORT`'s default is 5050).
pub const EXAMPLE_SERVER_URL: &str = "http://127.0.0.1:5050";

/// `http://127.0.0.1:{port}`: the server on this machine, where `call` and `mcp` go when `CALLBRIDGE_URL` is unset.
pub fn default_server_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// The server's base URL: `url` (`CALLBRIDGE_URL`, or `callbridge mcp --url`) when set and not blank, else
/// [`default_server_url`] for `port`.
///
/// # Errors
/// A message naming `CALLBRIDGE_URL` when `url` is not an `http` or `https` URL with a host.
pub fn server_url(url: Option<&str>, port: u16) -> Result<Url, String> {
    let Some(text) = url.map(str::trim).filter(|t| !t.is_empty()) else {
        let default = default_server_url(port);
        return Url::parse(&default).map_err(|e| format!("PORT {port} gives no URL: {e}"));
    };
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(url),
        Ok(_) | Err(_) => Err(format!(
            "CALLBRIDGE_URL {text:?} is not the http(s) address of a callbridge server, e.g. {EXAMPLE_SERVER_URL}"
        )),
    }
}

/// A call's duration as `m:ss`, or `h:mm:ss` from an hour on; whole seconds, rounded down (a stopwatch's reading).
/// Used by `call`'s summary and by `calls list` and `calls show`.
pub fn format_duration(duration_ms: u64) -> String {
    let total_s = duration_ms / 1000;
    let (h, m, s) = (total_s / 3600, total_s % 3600 / 60, total_s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// `text` with every control character (newlines, escapes) replaced by a space: it came from a peer (a transcript,
/// an outcome, a Twilio friendly name, an error message) and must neither break the layout nor drive the terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Writes `text` to stdout and flushes it. A reader that went away (`| head`) is not an error.
///
/// # Errors
/// A message for any other write failure (a full disk behind a redirect).
pub fn emit(text: &str) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write the output: {e}"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_url_defaults_to_the_local_port() {
        let url = server_url(None, 5050).expect("a URL");

        assert_eq!(url.as_str(), "http://127.0.0.1:5050/");
    }

    #[test]
    fn a_blank_callbridge_url_counts_as_unset() {
        for blank in ["", "  "] {
            let url = server_url(Some(blank), 6000).expect("a URL");

            assert_eq!(url.as_str(), "http://127.0.0.1:6000/");
        }
    }

    #[test]
    fn a_given_url_wins_and_keeps_its_path_prefix() {
        let url = server_url(Some(" https://calls.example.com/cb "), 8080).expect("valid");

        assert_eq!(url.as_str(), "https://calls.example.com/cb");
    }

    #[test]
    fn a_callbridge_url_that_is_not_http_is_refused_by_name() {
        for text in [
            "calls.example.com",
            "ftp://calls.example.com",
            "mailto:a@b.c",
            "127.0.0.1:8080",
            "not a url",
        ] {
            let error = server_url(Some(text), 5050).expect_err("not an http URL");

            assert!(error.contains("CALLBRIDGE_URL"), "{error}");
        }
    }

    #[test]
    fn durations_read_as_minutes_and_seconds_or_hours() {
        assert_eq!(format_duration(0), "0:00");
        assert_eq!(format_duration(83_999), "1:23");
        assert_eq!(format_duration(3_723_000), "1:02:03");
    }

    #[test]
    fn control_characters_become_spaces_and_other_text_is_kept() {
        assert_eq!(printable("Hello?\n\u{1b}[2J café\t→"), "Hello?  [2J café →");
    }
}
