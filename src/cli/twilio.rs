//! `callbridge twilio configure` and `callbridge twilio status`: point `TWILIO_PHONE_NUMBER`'s voice webhook at this
//! server (`PUBLIC_URL/incoming-call`, HTTP POST) or at the allowlist Function in front of it, through Twilio's REST
//! API, and check where it points.
//!
//! Follows <https://www.twilio.com/docs/phone-numbers/api/incomingphonenumber-resource>; the requests themselves are
//! in [`crate::twilio::numbers`]. Settings come from the same sources as the server's (`.env`, `callbridge.toml`,
//! environment). Exit codes: 0 done / matches; 1 the number does not point at the target (`status`) or could not be
//! changed (`configure`); 2 a configuration problem (a missing or invalid setting, credentials Twilio refuses, a
//! number the account does not own); 3 (`status` only) Twilio could not be asked. The auth token is never printed.

use std::process::ExitCode;

use crate::config::{Requirement, Settings};
use crate::twilio::numbers::{
    IncomingPhoneNumber, WebhookStatus, incoming_call_url, parse_https_url,
};
use crate::twilio::rest::{RestError, TwilioRest};
use secrecy::ExposeSecret;

use super::output::printable;

/// Exit code: `status` found the number pointing elsewhere; `configure` could not change it.
const EXIT_MISMATCH: u8 = 1;
/// Exit code: a missing or invalid setting, refused credentials, or a number the account does not own.
const EXIT_CONFIGURATION: u8 = 2;
/// Exit code of `status` and `configure` when Twilio could not be asked for the number (network, timeout, an
/// unexpected error).
const EXIT_TWILIO_UNAVAILABLE: u8 = 3;

/// Width of the labels in the printed report.
const LABEL_WIDTH: usize = 13;

/// Arguments of `callbridge twilio`.
#[derive(Debug, clap::Args)]
pub struct TwilioArgs {
    /// What to do with the number.
    #[command(subcommand)]
    pub command: TwilioCommand,
}

/// The `callbridge twilio` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TwilioCommand {
    /// Point TWILIO_PHONE_NUMBER's voice webhook at this server (PUBLIC_URL/incoming-call, HTTP POST) and show what
    /// changed. Exit 0 when done, 1 when Twilio refused the change, 2 for configuration errors, 3 when Twilio could
    /// not be asked (with or without --dry-run).
    Configure(ConfigureArgs),
    /// Show TWILIO_PHONE_NUMBER's voice webhook and whether it is this server's. Exit 0 when it matches, 1 when it
    /// does not, 2 for configuration errors, 3 when Twilio could not be asked.
    Status(StatusArgs),
}

/// Arguments of `callbridge twilio configure`.
#[derive(Debug, clap::Args)]
pub struct ConfigureArgs {
    /// Show what would change without changing anything (no update is sent).
    #[arg(long)]
    pub dry_run: bool,
    /// Point the number at this https URL (the allowlist Twilio Function in front of callbridge) instead of
    /// PUBLIC_URL/incoming-call.
    #[arg(long, value_name = "URL")]
    pub function_url: Option<String>,
}

/// Arguments of `callbridge twilio status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Expect the number to point at this https URL (the allowlist Twilio Function) instead of
    /// PUBLIC_URL/incoming-call.
    #[arg(long, value_name = "URL")]
    pub function_url: Option<String>,
}

/// Runs `callbridge twilio ...`, printing a report on stdout and problems on stderr; see the module docs for the
/// exit codes. Runs the REST client on a local task set (awc's client is tied to its thread).
pub async fn run(args: TwilioArgs) -> ExitCode {
    crate::startup::install_crypto_provider();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            match args.command {
                TwilioCommand::Configure(args) => configure(args).await,
                TwilioCommand::Status(args) => status(args).await,
            }
        })
        .await
}

/// What both commands work with, once the settings are checked.
#[derive(Debug)]
struct Target {
    /// The REST client for `TWILIO_ACCOUNT_SID`.
    rest: TwilioRest,
    /// `TWILIO_PHONE_NUMBER`, E.164.
    phone_number: String,
    /// The voice URL the number should have.
    voice_url: String,
    /// The `--function-url` given, if any (it goes into the suggested command).
    function_url: Option<String>,
}

impl Target {
    /// Where the target is: "this server" or "the allowlist Function".
    fn label(&self) -> &'static str {
        if self.function_url.is_some() {
            "Function"
        } else {
            "This server"
        }
    }

    /// The command that points the number at the target.
    fn configure_command(&self) -> String {
        match &self.function_url {
            Some(url) => format!("callbridge twilio configure --function-url {url}"),
            None => "callbridge twilio configure".to_owned(),
        }
    }
}

/// Checks the settings both commands need; every problem is one line naming the setting.
fn target_from(settings: &Settings, function_url: Option<&str>) -> Result<Target, Vec<String>> {
    let mut problems = Vec::new();
    let twilio = &settings.twilio;
    if twilio.account_sid.is_none() {
        problems.push(
            "TWILIO_ACCOUNT_SID is not set: the Twilio REST API needs your Account SID (AC..., on the Twilio \
             Console's home page)"
                .to_owned(),
        );
    }
    if twilio.auth_token.expose_secret().is_empty() {
        problems.push(
            "TWILIO_AUTH_TOKEN is not set: the Twilio REST API needs your auth token (next to the Account SID in \
             the Twilio Console)"
                .to_owned(),
        );
    }
    if twilio.phone_number.is_none() {
        problems.push(
            "TWILIO_PHONE_NUMBER is not set: the number to point at callbridge, in E.164 (e.g. +15550100)"
                .to_owned(),
        );
    }
    let voice_url = match (function_url, &settings.public_url) {
        // Kept as written: Twilio stores and compares the URL as sent, and `Url` would normalize it.
        (Some(text), _) => parse_https_url(text.trim())
            .map(|_| text.trim().to_owned())
            .map_err(|e| {
                problems.push(format!(
                    "--function-url {e} (Twilio Functions are served over https)"
                ))
            })
            .ok(),
        (None, Some(public_url)) => Some(incoming_call_url(public_url)),
        (None, None) => {
            problems.push(
                "PUBLIC_URL is not set: the number's voice URL is PUBLIC_URL/incoming-call (set it to your \
                 tunnel's https URL, e.g. https://abc.trycloudflare.com, or pass --function-url)"
                    .to_owned(),
            );
            None
        }
    };
    match (&twilio.account_sid, &twilio.phone_number, voice_url) {
        (Some(account_sid), Some(phone_number), Some(voice_url)) if problems.is_empty() => {
            Ok(Target {
                rest: TwilioRest::new(
                    twilio.api_base_url.clone(),
                    account_sid.clone(),
                    twilio.auth_token.clone(),
                ),
                phone_number: phone_number.clone(),
                voice_url,
                function_url: function_url.map(str::to_owned),
            })
        }
        _ => Err(problems),
    }
}

/// Loads the settings and checks them, printing every problem on stderr; `Err` is the exit code.
fn load_target(command: &str, function_url: Option<&str>) -> Result<Target, ExitCode> {
    let problems = match Settings::from_process(Requirement::Nothing) {
        Ok(settings) => match target_from(&settings, function_url) {
            Ok(target) => return Ok(target),
            Err(problems) => problems,
        },
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    };
    for problem in problems {
        eprintln!("callbridge twilio {command}: {problem}");
    }
    Err(ExitCode::from(EXIT_CONFIGURATION))
}

/// Finds the number at Twilio, printing why not on stderr; `Err` is the exit code.
async fn find_number(
    command: &str,
    target: &Target,
    unavailable_exit: u8,
) -> Result<IncomingPhoneNumber, ExitCode> {
    match target.rest.find_incoming_number(&target.phone_number).await {
        Ok(Some(number)) => Ok(number),
        Ok(None) => {
            eprintln!(
                "callbridge twilio {command}: TWILIO_PHONE_NUMBER {} is not a number of account {}: check the \
                 number (E.164, as listed under Phone Numbers → Active numbers) and TWILIO_ACCOUNT_SID",
                target.phone_number,
                target.rest.account_sid()
            );
            Err(ExitCode::from(EXIT_CONFIGURATION))
        }
        Err(e) => Err(report_rest_error(
            command,
            target,
            "cannot read the number's configuration",
            &e,
            unavailable_exit,
        )),
    }
}

/// Prints a REST failure on stderr, naming the settings to check when Twilio refused the credentials; returns the
/// exit code: [`EXIT_CONFIGURATION`] for refused credentials, else `other_exit`.
fn report_rest_error(
    command: &str,
    target: &Target,
    doing: &str,
    error: &RestError,
    other_exit: u8,
) -> ExitCode {
    if error.is_authentication_failure() {
        eprintln!(
            "callbridge twilio {command}: Twilio refused the credentials ({error}): check TWILIO_ACCOUNT_SID and \
             TWILIO_AUTH_TOKEN; they must be the Account SID and auth token of the account that owns {}",
            target.phone_number
        );
        return ExitCode::from(EXIT_CONFIGURATION);
    }
    eprintln!("callbridge twilio {command}: {doing}: {error}");
    if matches!(error, RestError::Twilio { status: 404, .. }) {
        eprintln!(
            "callbridge twilio {command}: hint: check TWILIO_ACCOUNT_SID ({}), and that the number still belongs \
             to that account",
            target.rest.account_sid()
        );
    }
    ExitCode::from(other_exit)
}

/// One `Label        value` line of the report. Control characters in the value (which comes partly from Twilio, e.g.
/// a friendly name) are shown as spaces ([`printable`]) so they cannot drive the terminal.
fn line(label: &str, value: &str) -> String {
    format!("{label:<LABEL_WIDTH$}{}", printable(value))
}

/// `POST https://...`, or `(not set)`.
fn webhook_text(number: &IncomingPhoneNumber) -> String {
    match number.voice_url() {
        Some(url) => format!("{} {url}", number.voice_method()),
        None => "(not set)".to_owned(),
    }
}

/// The report's first lines: the number, its voice webhook, what overrides it, its fallback, and the target.
fn describe(number: &IncomingPhoneNumber, target: &Target) -> Vec<String> {
    let name = match number.friendly_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => format!("{} ({name}, {})", number.phone_number, number.sid),
        None => format!("{} ({})", number.phone_number, number.sid),
    };
    let mut lines = vec![
        line("Number", &name),
        line("Voice URL", &webhook_text(number)),
    ];
    if let Some(app) = number.voice_application_sid() {
        lines.push(line(
            "TwiML App",
            &format!("{app} (handles calls instead of the voice URL)"),
        ));
    }
    if let Some(trunk) = number.trunk_sid() {
        lines.push(line(
            "SIP trunk",
            &format!("{trunk} (takes calls instead of the voice URL)"),
        ));
    }
    if let Some(fallback) = number
        .voice_fallback_url
        .as_deref()
        .filter(|u| !u.is_empty())
    {
        lines.push(line("Fallback URL", fallback));
    }
    lines.push(line(target.label(), &format!("POST {}", target.voice_url)));
    lines
}

/// `callbridge twilio configure`.
async fn configure(args: ConfigureArgs) -> ExitCode {
    const COMMAND: &str = "configure";
    let target = match load_target(COMMAND, args.function_url.as_deref()) {
        Ok(target) => target,
        Err(code) => return code,
    };
    // As for `status`: a number that cannot be read (network, timeout) is exit 3, with or without --dry-run.
    let number = match find_number(COMMAND, &target, EXIT_TWILIO_UNAVAILABLE).await {
        Ok(number) => number,
        Err(code) => return code,
    };
    for text in describe(&number, &target) {
        println!("{text}");
    }
    let application = match number.webhook_status(&target.voice_url) {
        WebhookStatus::Matches => {
            println!("{}", line("Result", "already set: nothing to change"));
            return ExitCode::SUCCESS;
        }
        WebhookStatus::OverriddenByTrunk(trunk) => {
            eprintln!(
                "callbridge twilio {COMMAND}: {} belongs to Elastic SIP Trunk {trunk}, so Twilio ignores its voice \
                 URL; remove it from the trunk in the Twilio Console first",
                number.phone_number
            );
            return ExitCode::from(EXIT_MISMATCH);
        }
        WebhookStatus::OverriddenByApplication(app) => Some(app),
        WebhookStatus::Differs => None,
    };
    let also = application
        .as_ref()
        .map(|app| format!(" and detach TwiML App {app}"))
        .unwrap_or_default();
    if args.dry_run {
        println!(
            "{}",
            line(
                "Result",
                &format!(
                    "would change (dry run): set the voice URL to POST {}{also}; nothing was sent",
                    target.voice_url
                )
            )
        );
        return ExitCode::SUCCESS;
    }
    match target
        .rest
        .set_voice_url(&number.sid, &target.voice_url, application.is_some())
        .await
    {
        Ok(updated) if updated.webhook_status(&target.voice_url) == WebhookStatus::Matches => {
            let detached = application
                .map(|app| format!(" (TwiML App {app} detached)"))
                .unwrap_or_default();
            println!("{}", line("Result", &format!("changed{detached}")));
            println!("{}", line("Now", &webhook_text(&updated)));
            ExitCode::SUCCESS
        }
        Ok(updated) => {
            eprintln!(
                "callbridge twilio {COMMAND}: Twilio accepted the update but the number's voice webhook is now {}; \
                 check it in the Twilio Console",
                webhook_text(&updated)
            );
            ExitCode::from(EXIT_MISMATCH)
        }
        Err(e) => report_rest_error(
            COMMAND,
            &target,
            "cannot update the number",
            &e,
            EXIT_MISMATCH,
        ),
    }
}

/// `callbridge twilio status`.
async fn status(args: StatusArgs) -> ExitCode {
    const COMMAND: &str = "status";
    let target = match load_target(COMMAND, args.function_url.as_deref()) {
        Ok(target) => target,
        Err(code) => return code,
    };
    let number = match find_number(COMMAND, &target, EXIT_TWILIO_UNAVAILABLE).await {
        Ok(number) => number,
        Err(code) => return code,
    };
    for text in describe(&number, &target) {
        println!("{text}");
    }
    let (verdict, code) = status_verdict(&number, &target);
    println!("{}", line("Result", &verdict));
    code
}

/// The `Result` line of `status` and its exit code.
fn status_verdict(number: &IncomingPhoneNumber, target: &Target) -> (String, ExitCode) {
    let fix = target.configure_command();
    let where_to = if target.function_url.is_some() {
        "the Function"
    } else {
        "this server"
    };
    match number.webhook_status(&target.voice_url) {
        WebhookStatus::Matches => (
            format!("matches: calls to {} reach {where_to}", number.phone_number),
            ExitCode::SUCCESS,
        ),
        WebhookStatus::Differs => (
            format!("does not match {where_to}; run `{fix}` to point the number at it"),
            ExitCode::from(EXIT_MISMATCH),
        ),
        WebhookStatus::OverriddenByApplication(app) => (
            format!(
                "does not match {where_to}: TwiML App {app} handles the calls; run `{fix}` to point the number \
                 at it"
            ),
            ExitCode::from(EXIT_MISMATCH),
        ),
        WebhookStatus::OverriddenByTrunk(trunk) => (
            format!(
                "does not match {where_to}: Elastic SIP Trunk {trunk} takes the calls; remove the number from the \
                 trunk in the Twilio Console, then run `{fix}`"
            ),
            ExitCode::from(EXIT_MISMATCH),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::load(&env, None, Requirement::Nothing).expect("valid settings")
    }

    fn complete() -> Vec<(&'static str, &'static str)> {
        vec![
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
            ("TWILIO_AUTH_TOKEN", "secret-token"),
            ("TWILIO_PHONE_NUMBER", "+15550100"),
            ("PUBLIC_URL", "https://abc.trycloudflare.com"),
        ]
    }

    fn number(voice_url: &str) -> IncomingPhoneNumber {
        IncomingPhoneNumber {
            sid: "PN0123456789abcdef0123456789abcdef".to_owned(),
            phone_number: "+15550100".to_owned(),
            friendly_name: Some("Front desk".to_owned()),
            voice_url: Some(voice_url.to_owned()),
            voice_method: Some("POST".to_owned()),
            voice_fallback_url: None,
            voice_application_sid: None,
            trunk_sid: None,
        }
    }

    #[test]
    fn the_target_is_the_public_url_incoming_call_webhook() {
        let target = target_from(&settings(&complete()), None).expect("complete settings");

        assert_eq!(
            target.voice_url,
            "https://abc.trycloudflare.com/incoming-call"
        );
        assert_eq!(target.phone_number, "+15550100");
        assert_eq!(target.rest.account_sid(), ACCOUNT_SID);
    }

    #[test]
    fn a_function_url_replaces_the_public_url_and_makes_it_unnecessary() {
        let mut pairs = complete();
        pairs.retain(|(k, _)| *k != "PUBLIC_URL");

        let target = target_from(
            &settings(&pairs),
            Some("https://allowlist-1234.twil.io/allowlist"),
        )
        .expect("PUBLIC_URL is not needed");

        assert_eq!(target.voice_url, "https://allowlist-1234.twil.io/allowlist");
        assert_eq!(
            target.configure_command(),
            "callbridge twilio configure --function-url https://allowlist-1234.twil.io/allowlist"
        );
    }

    #[test]
    fn every_missing_setting_is_named_on_a_line_of_its_own() {
        let problems = target_from(&settings(&[]), None).expect_err("nothing is set");

        assert_eq!(problems.len(), 4, "{problems:#?}");
        for (problem, name) in problems.iter().zip([
            "TWILIO_ACCOUNT_SID",
            "TWILIO_AUTH_TOKEN",
            "TWILIO_PHONE_NUMBER",
            "PUBLIC_URL",
        ]) {
            assert!(
                problem.starts_with(&format!("{name} is not set")),
                "{problem}"
            );
        }
    }

    #[test]
    fn an_http_function_url_is_a_configuration_problem() {
        let problems = target_from(
            &settings(&complete()),
            Some("http://allowlist-1234.twil.io/allowlist"),
        )
        .expect_err("http is refused");

        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("--function-url"), "{}", problems[0]);
        assert!(problems[0].contains("https"), "{}", problems[0]);
    }

    #[test]
    fn the_report_shows_the_current_webhook_and_the_target() {
        let target = target_from(&settings(&complete()), None).expect("complete settings");

        let lines = describe(&number("https://old.example/incoming-call"), &target);

        assert_eq!(
            lines,
            vec![
                "Number       +15550100 (Front desk, PN0123456789abcdef0123456789abcdef)",
                "Voice URL    POST https://old.example/incoming-call",
                "This server  POST https://abc.trycloudflare.com/incoming-call",
            ]
        );
    }

    #[test]
    fn control_characters_from_twilio_are_not_printed() {
        let target = target_from(&settings(&complete()), None).expect("complete settings");
        let mut number = number("https://old.example/incoming-call");
        number.friendly_name = Some("Front\u{1b}[2Jdesk".to_owned());

        let lines = describe(&number, &target);

        assert!(!lines[0].contains('\u{1b}'), "{}", lines[0]);
        assert!(lines[0].contains("Front [2Jdesk"), "{}", lines[0]);
    }

    #[test]
    fn status_of_a_number_pointing_elsewhere_names_the_command_that_fixes_it() {
        let target = target_from(&settings(&complete()), None).expect("complete settings");

        let (verdict, code) = status_verdict(&number("https://old.example/incoming-call"), &target);

        assert!(
            verdict.contains("`callbridge twilio configure`"),
            "{verdict}"
        );
        assert_eq!(code, ExitCode::from(EXIT_MISMATCH));
    }

    #[test]
    fn status_of_a_number_pointing_here_is_success() {
        let target = target_from(&settings(&complete()), None).expect("complete settings");

        let (verdict, code) = status_verdict(
            &number("https://abc.trycloudflare.com/incoming-call"),
            &target,
        );

        assert!(verdict.starts_with("matches"), "{verdict}");
        assert_eq!(code, ExitCode::SUCCESS);
    }
}
