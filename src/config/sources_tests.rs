//! The settings that cannot work, each refused with one exact line naming the setting as it was given; and
//! `check-config`'s spellings and sources.

use std::collections::HashSet;
use std::path::PathBuf;

use super::tests::{env, minimal};
use super::{Requirement, Settings};

/// A settings file with `contents`, in a directory of its own.
fn toml_file(name: &str, contents: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("callbridge-sources-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("callbridge.toml");
    std::fs::write(&path, contents).expect("write toml");
    path
}

/// The error lines `serve` gets for the minimal settings with `pairs` added (replacing same-named ones), the names
/// in `from_dotenv` counted as `.env` lines, and the file `toml` if given.
fn errors(pairs: &[(&str, &str)], from_dotenv: &[&str], toml: Option<&PathBuf>) -> Vec<String> {
    let mut all = minimal();
    all.retain(|(k, _)| !pairs.iter().any(|(name, _)| name == k));
    all.extend_from_slice(pairs);
    let dotenv: HashSet<String> = from_dotenv.iter().map(|n| (*n).to_owned()).collect();
    match Settings::load_with_dotenv(
        &env(&all),
        &dotenv,
        toml.map(PathBuf::as_path),
        Requirement::Serve,
    ) {
        Ok(_) => Vec::new(),
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

/// One row of the bad-settings table: the settings, the names among them that came from `.env`, the exact line.
type BadSetting = (
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
    String,
);

#[test]
fn each_bad_setting_is_refused_with_one_exact_line() {
    let voices = "alloy, ash, ballad, coral, echo, sage, shimmer, verse, marin, cedar";
    let table: Vec<BadSetting> = vec![
        (
            &[("OPENAI_API_KEY", "sk-...")],
            &[],
            "OPENAI_API_KEY is still the example's placeholder \"sk-...\": put your OpenAI API key here \
             (https://platform.openai.com/api-keys)"
                .to_owned(),
        ),
        (
            &[("PUBLIC_URL", "https://your-tunnel.trycloudflare.com")],
            &["PUBLIC_URL"],
            "PUBLIC_URL in .env is still the example's placeholder \"https://your-tunnel.trycloudflare.com\": put \
             your tunnel's https URL here (`make tunnel-quick` prints it), e.g. \
             https://quiet-forest-1234.trycloudflare.com"
                .to_owned(),
        ),
        (
            &[("CALLBRIDGE_API_KEY", "your-key")],
            &[],
            "CALLBRIDGE_API_KEY is still the example's placeholder \"your-key\": put a long random string here \
             (openssl rand -hex 32)"
                .to_owned(),
        ),
        (
            &[("CALLBRIDGE_VOICE", "robot")],
            &[],
            format!("CALLBRIDGE_VOICE is invalid: \"robot\" (OpenAI Realtime's voices are {voices})"),
        ),
        (
            &[("VOICE", "cedr")],
            &[],
            format!("VOICE is invalid: \"cedr\" (did you mean cedar? OpenAI Realtime's voices are {voices})"),
        ),
        (
            &[("PUBLIC_URL", "http://voice.example.com")],
            &[],
            "PUBLIC_URL is invalid: \"http://voice.example.com\" (must be https://: Twilio streams only to wss://; \
             http:// is accepted only for a loopback host such as http://127.0.0.1:5050, for local tests)"
                .to_owned(),
        ),
        (
            &[("CALLBRIDGE_PORT", "abc")],
            &[],
            "CALLBRIDGE_PORT is invalid: \"abc\" (invalid digit found in string)".to_owned(),
        ),
        (
            &[("PORT", "abc")],
            &["PORT"],
            "PORT in .env is invalid: \"abc\" (invalid digit found in string)".to_owned(),
        ),
        (
            &[("TWILIO_PHONE_NUMBER", "555-0100")],
            &[],
            "TWILIO_PHONE_NUMBER is invalid: expected E.164 such as +14155550100, got \"555-0100\"".to_owned(),
        ),
    ];
    for (pairs, from_dotenv, expected) in table {
        assert_eq!(
            errors(pairs, from_dotenv, None),
            vec![expected],
            "{pairs:?}"
        );
    }
}

#[test]
fn a_typo_in_the_settings_file_is_refused_with_the_setting_it_resembles() {
    let path = toml_file("typo", "voise = \"cedar\"\nwhatever_this_is = 1\n");
    assert_eq!(
        errors(&[], &[], Some(&path)),
        vec![
            format!(
                "voise in {} is not a setting (did you mean voice?)",
                path.display()
            ),
            format!(
                "whatever_this_is in {} is not a setting (`callbridge check-config` lists them all)",
                path.display()
            ),
        ]
    );
}

#[test]
fn a_bad_value_in_the_settings_file_is_named_by_its_key_in_the_file() {
    let path = toml_file("bad-port", "port = \"abc\"\n");
    assert_eq!(
        errors(&[], &[], Some(&path)),
        vec![format!(
            "port in {} is invalid: \"abc\" (invalid digit found in string)",
            path.display()
        )]
    );
}

#[test]
fn several_bad_settings_are_each_reported_on_a_line_of_their_own() {
    let lines = errors(
        &[
            ("OPENAI_API_KEY", "sk-..."),
            ("PUBLIC_URL", "https://your-tunnel.trycloudflare.com"),
            ("CALLBRIDGE_VOICE", "robot"),
        ],
        &[],
        None,
    );
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].starts_with("OPENAI_API_KEY is still"),
        "{lines:#?}"
    );
    assert!(lines[1].starts_with("PUBLIC_URL is still"), "{lines:#?}");
    assert!(
        lines[2].starts_with("CALLBRIDGE_VOICE is invalid"),
        "{lines:#?}"
    );
}

#[test]
fn real_looking_values_and_a_loopback_http_public_url_are_accepted() {
    for url in [
        "http://127.0.0.1:5050",
        "http://localhost:5050",
        "http://[::1]:5050",
    ] {
        assert_eq!(
            errors(&[("PUBLIC_URL", url)], &[], None),
            Vec::<String>::new(),
            "{url}"
        );
    }
    assert_eq!(
        errors(
            &[
                ("OPENAI_API_KEY", "sk-proj-Ab3dYourKeyLooksRandom"),
                ("VOICE", "cedar")
            ],
            &[],
            None
        ),
        Vec::<String>::new()
    );
}

#[test]
fn check_config_spells_values_as_documented_and_names_their_source() {
    let path = toml_file(
        "describe",
        "voice = \"sage\"\nnoise_reduction = \"far_field\"\n",
    );
    let mut pairs = minimal();
    pairs.push(("PORT", "6000"));
    pairs.push(("CALLBRIDGE_VAD_THRESHOLD", "0.7"));
    let dotenv: HashSet<String> = ["PORT".to_owned()].into();
    let settings =
        Settings::load_with_dotenv(&env(&pairs), &dotenv, Some(&path), Requirement::Serve)
            .expect("valid");
    let text = settings.describe();
    let line = |key: &str| {
        text.lines()
            .find(|line| line.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} line in\n{text}"))
            .split_whitespace()
            .skip(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("port"), "6000 (.env: PORT)");
    assert_eq!(line("host"), "0.0.0.0 (default)");
    assert_eq!(line("voice"), format!("sage ({})", path.display()));
    assert_eq!(
        line("noise_reduction"),
        format!("far_field ({})", path.display())
    );
    assert_eq!(line("turn_detection"), "server_vad (default)");
    assert_eq!(
        line("vad_threshold"),
        "0.7 (environment: CALLBRIDGE_VAD_THRESHOLD)"
    );
    assert_eq!(line("vad_idle_timeout_ms"), "(none) (default)");
    assert!(
        !text.contains("ServerVad") && !text.contains("FarField"),
        "{text}"
    );
}
