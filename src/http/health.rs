//! `GET /` (a line of text for whoever opens the public URL in a browser), `GET /health` (the process is up) and
//! `GET /ready` (it takes new calls).

use actix_web::{HttpResponse, web};

use crate::http::state::AppState;

/// What `GET /` answers: what this is and where Twilio's webhook goes.
pub const ROOT_TEXT: &str = "callbridge is running. Set your Twilio number's voice webhook (HTTP POST) to this URL \
followed by /incoming-call.\n";

/// Answers `200` with [`ROOT_TEXT`] as plain text, so opening the tunnel URL shows that it reaches callbridge.
pub async fn root() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(ROOT_TEXT)
}

/// Answers `200 {"status":"ok","live_calls":N}` while the process runs, draining or not.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "live_calls": state.live_calls.count(),
    }))
}

/// Answers `200 {"status":"ready"}`, or `503 {"status":"draining"}` once shutdown has begun, so a load balancer or
/// orchestrator stops sending new calls.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.shutdown.is_draining() {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "status": "draining",
            "live_calls": state.live_calls.count(),
        }))
    } else {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
    }
}

#[cfg(test)]
mod tests {
    use actix_web::{App, test, web};

    #[actix_web::test]
    async fn the_root_answers_a_line_of_text_naming_the_webhook_path() {
        let app = test::init_service(App::new().route("/", web::get().to(super::root))).await;

        let response =
            test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;

        assert_eq!(response.status(), 200);
        let body = test::read_body(response).await;
        let text = std::str::from_utf8(&body).expect("UTF-8");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("/incoming-call"), "{text}");
    }
}
