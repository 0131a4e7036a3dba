//! `callbridge webhooks list [--status pending|delivered|failed]` and `callbridge webhooks retry ID`: the signed
//! webhook deliveries of a running server, through its REST API (`/api/webhooks`, see
//! [`crate::http::webhooks_api`]) with `CALLBRIDGE_API_KEY`, at `CALLBRIDGE_URL` (default: this machine's port).
//!
//! `list` prints a table (id, event, status, attempts, last answer or error, next attempt, call, URL) or, with
//! `--json`, the API's JSON; `retry` sends one delivery again now and prints it. Text from the receiver (its
//! errors) is printed with control characters replaced.
//!
//! Exit codes: 0 done; 1 the server refused (no such delivery) or could not be reached; 2 invalid settings or
//! arguments.

use std::fmt::Write as _;
use std::process::ExitCode;

use time::OffsetDateTime;

use super::api_client::ApiClient;
use super::output::{emit, printable};
use crate::calls::store::{DeliveryStatus, WebhookDelivery};

/// Exit code: the server refused or could not be reached.
const EXIT_FAILED: u8 = 1;
/// Exit code: invalid settings.
const EXIT_CONFIGURATION: u8 = 2;

/// Arguments of `callbridge webhooks`.
#[derive(Debug, clap::Args)]
pub struct WebhooksArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: WebhooksCommand,
}

/// The `callbridge webhooks` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WebhooksCommand {
    /// List webhook deliveries, newest first.
    List(ListArgs),
    /// Send one delivery again now (a failed one gets one more attempt).
    Retry(RetryArgs),
}

/// Arguments of `callbridge webhooks list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only deliveries in this status: pending, delivered or failed.
    #[arg(long, value_parser = parse_status)]
    pub status: Option<DeliveryStatus>,
    /// How many to list (the newest ones).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `callbridge webhooks retry`.
#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    /// The delivery's id (`msg_...`, the `webhook-id` header).
    pub id: String,
    /// Print the API's JSON instead of a line.
    #[arg(long)]
    pub json: bool,
}

/// Parses `--status`.
fn parse_status(text: &str) -> Result<DeliveryStatus, String> {
    text.parse()
        .map_err(|e: crate::calls::store::UnknownDeliveryStatus| e.to_string())
}

/// Runs `callbridge webhooks ...`; see the module docs for the exit codes.
pub async fn run(args: WebhooksArgs) -> ExitCode {
    let client = match ApiClient::from_settings() {
        Ok(client) => client,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(EXIT_CONFIGURATION);
        }
    };
    let text = match args.command {
        WebhooksCommand::List(list) => {
            client
                .list_webhooks(list.status, list.limit)
                .await
                .map(|deliveries| {
                    if list.json {
                        json(&deliveries)
                    } else {
                        table(&deliveries, OffsetDateTime::now_utc())
                    }
                })
        }
        WebhooksCommand::Retry(retry) => client.retry_webhook(&retry.id).await.map(|delivery| {
            if retry.json {
                json(&delivery)
            } else {
                format!(
                    "{} {} queued again: pending, attempt {} now\n",
                    delivery.id,
                    delivery.event,
                    delivery.attempts + 1
                )
            }
        }),
    };
    match text {
        Ok(text) => match emit(&text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("{message}");
                ExitCode::from(EXIT_FAILED)
            }
        },
        Err(error) => {
            eprintln!("{}", printable(&error.message));
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Pretty JSON and a newline.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value)
        .map_or_else(|e| format!("{{\"error\": \"{e}\"}}\n"), |s| s + "\n")
}

/// The `list` table; `now` makes next attempts relative (`in 25 s`).
pub fn table(deliveries: &[WebhookDelivery], now: OffsetDateTime) -> String {
    if deliveries.is_empty() {
        return "no webhook deliveries\n".to_owned();
    }
    let mut out = format!(
        "{:<30}  {:<19}  {:<9}  {:>8}  {:<28}  {:<12}  {:<31}  {}\n",
        "ID", "EVENT", "STATUS", "ATTEMPTS", "LAST", "NEXT", "CALL", "URL"
    );
    for d in deliveries {
        let last = match (d.last_status_code, &d.last_error) {
            (Some(code), _) if d.status == DeliveryStatus::Delivered => format!("HTTP {code}"),
            (_, Some(error)) => printable(error).chars().take(28).collect(),
            (Some(code), None) => format!("HTTP {code}"),
            (None, None) => "-".to_owned(),
        };
        let next = d.next_attempt_at.map_or_else(
            || "-".to_owned(),
            |at| {
                let seconds = (at - now).whole_seconds();
                if seconds <= 0 {
                    "now".to_owned()
                } else {
                    format!("in {seconds} s")
                }
            },
        );
        let _ = writeln!(
            out,
            "{:<30}  {:<19}  {:<9}  {:>8}  {:<28}  {:<12}  {:<31}  {}",
            d.id,
            d.event,
            d.status,
            d.attempts,
            last,
            next,
            d.call_id,
            printable(&d.url)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn delivery(status: DeliveryStatus) -> WebhookDelivery {
        WebhookDelivery {
            id: "msg_0123456789abcdefghjkmnpqrs".into(),
            call_id: "call_0123456789abcdefghjkmnpqrs".into(),
            event: "call.completed".into(),
            url: "https://hooks.example.com/cb".into(),
            status,
            attempts: 2,
            created_at: datetime!(2025-01-02 03:04:05 UTC),
            next_attempt_at: (status == DeliveryStatus::Pending)
                .then_some(datetime!(2025-01-02 03:04:35 UTC)),
            last_attempt_at: Some(datetime!(2025-01-02 03:04:10 UTC)),
            last_status_code: Some(500),
            last_error: Some("the receiver answered 500\u{1b}[31m".into()),
            delivered_at: None,
        }
    }

    #[test]
    fn a_pending_row_shows_its_last_error_and_when_it_is_tried_next() {
        let text = table(
            &[delivery(DeliveryStatus::Pending)],
            datetime!(2025-01-02 03:04:10 UTC),
        );

        let row = text.lines().nth(1).expect("a row");
        assert!(row.contains("call.completed"), "{row}");
        assert!(row.contains("pending"), "{row}");
        assert!(row.contains("in 25 s"), "{row}");
        assert!(row.contains("the receiver answered 500"), "{row}");
        assert!(
            !text.contains('\u{1b}'),
            "control characters replaced: {text:?}"
        );
    }

    #[test]
    fn no_deliveries_say_so() {
        assert_eq!(
            table(&[], datetime!(2025-01-02 03:04:10 UTC)),
            "no webhook deliveries\n"
        );
    }

    #[test]
    fn the_status_option_takes_the_three_statuses_only() {
        assert_eq!(parse_status("failed"), Ok(DeliveryStatus::Failed));
        assert!(parse_status("retrying").is_err());
    }
}
