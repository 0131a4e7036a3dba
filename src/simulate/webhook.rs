//! The simulator's webhook side: posting Twilio's signed incoming-call webhook and reading the TwiML answer.
//!
//! Follows Twilio's documentation of the voice webhook
//! (<https://www.twilio.com/docs/voice/twiml#request-parameters>), of request signing
//! (<https://www.twilio.com/docs/usage/webhooks/webhooks-security>) and of `<Connect><Stream>`
//! (<https://www.twilio.com/docs/voice/twiml/stream>).

use std::time::{Duration, Instant};

use quick_xml::events::{BytesStart, Event};

use super::SimulateError;
use crate::awc_worker::AwcWorker;
use crate::twilio::signature::RequestValidator;

/// How long the simulator waits for the webhook's answer; Twilio itself gives up after 15 s.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(15);

pub use crate::urls::INCOMING_CALL_PATH;

/// One fake inbound call, as Twilio would announce it to the voice webhook.
#[derive(Debug, Clone)]
pub struct WebhookCall {
    /// Base URL the request is actually sent to, e.g. `http://127.0.0.1:5050` (no trailing path). Use the server's
    /// local `http://` address: the crate's awc build has no TLS root certificates for `https://`.
    pub server_url: String,
    /// Base URL Twilio would have used and signed, e.g. `https://abc.trycloudflare.com`: the server's configured
    /// public URL. Equal to `server_url` when there is no tunnel.
    pub public_url: String,
    /// The Twilio auth token the server checks `X-Twilio-Signature` with.
    pub auth_token: String,
    /// `CallSid` (`CA` + 32 hex digits).
    pub call_sid: String,
    /// `AccountSid` (`AC` + 32 hex digits).
    pub account_sid: String,
    /// The caller, E.164 (`From` and `Caller`).
    pub from: String,
    /// The called Twilio number, E.164 (`To` and `Called`).
    pub to: String,
}

/// The server's answer to the incoming-call webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAnswer {
    /// HTTP status code.
    pub status: u16,
    /// The response body (TwiML on success).
    pub body: String,
    /// The `<Connect><Stream>` found in the TwiML; `None` when the status is not 200 or the TwiML has no stream
    /// (e.g. `<Reject/>`).
    pub stream: Option<ConnectStream>,
    /// From sending the request to having read the whole body.
    pub elapsed: Duration,
}

/// A `<Connect><Stream url="..."><Parameter name="..." value="..."/></Stream></Connect>` from TwiML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectStream {
    /// The Stream's `url` attribute, unescaped (Twilio requires `wss://`).
    pub url: String,
    /// The `<Parameter>` children in document order, as (name, value); they come back in `start.customParameters`.
    pub parameters: Vec<(String, String)>,
}

impl WebhookCall {
    /// The form fields Twilio sends with an inbound call's voice webhook, in a fixed order.
    pub fn form_params(&self) -> Vec<(String, String)> {
        [
            ("CallSid", self.call_sid.as_str()),
            ("AccountSid", self.account_sid.as_str()),
            ("From", self.from.as_str()),
            ("To", self.to.as_str()),
            ("Caller", self.from.as_str()),
            ("Called", self.to.as_str()),
            ("Direction", "inbound"),
            ("CallStatus", "ringing"),
            ("ApiVersion", "2010-04-01"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
    }

    /// POSTs `{server_url}/incoming-call`, form-encoded with [`Self::form_params`], with an `X-Twilio-Signature`
    /// computed over `{public_url}/incoming-call` and the auth token, and an `I-Twilio-Idempotency-Token`.
    ///
    /// On a 200 the body is parsed as TwiML into [`WebhookAnswer::stream`].
    ///
    /// # Errors
    ///
    /// [`SimulateError::Http`] when the request cannot be sent or times out ([`WEBHOOK_TIMEOUT`]);
    /// [`SimulateError::Twiml`] when a 200 answer is not well-formed XML. A non-200 status is not an error here:
    /// it is returned in the answer.
    pub async fn post_incoming(&self) -> Result<WebhookAnswer, SimulateError> {
        let params = self.form_params();
        let signed_url = format!(
            "{}{INCOMING_CALL_PATH}",
            self.public_url.trim_end_matches('/')
        );
        let target_url = format!(
            "{}{INCOMING_CALL_PATH}",
            self.server_url.trim_end_matches('/')
        );
        let signature = twilio_signature(&self.auth_token, &signed_url, &params);
        let headers = vec![
            ("X-Twilio-Signature".to_owned(), signature),
            ("I-Twilio-Idempotency-Token".to_owned(), random_hex_id("")),
            (
                "User-Agent".to_owned(),
                "TwilioProxy/1.1 (callbridge simulate)".to_owned(),
            ),
        ];
        tracing::debug!(url = %target_url, call_sid = %self.call_sid, "posting the incoming-call webhook");
        let (status, body, elapsed) = post_form(target_url, headers, params).await?;
        let stream = if status == 200 {
            parse_connect_stream(&body)?
        } else {
            None
        };
        Ok(WebhookAnswer {
            status,
            body,
            stream,
            elapsed,
        })
    }
}

impl WebhookCall {
    /// POSTs `params` form-encoded to the server's `path` (`/transfer/…/action`), signed as Twilio signs it over
    /// `{public_url}{path}` with the auth token: how Twilio calls the webhooks a call's TwiML names. Returns the
    /// status and the body.
    ///
    /// # Errors
    /// [`SimulateError::Http`] when the request cannot be sent or times out.
    pub async fn post_signed(
        &self,
        path: &str,
        params: Vec<(String, String)>,
    ) -> Result<(u16, String), SimulateError> {
        let signed_url = format!("{}{path}", self.public_url.trim_end_matches('/'));
        let target_url = format!("{}{path}", self.server_url.trim_end_matches('/'));
        let signature = twilio_signature(&self.auth_token, &signed_url, &params);
        let headers = vec![("X-Twilio-Signature".to_owned(), signature)];
        let (status, body, _) = post_form(target_url, headers, params).await?;
        Ok((status, body))
    }
}

/// Twilio's request signature over `url` and the form `params` (none for a Media Streams WebSocket upgrade),
/// computed by the server's own [`RequestValidator`] so both sides agree by construction; the published test vector
/// pins it to what Twilio sends.
pub(crate) fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    RequestValidator::new(auth_token).sign(url, params)
}

/// A Twilio-style id: `prefix` followed by 32 lowercase hex digits from 128 random bits (e.g. `CA…`, `MZ…`).
pub fn random_hex_id(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

/// The awc thread the simulator's webhooks are sent from (started on first use).
fn http_worker() -> Result<&'static AwcWorker<()>, SimulateError> {
    static WORKER: std::sync::OnceLock<AwcWorker<()>> = std::sync::OnceLock::new();
    if let Some(worker) = WORKER.get() {
        return Ok(worker);
    }
    let worker = AwcWorker::spawn("simulate-http", || ()).map_err(|error| {
        SimulateError::Http(format!("cannot start the HTTP client thread: {error}"))
    })?;
    Ok(WORKER.get_or_init(|| worker))
}

/// Sends the form POST with awc on the simulator's HTTP thread ([`AwcWorker`]), so the caller's future stays `Send`
/// (awc's client is tied to the thread that created it); each POST gets a client of its own. Returns (status, body,
/// time to the whole body).
async fn post_form(
    url: String,
    headers: Vec<(String, String)>,
    params: Vec<(String, String)>,
) -> Result<(u16, String, Duration), SimulateError> {
    let answer = http_worker()?
        .run(move |()| async move {
            let client = awc::Client::builder().timeout(WEBHOOK_TIMEOUT).finish();
            let mut request = client.post(&url);
            for (name, value) in &headers {
                request = request.insert_header((name.as_str(), value.as_str()));
            }
            let started = Instant::now();
            let mut response = request
                .send_form(&params)
                .await
                .map_err(|error| {
                    let hint = if url.starts_with("https:") {
                        " (this build's HTTP client may lack TLS roots: post to the server's local http:// address)"
                    } else {
                        ""
                    };
                    SimulateError::Http(format!("POST {url}: {error}{hint}"))
                })?;
            let body = response.body().limit(1024 * 1024).await.map_err(|error| {
                SimulateError::Http(format!("reading the answer of POST {url}: {error}"))
            })?;
            let elapsed = started.elapsed();
            Ok((
                response.status().as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
                elapsed,
            ))
        })
        .await;
    answer.map_err(|error| SimulateError::Http(error.to_string()))?
}

/// Finds the first `<Connect><Stream>` in a TwiML document.
///
/// Returns `Ok(None)` for well-formed TwiML without one (e.g. `<Response><Reject/></Response>`).
///
/// # Errors
///
/// [`SimulateError::Twiml`] when the XML is malformed or a `<Stream>` inside `<Connect>` has no `url`.
pub fn parse_connect_stream(twiml: &str) -> Result<Option<ConnectStream>, SimulateError> {
    let xml_error = |error: quick_xml::Error| SimulateError::Twiml(format!("{error} in {twiml:?}"));
    let mut reader = quick_xml::Reader::from_str(twiml);
    reader.config_mut().trim_text(true);
    let mut connect_depth = 0usize;
    let mut stream: Option<ConnectStream> = None;
    loop {
        match reader.read_event().map_err(xml_error)? {
            Event::Start(element) => match element.name().as_ref() {
                "Connect" => connect_depth += 1,
                "Stream" if connect_depth > 0 && stream.is_none() => {
                    stream = Some(stream_from_element(&element, twiml)?);
                }
                "Parameter" => push_parameter(stream.as_mut(), &element, twiml)?,
                _ => {}
            },
            Event::Empty(element) => match element.name().as_ref() {
                "Stream" if connect_depth > 0 && stream.is_none() => {
                    return Ok(Some(stream_from_element(&element, twiml)?));
                }
                "Parameter" => push_parameter(stream.as_mut(), &element, twiml)?,
                _ => {}
            },
            Event::End(element) => match element.name().as_ref() {
                "Stream" if stream.is_some() => return Ok(stream),
                "Connect" => connect_depth = connect_depth.saturating_sub(1),
                _ => {}
            },
            Event::Eof => {
                return match stream {
                    Some(_) => Err(SimulateError::Twiml(format!(
                        "unclosed <Stream> in {twiml:?}"
                    ))),
                    None => Ok(None),
                };
            }
            _ => {}
        }
    }
}

fn stream_from_element(
    element: &BytesStart<'_>,
    twiml: &str,
) -> Result<ConnectStream, SimulateError> {
    let url = attribute(element, "url", twiml)?
        .ok_or_else(|| SimulateError::Twiml(format!("<Stream> without a url in {twiml:?}")))?;
    Ok(ConnectStream {
        url,
        parameters: Vec::new(),
    })
}

/// Adds a `<Parameter name value>` to the open `<Stream>`; parameters elsewhere are ignored.
fn push_parameter(
    stream: Option<&mut ConnectStream>,
    element: &BytesStart<'_>,
    twiml: &str,
) -> Result<(), SimulateError> {
    if let Some(stream) = stream {
        let name = attribute(element, "name", twiml)?.unwrap_or_default();
        let value = attribute(element, "value", twiml)?.unwrap_or_default();
        stream.parameters.push((name, value));
    }
    Ok(())
}

/// The unescaped value of one attribute, if present.
fn attribute(
    element: &BytesStart<'_>,
    name: &str,
    twiml: &str,
) -> Result<Option<String>, SimulateError> {
    let found = element
        .try_get_attribute(name)
        .map_err(|error| SimulateError::Twiml(format!("{error} in {twiml:?}")))?;
    found
        .map(|attribute| {
            attribute
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map(|value| value.into_owned())
                .map_err(|error| SimulateError::Twiml(format!("{error} in {twiml:?}")))
        })
        .transpose()
}

/// Rewrites the stream URL from the TwiML (`wss://PUBLIC/media-stream/TOKEN`) to reach the server directly: the
/// scheme and host (and port) come from `server_url` (`http` → `ws`, `https` → `wss`), the path and query from the
/// TwiML URL. Used when the public host is a tunnel the simulator need not go through.
///
/// # Errors
///
/// [`SimulateError::BadUrl`] when either URL does not parse or `server_url` is not `http(s)://`.
pub fn local_stream_url(twiml_url: &str, server_url: &str) -> Result<String, SimulateError> {
    let bad = |what: &str, url: &str, reason: String| {
        SimulateError::BadUrl(format!("{what} {url:?}: {reason}"))
    };
    let stream = url::Url::parse(twiml_url)
        .map_err(|error| bad("stream URL", twiml_url, error.to_string()))?;
    let server = url::Url::parse(server_url)
        .map_err(|error| bad("server URL", server_url, error.to_string()))?;
    let scheme = match server.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(bad(
                "server URL",
                server_url,
                format!("scheme {other} is not http or https"),
            ));
        }
    };
    let host = server
        .host_str()
        .ok_or_else(|| bad("server URL", server_url, "no host".to_owned()))?;
    let authority = match server.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let query = stream
        .query()
        .map(|query| format!("?{query}"))
        .unwrap_or_default();
    Ok(format!("{scheme}://{authority}{}{query}", stream.path()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[test]
    fn random_ids_carry_the_prefix_and_32_hex_digits() {
        let first = random_hex_id("CA");
        let second = random_hex_id("CA");

        assert!(first.starts_with("CA") && first.len() == 34, "{first}");
        assert!(first[2..].chars().all(|c| c.is_ascii_hexdigit()), "{first}");
        assert_ne!(first, second);
    }

    #[test]
    fn a_connect_stream_answer_yields_its_url_and_parameters() {
        let twiml = r#"<?xml version="1.0" encoding="UTF-8"?>
            <Response><Connect><Stream url="wss://abc.trycloudflare.com/media-stream/tok&amp;en">
              <Parameter name="callId" value="c-1"/><Parameter name="note" value="a &lt;b&gt; &quot;c&quot;"/>
            </Stream></Connect></Response>"#;

        let stream = parse_connect_stream(twiml).expect("well-formed TwiML");

        assert_eq!(
            stream,
            Some(ConnectStream {
                url: "wss://abc.trycloudflare.com/media-stream/tok&en".to_owned(),
                parameters: vec![
                    ("callId".to_owned(), "c-1".to_owned()),
                    ("note".to_owned(), "a <b> \"c\"".to_owned()),
                ],
            })
        );
    }

    #[test]
    fn a_self_closing_stream_without_parameters_is_found() {
        let twiml =
            r#"<Response><Connect><Stream url="wss://h/media-stream/t"/></Connect></Response>"#;

        let stream = parse_connect_stream(twiml).expect("well-formed TwiML");

        assert_eq!(
            stream.map(|stream| stream.url),
            Some("wss://h/media-stream/t".to_owned())
        );
    }

    #[test]
    fn a_reject_answer_has_no_stream() {
        let stream = parse_connect_stream(r#"<Response><Reject reason="rejected"/></Response>"#);

        assert_eq!(stream.expect("well-formed TwiML"), None);
    }

    #[test]
    fn a_stream_outside_connect_is_not_a_bidirectional_stream() {
        let twiml = r#"<Response><Start><Stream url="wss://h/x"/></Start></Response>"#;

        assert_eq!(
            parse_connect_stream(twiml).expect("well-formed TwiML"),
            None
        );
    }

    #[test]
    fn malformed_twiml_is_an_error() {
        let result = parse_connect_stream(
            r#"<Response><Connect><Stream url="wss://h/x"></Connect></Response>"#,
        );

        assert!(matches!(result, Err(SimulateError::Twiml(_))), "{result:?}");
    }

    #[test]
    fn the_local_stream_url_keeps_the_path_and_takes_the_servers_host() {
        let url = local_stream_url(
            "wss://abc.trycloudflare.com/media-stream/T0K3N",
            "http://127.0.0.1:5050",
        )
        .expect("valid URLs");

        assert_eq!(url, "ws://127.0.0.1:5050/media-stream/T0K3N");
    }

    #[test]
    fn an_https_server_url_gives_a_wss_stream_url() {
        let url = local_stream_url(
            "wss://public.example/media-stream/abc",
            "https://other.example/",
        )
        .expect("valid URLs");

        assert_eq!(url, "wss://other.example/media-stream/abc");
    }

    #[test]
    fn a_server_url_that_is_not_http_is_refused() {
        let result = local_stream_url("wss://h/media-stream/t", "ftp://h");

        assert!(
            matches!(result, Err(SimulateError::BadUrl(_))),
            "{result:?}"
        );
    }

    /// Accepts one HTTP request on a local port, answers it with `answer`, and returns the raw request text.
    async fn one_shot_http_server(
        answer: &'static str,
    ) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port is free");
        let address = listener.local_addr().expect("bound");
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("the client connects");
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            loop {
                let read = socket
                    .read(&mut buffer)
                    .await
                    .expect("the client sends a request");
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request).into_owned();
                if let Some(header_end) = text.find("\r\n\r\n") {
                    let length: usize = text
                        .lines()
                        .find_map(|line| {
                            let lower = line.to_ascii_lowercase();
                            lower
                                .strip_prefix("content-length:")
                                .map(|value| value.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() >= header_end + 4 + length {
                        break;
                    }
                }
                if read == 0 {
                    break;
                }
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            socket
                .write_all(response.as_bytes())
                .await
                .expect("the client reads the answer");
            socket.shutdown().await.ok();
            String::from_utf8_lossy(&request).into_owned()
        });
        (format!("http://{address}"), handle)
    }

    #[tokio::test]
    async fn the_webhook_is_signed_over_the_public_url_and_its_twiml_is_parsed() {
        // Arrange
        let twiml = r#"<Response><Connect><Stream url="wss://pub.example/media-stream/tok"><Parameter name="k" value="v"/></Stream></Connect></Response>"#;
        let (server_url, server) = one_shot_http_server(twiml).await;
        let call = WebhookCall {
            server_url,
            public_url: "https://pub.example".to_owned(),
            auth_token: "secret-token".to_owned(),
            call_sid: "CA00000000000000000000000000000001".to_owned(),
            account_sid: "AC00000000000000000000000000000001".to_owned(),
            from: "+15550100001".to_owned(),
            to: "+15550100002".to_owned(),
        };

        // Act
        let answer = call
            .post_incoming()
            .await
            .expect("the local server answers");
        let request = server.await.expect("the server task ends");

        // Assert
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.stream,
            Some(ConnectStream {
                url: "wss://pub.example/media-stream/tok".to_owned(),
                parameters: vec![("k".to_owned(), "v".to_owned())],
            })
        );
        assert!(
            request.starts_with("POST /incoming-call HTTP/1.1\r\n"),
            "{request}"
        );
        let expected = twilio_signature(
            "secret-token",
            "https://pub.example/incoming-call",
            &call.form_params(),
        );
        let signature_line = request
            .lines()
            .find(|line| line.to_ascii_lowercase().starts_with("x-twilio-signature:"))
            .expect("the request is signed");
        assert_eq!(
            signature_line
                .split_once(':')
                .map(|(_, value)| value.trim()),
            Some(expected.as_str())
        );
        let body = request
            .split("\r\n\r\n")
            .nth(1)
            .expect("the request has a body");
        assert!(
            body.contains("CallSid=CA00000000000000000000000000000001"),
            "{body}"
        );
        assert!(body.contains("From=%2B15550100001"), "{body}");
        assert!(body.contains("Direction=inbound"), "{body}");
    }
}
