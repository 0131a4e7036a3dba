//! A fake Twilio REST API: records every request and answers with a configured status and JSON body.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path, e.g. `/2010-04-01/Accounts/AC.../Calls/CA....json`.
    pub path: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The form fields, in order.
    pub form: Vec<(String, String)>,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    answer: Mutex<(u16, String)>,
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
        let shared = Arc::new(Shared::default());
        *shared.answer.lock().expect("fresh lock") = (status, body.to_owned());
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

async fn record(shared: web::Data<Shared>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let form = url::form_urlencoded::parse(&body).into_owned().collect();
    shared.requests.lock().expect("lock").push(RecordedRequest {
        method: req.method().to_string(),
        path: req.path().to_owned(),
        authorization: req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        form,
    });
    let (status, body) = shared.answer.lock().expect("lock").clone();
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("valid status"))
        .content_type("application/json")
        .body(body)
}
