//! A fake Twilio REST API: records every request and answers with a configured status and JSON body, either the same
//! answer to every request ([`FakeTwilio::start`]) or one per method and path ([`FakeTwilio::start_routes`]).
//!
//! It also plays Twilio's part of a call update (`POST .../Calls/{CallSid}.json` with `Twiml=`), as the real one
//! does: the running `<Connect><Stream>` ends (`stop`, then the socket closes), the new TwiML's `<Play digits>` is
//! played (recorded here), and its `<Connect><Stream>` opens the new stream ([`FakeTwilio::play_call_update`]).
//! A call update to `<Dial><Number url>` is played too ([`FakeTwilio::play_dial`]): `stop` on the old stream, the
//! whisper URL fetched (signed) when the person "answers", then the signed `<Dial action>` with a `DialCallStatus`.
//!
//! Call recording: the create form's recording fields are recorded like every field ([`FakeTwilio::form_values`]);
//! the fake posts Twilio's signed recording status callback to the URL a call gave
//! ([`FakeTwilio::post_recording_completed`]), and `DELETE .../Recordings/{Sid}.json` requests are recorded and
//! answered by a `DELETE` route ([`FakeTwilio::deleted_recordings`]).

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use callbridge::simulate::{
    ConnectStream, MediaStreamClient, WebhookCall, local_stream_url, parse_connect_stream,
};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path, e.g. `/2010-04-01/Accounts/AC.../Calls/CA....json`.
    pub path: String,
    /// The raw query string (without `?`), e.g. `PhoneNumber=%2B15550100`; empty when none.
    pub query: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The form fields, in order.
    pub form: Vec<(String, String)>,
}

/// One canned answer of [`FakeTwilio::start_routes`]: to `method` requests whose path ends with `path_suffix`.
#[derive(Debug, Clone)]
pub struct Route {
    /// `GET`, `POST` or `DELETE`.
    pub method: &'static str,
    /// The end of the path, e.g. `/IncomingPhoneNumbers.json`.
    pub path_suffix: String,
    /// HTTP status of the answer.
    pub status: u16,
    /// JSON body of the answer.
    pub body: String,
}

impl Route {
    /// A route answering `method` requests to paths ending with `path_suffix` with `status` and `body`.
    pub fn new(method: &'static str, path_suffix: &str, status: u16, body: &str) -> Self {
        Route {
            method,
            path_suffix: path_suffix.to_owned(),
            status,
            body: body.to_owned(),
        }
    }
}

/// Twilio's answer to a request for a resource that does not exist; the fake's answer when no route matches.
pub const NOT_FOUND_BODY: &str = r#"{"code":20404,"message":"The requested resource was not found","more_info":"https://www.twilio.com/docs/errors/20404","status":404}"#;

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    /// The answer when no route matches.
    answer: Mutex<(u16, String)>,
    /// Answers by method and path, tried in order.
    routes: Mutex<Vec<Route>>,
    /// Keypad tones played by call updates, in order.
    played_digits: Mutex<Vec<String>>,
}

/// A call update the fake received: `POST .../Calls/{CallSid}.json` with `Twiml=`.
#[derive(Debug, Clone)]
pub struct CallUpdate {
    /// The request.
    pub request: RecordedRequest,
    /// The new TwiML.
    pub twiml: String,
}

impl CallUpdate {
    /// The `digits` of the TwiML's `<Play>`, if any.
    pub fn play_digits(&self) -> Option<String> {
        let after = self.twiml.split("<Play digits=\"").nth(1)?;
        Some(after.split('"').next()?.to_owned())
    }

    /// The TwiML's `<Connect><Stream>`, if any.
    pub fn stream(&self) -> Option<ConnectStream> {
        parse_connect_stream(&self.twiml).ok().flatten()
    }

    /// The TwiML's `<Dial>`, if any.
    pub fn dial(&self) -> Option<Dial> {
        let attribute = |tag: &str, name: &str| -> Option<String> {
            let element = self
                .twiml
                .split(&format!("<{tag} "))
                .nth(1)?
                .split('>')
                .next()?;
            let value = element
                .split(&format!("{name}=\""))
                .nth(1)?
                .split('"')
                .next()?;
            Some(value.replace("&amp;", "&"))
        };
        let number = self
            .twiml
            .split("<Number ")
            .nth(1)?
            .split_once('>')?
            .1
            .split("</Number>")
            .next()?
            .to_owned();
        Some(Dial {
            caller_id: attribute("Dial", "callerId")?,
            action: attribute("Dial", "action")?,
            timeout: attribute("Dial", "timeout")?,
            whisper_url: attribute("Number", "url")?,
            number,
        })
    }
}

/// A `<Dial callerId action timeout><Number url>number</Number></Dial>` of a call update.
#[derive(Debug, Clone)]
pub struct Dial {
    /// `callerId`.
    pub caller_id: String,
    /// `action` (absolute, on the public URL).
    pub action: String,
    /// `timeout`, seconds.
    pub timeout: String,
    /// The `<Number url>` (absolute, on the public URL).
    pub whisper_url: String,
    /// The number dialled.
    pub number: String,
}

/// What the fake Twilio saw while playing a `<Dial>`.
#[derive(Debug, Clone)]
pub struct DialPlayed {
    /// The whisper's status and TwiML (fetched only when the person answers).
    pub whisper: Option<(u16, String)>,
    /// The action's status and TwiML.
    pub action: (u16, String),
}

/// The running fake; dropping it leaves the server running until the test process ends (it holds nothing else).
pub struct FakeTwilio {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    shared: Arc<Shared>,
}

impl FakeTwilio {
    /// Starts the fake answering `status` with `body` to every request.
    pub fn start(status: u16, body: &str) -> Self {
        Self::serve(status, body, Vec::new())
    }

    /// Starts the fake answering each request with the first route matching its method and path, and 404 with
    /// Twilio's 20404 error when none does.
    pub fn start_routes(routes: Vec<Route>) -> Self {
        Self::serve(404, NOT_FOUND_BODY, routes)
    }

    fn serve(status: u16, body: &str, routes: Vec<Route>) -> Self {
        let shared = Arc::new(Shared::default());
        *shared.answer.lock().expect("fresh lock") = (status, body.to_owned());
        *shared.routes.lock().expect("fresh lock") = routes;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(record))
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        FakeTwilio { url, shared }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().expect("lock").clone()
    }

    /// Waits up to `timeout` for at least one request.
    pub async fn wait_for_request(&self, timeout: Duration) -> Option<RecordedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Some(first) = self.requests().into_iter().next() {
                return Some(first);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl FakeTwilio {
    /// The call updates received so far (requests carrying `Twiml`), in order.
    pub fn call_updates(&self) -> Vec<CallUpdate> {
        self.requests()
            .into_iter()
            .filter_map(|request| {
                let twiml = request
                    .form
                    .iter()
                    .find(|(k, _)| k == "Twiml")
                    .map(|(_, v)| v.clone())?;
                Some(CallUpdate { request, twiml })
            })
            .collect()
    }

    /// Waits up to `timeout` for the `n`th call update (0-based).
    pub async fn wait_for_call_update(&self, n: usize, timeout: Duration) -> Option<CallUpdate> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(update) = self.call_updates().into_iter().nth(n) {
                return Some(update);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Keypad tones the call updates played, in order.
    pub fn played_digits(&self) -> Vec<String> {
        self.shared.played_digits.lock().expect("lock").clone()
    }

    /// Plays Twilio's part of `update` on the call `call_sid` whose stream is `old`, against the server at
    /// `server_address`: `stop` and close on the old stream, the `<Play digits>` recorded, then the new stream opened
    /// from the TwiML's `<Connect><Stream>` and started. Returns the new stream and its (local) URL.
    pub async fn play_call_update(
        &self,
        update: &CallUpdate,
        old: &MediaStreamClient,
        server_address: &str,
        call_sid: &str,
    ) -> (MediaStreamClient, String) {
        old.stop().await;
        if let Some(digits) = update.play_digits() {
            self.shared.played_digits.lock().expect("lock").push(digits);
        }
        let stream = update
            .stream()
            .expect("the update ends in <Connect><Stream>");
        let url = local_stream_url(&stream.url, server_address).expect("a stream URL");
        let client = MediaStreamClient::connect(&url)
            .await
            .expect("the new stream's upgrade succeeds");
        client
            .start(call_sid, &stream.parameters)
            .await
            .expect("start is sent");
        (client, url)
    }
}

impl FakeTwilio {
    /// Plays Twilio's part of a transfer `update` (`<Dial><Number url>`) on the call of `webhook`, whose stream is
    /// `old`: `stop` and close on the old stream; when `status` is `completed` or `answered` the person answers and
    /// the whisper URL is fetched (signed) first; then the `<Dial action>` is posted (signed) with `DialCallStatus`.
    pub async fn play_dial(
        &self,
        update: &CallUpdate,
        old: &MediaStreamClient,
        webhook: &WebhookCall,
        status: &str,
    ) -> DialPlayed {
        let dial = update.dial().expect("the update is a <Dial>");
        old.stop().await;
        let params = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
            [
                ("AccountSid", webhook.account_sid.as_str()),
                ("CallSid", webhook.call_sid.as_str()),
                ("From", webhook.from.as_str()),
                ("To", webhook.to.as_str()),
            ]
            .iter()
            .chain(extra)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
        };
        let path = |url: &str| {
            url.strip_prefix(webhook.public_url.trim_end_matches('/'))
                .expect("the URL is on the public URL")
                .to_owned()
        };
        let whisper = if status == "completed" || status == "answered" {
            let answered = webhook
                .post_signed(
                    &path(&dial.whisper_url),
                    params(&[("CallStatus", "in-progress")]),
                )
                .await
                .expect("the whisper is answered");
            Some(answered)
        } else {
            None
        };
        let action = webhook
            .post_signed(
                &path(&dial.action),
                params(&[("DialCallStatus", status), ("CallStatus", "in-progress")]),
            )
            .await
            .expect("the action is answered");
        DialPlayed { whisper, action }
    }
}

impl FakeTwilio {
    /// Every value of form field `name` of the `n`th request (0-based), in order.
    pub fn form_values(&self, n: usize, name: &str) -> Vec<String> {
        self.requests()
            .get(n)
            .map(|request| {
                request
                    .form
                    .iter()
                    .filter(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The RecordingSids of the `DELETE .../Recordings/{Sid}.json` requests received so far, in order.
    pub fn deleted_recordings(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|request| request.method == "DELETE")
            .filter_map(|request| {
                let file = request.path.split("/Recordings/").nth(1)?;
                Some(file.strip_suffix(".json")?.to_owned())
            })
            .collect()
    }

    /// Waits up to `timeout` for a `DELETE` of recording `sid`; true when it came.
    pub async fn wait_for_recording_deletion(&self, sid: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.deleted_recordings().iter().any(|s| s == sid) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Plays Twilio's recording status callback for a completed recording: POSTs, signed with `auth_token` over
    /// `callback_url` (a URL on the test public URL), to the same path on the server at `server_address`, the form
    /// Twilio sends (`AccountSid`, `CallSid`, `RecordingSid`, `RecordingUrl`, `RecordingStatus=completed`,
    /// `RecordingDuration`, `RecordingChannels=2`, `RecordingSource`, `RecordingStartTime`, `ErrorCode=0`).
    /// Returns the status and body.
    #[allow(clippy::too_many_arguments)]
    pub async fn post_recording_completed(
        &self,
        server_address: &str,
        callback_url: &str,
        auth_token: &str,
        account_sid: &str,
        call_sid: &str,
        recording_sid: &str,
        duration_s: u64,
    ) -> (u16, String) {
        let path = callback_url
            .strip_prefix(crate::helpers::PUBLIC_URL)
            .expect("the callback is on the public URL");
        let recording_url = format!(
            "https://api.twilio.com/2010-04-01/Accounts/{account_sid}/Recordings/{recording_sid}"
        );
        let duration = duration_s.to_string();
        crate::helpers::post_signed(
            server_address,
            path,
            &[
                ("AccountSid", account_sid),
                ("CallSid", call_sid),
                ("RecordingSid", recording_sid),
                ("RecordingUrl", &recording_url),
                ("RecordingStatus", "completed"),
                ("RecordingDuration", &duration),
                ("RecordingChannels", "2"),
                ("RecordingSource", "OutboundAPI"),
                ("RecordingStartTime", "Mon, 30 Nov 2026 21:00:00 +0000"),
                ("ErrorCode", "0"),
            ],
            Some(auth_token),
            None,
        )
        .await
    }
}

async fn record(shared: web::Data<Shared>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let form = url::form_urlencoded::parse(&body).into_owned().collect();
    shared.requests.lock().expect("lock").push(RecordedRequest {
        method: req.method().to_string(),
        path: req.path().to_owned(),
        query: req.query_string().to_owned(),
        authorization: req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        form,
    });
    let routed = shared
        .routes
        .lock()
        .expect("lock")
        .iter()
        .find(|route| {
            route.method == req.method().as_str() && req.path().ends_with(&route.path_suffix)
        })
        .map(|route| (route.status, route.body.clone()));
    let (status, body) = routed.unwrap_or_else(|| shared.answer.lock().expect("lock").clone());
    // `{n}` in an answer is the request's number (1 for the first request), so each created call gets its own sid.
    let n = shared.requests.lock().expect("lock").len();
    let body = body.replace("{n}", &format!("{n:04}"));
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("valid status"))
        .content_type("application/json")
        .body(body)
}
