//! Phone-number configuration through the REST API: finding the account's number and pointing its voice webhook at
//! callbridge (or at the allowlist Function in front of it).
//!
//! Follows <https://www.twilio.com/docs/phone-numbers/api/incomingphonenumber-resource>:
//! - find: `GET /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json?PhoneNumber=%2B15550100` answers
//!   `{"incoming_phone_numbers": [{"sid": "PN...", "phone_number": "+15550100", "voice_url": ..., ...}], ...}`.
//!   The filter also matches partial numbers, so the number is picked by exact equality.
//! - update: `POST /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{PN sid}.json` with the form
//!   `VoiceUrl=...&VoiceMethod=POST` answers the updated resource.
//!
//! A number attached to a TwiML App (`voice_application_sid`) or an Elastic SIP Trunk (`trunk_sid`) ignores its voice
//! URL; [`IncomingPhoneNumber::webhook_status`] says so, and [`voice_url_form`] detaches a TwiML App. The pure parts
//! (parsing, choosing the number, comparing, building the form) are plain functions; the two requests are methods of
//! [`TwilioRest`].

use serde::Deserialize;
use url::Url;

use crate::twilio::rest::{Method, RestError, TwilioRest};
use crate::urls::{INCOMING_CALL_PATH, public_endpoint};

/// The HTTP method callbridge's voice webhook expects (and the one Twilio uses by default).
pub const VOICE_METHOD: &str = "POST";

/// One IncomingPhoneNumber resource, with the fields callbridge reads; Twilio sends many more, which are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IncomingPhoneNumber {
    /// The resource id, `PN` + 32 hex digits; part of the update URL.
    pub sid: String,
    /// The number in E.164, e.g. `+15550100`.
    pub phone_number: String,
    /// The name shown in the Console; Twilio defaults it to a formatted number.
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// The URL Twilio requests when a call comes in; `None` (or empty) when not set.
    #[serde(default)]
    pub voice_url: Option<String>,
    /// The method of that request, `GET` or `POST`; `None` means Twilio's default, `POST`.
    #[serde(default)]
    pub voice_method: Option<String>,
    /// The URL Twilio requests when the voice URL fails.
    #[serde(default)]
    pub voice_fallback_url: Option<String>,
    /// A TwiML App (`AP...`) that handles calls instead of the voice URL, when set.
    #[serde(default)]
    pub voice_application_sid: Option<String>,
    /// An Elastic SIP Trunk (`TK...`) that takes the calls instead of any voice URL or app, when set.
    #[serde(default)]
    pub trunk_sid: Option<String>,
}

/// A page of the IncomingPhoneNumbers list; Twilio's paging fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct IncomingPhoneNumberPage {
    /// The numbers on this page.
    pub incoming_phone_numbers: Vec<IncomingPhoneNumber>,
}

/// Where a number's incoming calls go, compared with a target webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookStatus {
    /// The voice URL is the target and the method is POST, and nothing overrides them.
    Matches,
    /// The voice URL or its method differs from the target.
    Differs,
    /// A TwiML App (its `AP...` sid) handles calls; Twilio ignores the voice URL.
    OverriddenByApplication(String),
    /// An Elastic SIP Trunk (its `TK...` sid) takes the calls; Twilio ignores the voice URL.
    OverriddenByTrunk(String),
}

/// Errors in a voice URL given on the command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoiceUrlError {
    /// Not a URL at all.
    #[error("{text:?} is not a URL ({reason})")]
    Unparsable {
        /// What was given.
        text: String,
        /// Why it does not parse.
        reason: String,
    },
    /// Not `https://` with a host: Twilio Functions are served over https only.
    #[error("{0:?} must be an https:// URL with a host")]
    NotHttps(String),
}

impl IncomingPhoneNumber {
    /// The voice URL, `None` when unset or empty.
    pub fn voice_url(&self) -> Option<&str> {
        nonempty(self.voice_url.as_deref())
    }

    /// The voice method in upper case; Twilio's default `POST` when unset.
    pub fn voice_method(&self) -> String {
        nonempty(self.voice_method.as_deref())
            .unwrap_or(VOICE_METHOD)
            .to_ascii_uppercase()
    }

    /// The TwiML App that overrides the voice URL, if any.
    pub fn voice_application_sid(&self) -> Option<&str> {
        nonempty(self.voice_application_sid.as_deref())
    }

    /// The SIP trunk that overrides the voice URL and app, if any.
    pub fn trunk_sid(&self) -> Option<&str> {
        nonempty(self.trunk_sid.as_deref())
    }

    /// Whether incoming calls reach `target_url` with POST. The URL must match exactly: Twilio requests (and signs)
    /// the URL as stored.
    pub fn webhook_status(&self, target_url: &str) -> WebhookStatus {
        if let Some(trunk) = self.trunk_sid() {
            return WebhookStatus::OverriddenByTrunk(trunk.to_owned());
        }
        if let Some(app) = self.voice_application_sid() {
            return WebhookStatus::OverriddenByApplication(app.to_owned());
        }
        if self.voice_url() == Some(target_url) && self.voice_method() == VOICE_METHOD {
            WebhookStatus::Matches
        } else {
            WebhookStatus::Differs
        }
    }
}

/// Parses a page of the IncomingPhoneNumbers list.
///
/// # Errors
/// The JSON error when the body is not such a page.
pub fn parse_number_page(body: &[u8]) -> Result<IncomingPhoneNumberPage, serde_json::Error> {
    serde_json::from_slice(body)
}

/// The number whose `phone_number` is exactly `phone_number` (E.164), from a list that may also hold partial matches.
pub fn select_number(
    page: IncomingPhoneNumberPage,
    phone_number: &str,
) -> Option<IncomingPhoneNumber> {
    page.incoming_phone_numbers
        .into_iter()
        .find(|number| number.phone_number == phone_number)
}

/// True for a plausible IncomingPhoneNumber sid: `PN` followed by ASCII letters and digits (Twilio uses 32 hex
/// digits). It goes into a URL path, so nothing else is accepted.
pub fn is_phone_number_sid(sid: &str) -> bool {
    sid.strip_prefix("PN").is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// The update form pointing a number at `voice_url` with POST: `[("VoiceUrl", url), ("VoiceMethod", "POST")]`, plus
/// `("VoiceApplicationSid", "")` when `detach_application` (a TwiML App would otherwise keep overriding the URL).
pub fn voice_url_form(voice_url: &str, detach_application: bool) -> Vec<(&'static str, String)> {
    let mut form = vec![
        ("VoiceUrl", voice_url.to_owned()),
        ("VoiceMethod", VOICE_METHOD.to_owned()),
    ];
    if detach_application {
        form.push(("VoiceApplicationSid", String::new()));
    }
    form
}

/// This server's voice webhook: `PUBLIC_URL` + `/incoming-call`, keeping any path prefix.
pub fn incoming_call_url(public_url: &Url) -> String {
    public_endpoint(public_url, INCOMING_CALL_PATH)
}

/// Checks a voice URL given on the command line (the allowlist Function's URL): `https://` with a host.
///
/// # Errors
/// [`VoiceUrlError`] when it does not parse or is not https.
pub fn parse_https_url(text: &str) -> Result<Url, VoiceUrlError> {
    let url = Url::parse(text).map_err(|e| VoiceUrlError::Unparsable {
        text: text.to_owned(),
        reason: e.to_string(),
    })?;
    if url.scheme() != "https" || url.host_str().is_none_or(str::is_empty) {
        return Err(VoiceUrlError::NotHttps(text.to_owned()));
    }
    Ok(url)
}

fn nonempty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.trim().is_empty())
}

impl TwilioRest {
    /// Finds the account's number `phone_number` (E.164):
    /// `GET .../IncomingPhoneNumbers.json?PhoneNumber={phone_number}`. `Ok(None)` when the account has no such
    /// number.
    ///
    /// # Errors
    /// [`RestError::Twilio`] for an error answer (401 / 20003 for refused credentials);
    /// [`RestError::InvalidResponse`] when the list cannot be parsed or the number's sid is not a `PN` sid; timeouts
    /// and network failures.
    pub async fn find_incoming_number(
        &self,
        phone_number: &str,
    ) -> Result<Option<IncomingPhoneNumber>, RestError> {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("PhoneNumber", phone_number)
            .finish();
        let url = self.account_url(&format!("IncomingPhoneNumbers.json?{query}"));
        let page: IncomingPhoneNumberPage = self.send_json(Method::Get, &url, &[]).await?;
        let number = select_number(page, phone_number);
        if let Some(number) = &number
            && !is_phone_number_sid(&number.sid)
        {
            return Err(RestError::InvalidResponse(format!(
                "the number's sid {:?} is not a PN sid",
                number.sid
            )));
        }
        Ok(number)
    }

    /// Points the number `number_sid` (`PN...`) at `voice_url` with POST (and detaches a TwiML App when
    /// `detach_application`): `POST .../IncomingPhoneNumbers/{number_sid}.json` with [`voice_url_form`]. Returns the
    /// updated resource.
    ///
    /// # Errors
    /// [`RestError::InvalidResponse`] when `number_sid` is not a `PN` sid (nothing is sent) or the answer is not a
    /// number; [`RestError::Twilio`] for an error answer; timeouts and network failures.
    pub async fn set_voice_url(
        &self,
        number_sid: &str,
        voice_url: &str,
        detach_application: bool,
    ) -> Result<IncomingPhoneNumber, RestError> {
        if !is_phone_number_sid(number_sid) {
            return Err(RestError::InvalidResponse(format!(
                "{number_sid:?} is not a PN sid"
            )));
        }
        let url = self.account_url(&format!("IncomingPhoneNumbers/{number_sid}.json"));
        let form = voice_url_form(voice_url, detach_application);
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.send_json(Method::Post, &url, &form).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An abridged list answer in the shape of Twilio's documentation example, nulls and extra fields included.
    const LIST: &str = r#"{
        "end": 1,
        "first_page_uri": "/2010-04-01/Accounts/ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX/IncomingPhoneNumbers.json?PhoneNumber=%2B1555010&Page=0&PageSize=50",
        "next_page_uri": null,
        "incoming_phone_numbers": [
            {
                "account_sid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
                "capabilities": {"voice": true, "sms": false, "mms": false, "fax": false},
                "friendly_name": "(555) 010-01",
                "phone_number": "+155501001",
                "sid": "PN11111111111111111111111111111111",
                "voice_url": "https://other.example/voice",
                "voice_method": "GET",
                "voice_application_sid": null,
                "trunk_sid": null
            },
            {
                "account_sid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
                "friendly_name": "Front desk",
                "phone_number": "+1555010",
                "sid": "PN0123456789abcdef0123456789abcdef",
                "voice_url": "https://old.example/incoming-call",
                "voice_method": "POST",
                "voice_fallback_url": null,
                "voice_application_sid": "",
                "trunk_sid": null,
                "status_callback": ""
            }
        ],
        "page": 0,
        "page_size": 50
    }"#;

    fn number(voice_url: Option<&str>, voice_method: Option<&str>) -> IncomingPhoneNumber {
        IncomingPhoneNumber {
            sid: "PN0123456789abcdef0123456789abcdef".to_owned(),
            phone_number: "+15550100".to_owned(),
            friendly_name: None,
            voice_url: voice_url.map(str::to_owned),
            voice_method: voice_method.map(str::to_owned),
            voice_fallback_url: None,
            voice_application_sid: None,
            trunk_sid: None,
        }
    }

    const TARGET: &str = "https://abc.trycloudflare.com/incoming-call";

    #[test]
    fn the_list_answer_parses_with_nulls_and_unknown_fields() {
        let page = parse_number_page(LIST.as_bytes()).expect("a valid list");

        assert_eq!(page.incoming_phone_numbers.len(), 2);
        let front_desk = &page.incoming_phone_numbers[1];
        assert_eq!(front_desk.sid, "PN0123456789abcdef0123456789abcdef");
        assert_eq!(front_desk.friendly_name.as_deref(), Some("Front desk"));
        assert_eq!(
            front_desk.voice_url(),
            Some("https://old.example/incoming-call")
        );
        assert_eq!(front_desk.voice_fallback_url, None);
        assert_eq!(front_desk.voice_application_sid(), None, "empty is unset");
    }

    #[test]
    fn the_number_is_chosen_by_exact_match_among_partial_matches() {
        let page = parse_number_page(LIST.as_bytes()).expect("a valid list");

        let chosen = select_number(page, "+1555010").expect("the exact number is listed");

        assert_eq!(chosen.sid, "PN0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn a_list_without_the_exact_number_finds_none() {
        let empty = parse_number_page(br#"{"incoming_phone_numbers": []}"#).expect("valid");
        let partial = parse_number_page(LIST.as_bytes()).expect("valid");

        assert_eq!(select_number(empty, "+1555010"), None);
        assert_eq!(select_number(partial, "+15550"), None);
    }

    #[test]
    fn a_body_that_is_not_a_list_is_an_error() {
        assert!(parse_number_page(br#"{"sid": "PN1"}"#).is_err());
        assert!(parse_number_page(b"<html>").is_err());
    }

    #[test]
    fn the_form_sets_the_voice_url_with_post() {
        let form = voice_url_form(TARGET, false);

        assert_eq!(
            form,
            vec![
                ("VoiceUrl", TARGET.to_owned()),
                ("VoiceMethod", "POST".to_owned())
            ]
        );
    }

    #[test]
    fn the_form_clears_a_twiml_app_when_asked() {
        let form = voice_url_form(TARGET, true);

        assert_eq!(form.last(), Some(&("VoiceApplicationSid", String::new())));
        assert_eq!(form.len(), 3);
    }

    #[test]
    fn the_form_survives_url_encoding_unchanged() {
        let url = "https://x.example/p?a=1&b=two+three%20";
        let form = voice_url_form(url, false);

        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        let decoded: Vec<(String, String)> = url::form_urlencoded::parse(encoded.as_bytes())
            .into_owned()
            .collect();

        assert_eq!(decoded[0], ("VoiceUrl".to_owned(), url.to_owned()));
    }

    #[test]
    fn a_number_matches_when_url_is_equal_and_method_is_post_in_any_case() {
        assert_eq!(
            number(Some(TARGET), Some("post")).webhook_status(TARGET),
            WebhookStatus::Matches
        );
        assert_eq!(
            number(Some(TARGET), None).webhook_status(TARGET),
            WebhookStatus::Matches,
            "no method means Twilio's default, POST"
        );
    }

    #[test]
    fn a_number_differs_when_url_or_method_differs() {
        assert_eq!(
            number(Some(TARGET), Some("GET")).webhook_status(TARGET),
            WebhookStatus::Differs
        );
        assert_eq!(
            number(Some("https://old.example/incoming-call"), Some("POST")).webhook_status(TARGET),
            WebhookStatus::Differs
        );
        assert_eq!(
            number(Some(&format!("{TARGET}/")), Some("POST")).webhook_status(TARGET),
            WebhookStatus::Differs
        );
        assert_eq!(
            number(Some(""), Some("POST")).webhook_status(TARGET),
            WebhookStatus::Differs
        );
    }

    #[test]
    fn a_twiml_app_or_trunk_overrides_a_matching_url() {
        let mut with_app = number(Some(TARGET), Some("POST"));
        with_app.voice_application_sid = Some("AP0123".to_owned());
        let mut with_trunk = with_app.clone();
        with_trunk.trunk_sid = Some("TK0123".to_owned());

        assert_eq!(
            with_app.webhook_status(TARGET),
            WebhookStatus::OverriddenByApplication("AP0123".to_owned())
        );
        assert_eq!(
            with_trunk.webhook_status(TARGET),
            WebhookStatus::OverriddenByTrunk("TK0123".to_owned())
        );
    }

    #[test]
    fn phone_number_sids_are_pn_and_alphanumerics_only() {
        assert!(is_phone_number_sid("PN0123456789abcdef0123456789abcdef"));
        assert!(!is_phone_number_sid("PN"));
        assert!(!is_phone_number_sid("CA0123456789abcdef0123456789abcdef"));
        assert!(!is_phone_number_sid("PN01/../Calls"));
        assert!(!is_phone_number_sid("PN01?x=1"));
    }

    #[test]
    fn the_incoming_call_url_keeps_the_public_url_prefix() {
        let public_url = Url::parse("https://x.example/voice").expect("valid URL");

        assert_eq!(
            incoming_call_url(&public_url),
            "https://x.example/voice/incoming-call"
        );
    }

    #[test]
    fn a_function_url_must_be_https() {
        assert!(parse_https_url("https://allowlist-1234.twil.io/allowlist").is_ok());
        assert_eq!(
            parse_https_url("http://allowlist-1234.twil.io/allowlist"),
            Err(VoiceUrlError::NotHttps(
                "http://allowlist-1234.twil.io/allowlist".to_owned()
            ))
        );
        assert!(matches!(
            parse_https_url("allowlist.twil.io"),
            Err(VoiceUrlError::Unparsable { .. })
        ));
    }

    proptest! {
        #[test]
        fn an_accepted_sid_is_safe_in_a_url_path(sid in "PN[ -~]{0,40}") {
            let accepted = is_phone_number_sid(&sid);

            prop_assert_eq!(accepted, sid.len() > 2 && sid.bytes().all(|b| b.is_ascii_alphanumeric()));
        }

        #[test]
        fn a_number_matches_exactly_its_own_voice_url(
            current in "https://[ab]\\.example/[ab]{0,2}",
            target in "https://[ab]\\.example/[ab]{0,2}",
        ) {
            let status = number(Some(&current), Some("POST")).webhook_status(&target);

            prop_assert_eq!(status == WebhookStatus::Matches, current == target);
        }
    }
}
