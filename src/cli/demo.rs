//! `callbridge demo`: runs [`crate::demo::run`] (the real server, a local stand-in for OpenAI Realtime and a simulated
//! Twilio call with a barge-in, all on loopback) and prints the call's timeline and its stored record.
//!
//! Every line that comes from the stand-in is marked `stand-in (not OpenAI)`.
//!
//! Exit codes: 0 the call completed with a barge-in and a goodbye, and its record was stored; 1 it did not (each
//! problem is printed) or the demo could not run.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::demo::{DemoOptions, DemoReport, Side};

use super::calls::render_call;
use super::output::{emit, printable};

/// Exit code: the demo could not run, or the call did not go as scripted.
const EXIT_FAILED: u8 = 1;

/// The label of the stand-in's timeline lines.
pub const STANDIN_LABEL: &str = "stand-in (not OpenAI)";
/// The label of the simulated Twilio's timeline lines.
pub const TWILIO_LABEL: &str = "simulated Twilio";

/// Arguments of `callbridge demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the call record in DIR/callbridge.db (`callbridge calls` reads it with CALLBRIDGE_DATA_DIR=DIR)
    /// [default: a temporary directory, removed afterwards].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Save what the assistant said as a WAV file (8 kHz, 16-bit PCM).
    #[arg(long, value_name = "FILE")]
    pub save_audio: Option<PathBuf>,
}

/// Runs `callbridge demo`; see the module docs for the exit codes.
pub async fn run(args: DemoArgs) -> ExitCode {
    eprintln!(
        "callbridge demo: one call, all on this machine: no Twilio account, no OpenAI key, no network.\n\
         OpenAI's side is a local stand-in (it is NOT OpenAI): synthesized speech shipped with callbridge, speech \
         detected by energy.\nTwilio's side is `callbridge simulate`'s engine. The call takes about 15 s..."
    );
    let options = DemoOptions {
        data_dir: args.data_dir,
        save_audio: args.save_audio,
    };
    match crate::demo::run(options).await {
        Ok(report) => {
            let problems = report.problems();
            let _ = emit(&render(&report, &problems));
            if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILED)
            }
        }
        Err(error) => {
            eprintln!("callbridge demo: {error:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// The whole printout: the set-up, the timeline, the timings, the stored record and the verdict.
pub fn render(report: &DemoReport, problems: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Server       {} (the real callbridge server)",
        report.server_url
    );
    let _ = writeln!(
        out,
        "Realtime URL {} (the local stand-in: not OpenAI)",
        report.standin_url
    );
    let stored = if report.database_kept {
        "kept"
    } else {
        "temporary, removed; --data-dir DIR keeps it"
    };
    let _ = writeln!(out, "Records      {} ({stored})", report.database.display());
    let _ = writeln!(out, "\nTimeline (s from the webhook):");
    for (at, side, line) in &report.timeline {
        let label = match side {
            Side::Twilio => TWILIO_LABEL,
            Side::StandIn => STANDIN_LABEL,
        };
        let _ = writeln!(
            out,
            "  {:>6.3}  {label:<21}  {}",
            at.as_secs_f64(),
            printable(line)
        );
    }
    let sim = &report.simulation;
    let _ = writeln!(out, "\nTimings:");
    let ms = |d: Option<std::time::Duration>| {
        d.map_or_else(|| "none".to_owned(), |d| format!("{} ms", d.as_millis()))
    };
    let _ = writeln!(
        out,
        "  webhook → TwiML:                {} ms",
        sim.webhook_to_twiml.as_millis()
    );
    let _ = writeln!(
        out,
        "  start → first assistant audio:  {}",
        ms(sim.start_to_first_audio)
    );
    let _ = writeln!(
        out,
        "  barge-in → clear:               {}",
        ms(sim.barge_in_to_clear)
    );
    let _ = writeln!(
        out,
        "  assistant audio:                {} ms received, {} ms played",
        sim.assistant_audio_ms, sim.assistant_played_ms
    );
    if let Some(path) = &sim.saved_audio {
        let _ = writeln!(out, "  assistant audio saved to {}", path.display());
    }
    let _ = writeln!(
        out,
        "\nStored record (as `callbridge calls show` prints it):"
    );
    match &report.record {
        Some(record) => {
            for line in render_call(record).lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        None => out.push_str("  (not found)\n"),
    }
    if problems.is_empty() {
        out.push_str(
            "\nThe call completed: the caller talked over the assistant, the assistant's turn was cut at what \
             the caller heard, and the goodbye ended the call.\nWith a Twilio number and an OpenAI key, the \
             Quick start in README.md runs the same call for real.\n",
        );
    } else {
        out.push_str("\nThe demo call did not go as scripted:\n");
        for problem in problems {
            let _ = writeln!(out, "  - {problem}");
        }
    }
    out
}
