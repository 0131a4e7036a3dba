//! The estimated cost of a call, on its two meters: the OpenAI Realtime tokens its responses used (from
//! `response.done.response.usage`, summed in [`Usage`]) plus any per-minute price of the model and of the input
//! transcription model, and the Twilio minutes of the call.
//!
//! Default prices, in US dollars, as published on 2026-11-30 ([`PRICES_AS_OF`]):
//! - OpenAI, per 1M tokens (text input / cached input / output; audio input / cached input / output), from the model
//!   pages <https://developers.openai.com/api/docs/models/gpt-realtime-2.1>,
//!   <https://developers.openai.com/api/docs/models/gpt-realtime-2.1-mini>,
//!   <https://developers.openai.com/api/docs/models/gpt-realtime-2> and
//!   <https://developers.openai.com/api/docs/models/gpt-realtime-1.5> (pricing: <https://openai.com/api/pricing>);
//!   per minute of audio for the transcription models `gpt-transcribe` ($0.0045,
//!   <https://developers.openai.com/api/docs/models/gpt-transcribe>) and `gpt-live-transcribe` ($0.017,
//!   <https://developers.openai.com/api/docs/models/gpt-live-transcribe>).
//! - Twilio, per minute, United States: $0.0085 to receive a call on a local number and $0.013 to make one
//!   (<https://www.twilio.com/en-us/voice/pricing/us>, as quoted in
//!   <https://support.twilio.com/hc/en-us/articles/223183328-How-Volume-Pricing-works-at-Twilio>). Twilio bills
//!   every started minute.
//!
//! Every price can be overridden in the settings ([`PriceTable::apply_override`]); a model may carry a per-minute
//! price as well as token prices (an engine that bills by the minute). Cached input tokens are split between text and
//! audio in proportion to the input tokens of each kind (the usage reports only their total). The result is an
//! estimate: it ignores volume discounts, taxes, per-number fees and answering machine detection.

use serde::{Deserialize, Serialize};

use crate::realtime::usage::Usage;

/// When the default prices were read from the pages cited in the module docs.
pub const PRICES_AS_OF: &str = "2026-11-30";
/// Twilio's price per minute to receive a call on a US local number, USD.
pub const DEFAULT_TWILIO_INBOUND_PER_MIN_USD: f64 = 0.0085;
/// Twilio's price per minute to make a call to a US number, USD.
pub const DEFAULT_TWILIO_OUTBOUND_PER_MIN_USD: f64 = 0.013;

/// A model's prices, USD: per 1M tokens of each kind, and per minute of call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// Text input tokens, per 1M.
    pub text_in: f64,
    /// Cached text input tokens, per 1M.
    pub text_cached_in: f64,
    /// Text output tokens, per 1M.
    pub text_out: f64,
    /// Audio input tokens, per 1M.
    pub audio_in: f64,
    /// Cached audio input tokens, per 1M.
    pub audio_cached_in: f64,
    /// Audio output tokens, per 1M.
    pub audio_out: f64,
    /// Per minute of call, whatever the tokens (a transcription model, an engine billed by the minute).
    pub per_min: f64,
}

/// Token prices per 1M: text in, cached in, out; audio in, cached in, out.
const fn tokens(text: [f64; 3], audio: [f64; 3]) -> ModelPrice {
    ModelPrice {
        text_in: text[0],
        text_cached_in: text[1],
        text_out: text[2],
        audio_in: audio[0],
        audio_cached_in: audio[1],
        audio_out: audio[2],
        per_min: 0.0,
    }
}

/// A per-minute price only.
const fn per_minute(per_min: f64) -> ModelPrice {
    ModelPrice {
        text_in: 0.0,
        text_cached_in: 0.0,
        text_out: 0.0,
        audio_in: 0.0,
        audio_cached_in: 0.0,
        audio_out: 0.0,
        per_min,
    }
}

/// The built-in price table (see the module docs for the pages and the date).
pub const DEFAULT_MODEL_PRICES: &[(&str, ModelPrice)] = &[
    (
        "gpt-realtime-2.1",
        tokens([4.0, 0.40, 24.0], [32.0, 0.40, 64.0]),
    ),
    (
        "gpt-realtime-2.1-mini",
        tokens([0.60, 0.06, 2.40], [10.0, 0.30, 20.0]),
    ),
    (
        "gpt-realtime-2",
        tokens([4.0, 0.40, 24.0], [32.0, 0.40, 64.0]),
    ),
    (
        "gpt-realtime-1.5",
        tokens([4.0, 0.40, 16.0], [32.0, 0.40, 64.0]),
    ),
    ("gpt-transcribe", per_minute(0.0045)),
    ("gpt-live-transcribe", per_minute(0.017)),
    // GPT-Live bills per active minute (about $0.05): <https://developers.openai.com/api/docs/models/gpt-live-1>.
    ("gpt-live-1", per_minute(0.05)),
    ("gpt-live-1.1", per_minute(0.05)),
];

/// The prices in force: the models' and Twilio's per-minute prices.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    /// Prices by model name (a dated snapshot `name-2026-...` takes its model's price).
    models: Vec<(String, ModelPrice)>,
    /// Twilio's price per minute of an inbound call, USD.
    pub twilio_inbound_per_min_usd: f64,
    /// Twilio's price per minute of an outbound call, USD.
    pub twilio_outbound_per_min_usd: f64,
}

impl Default for PriceTable {
    fn default() -> Self {
        PriceTable {
            models: DEFAULT_MODEL_PRICES
                .iter()
                .map(|(name, price)| ((*name).to_owned(), *price))
                .collect(),
            twilio_inbound_per_min_usd: DEFAULT_TWILIO_INBOUND_PER_MIN_USD,
            twilio_outbound_per_min_usd: DEFAULT_TWILIO_OUTBOUND_PER_MIN_USD,
        }
    }
}

impl PriceTable {
    /// The price of `model`, or of the model it is a dated snapshot of (`gpt-realtime-2.1-2026-10-01`).
    pub fn price(&self, model: &str) -> Option<ModelPrice> {
        self.models
            .iter()
            .find(|(name, _)| {
                model == name
                    || model
                        .strip_prefix(name.as_str())
                        .is_some_and(|rest| rest.starts_with("-20"))
            })
            .map(|(_, price)| *price)
    }

    /// Applies one override, `model:key=value key=value ...` (keys `text_in`, `text_cached_in`, `text_out`,
    /// `audio_in`, `audio_cached_in`, `audio_out`, per 1M tokens, and `per_min`, per minute; USD). A known model
    /// keeps the prices not named; a new one starts at zero.
    ///
    /// # Errors
    /// A line saying what is wrong: no `model:`, an unknown key, a value that is not a non-negative number.
    pub fn apply_override(&mut self, item: &str) -> Result<(), String> {
        let (model, prices) = item
            .split_once(':')
            .map(|(model, prices)| (model.trim(), prices.trim()))
            .filter(|(model, _)| !model.is_empty())
            .ok_or_else(|| format!("{item:?} is not model:key=value ..."))?;
        let mut price = self.price(model).unwrap_or_default();
        for pair in prices.split_whitespace() {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} in {model:?} is not key=value"))?;
            let value: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("{pair:?} in {model:?}: the price must be a number >= 0"))?;
            let slot = match key {
                "text_in" => &mut price.text_in,
                "text_cached_in" => &mut price.text_cached_in,
                "text_out" => &mut price.text_out,
                "audio_in" => &mut price.audio_in,
                "audio_cached_in" => &mut price.audio_cached_in,
                "audio_out" => &mut price.audio_out,
                "per_min" => &mut price.per_min,
                other => {
                    return Err(format!(
                        "{other:?} in {model:?} is not a price (use text_in, text_cached_in, text_out, audio_in, \
                         audio_cached_in, audio_out or per_min)"
                    ));
                }
            };
            *slot = value;
        }
        self.models.retain(|(name, _)| name != model);
        self.models.insert(0, (model.to_owned(), price));
        Ok(())
    }

    /// The rates of one call: its Realtime `model`, its input `transcription` model (if any) and its direction.
    pub fn rates(&self, model: &str, transcription: Option<&str>, inbound: bool) -> CallRates {
        CallRates {
            model: model.to_owned(),
            model_price: self.price(model),
            transcription_per_min_usd: transcription
                .and_then(|t| self.price(t))
                .map_or(0.0, |p| p.per_min),
            twilio_per_min_usd: if inbound {
                self.twilio_inbound_per_min_usd
            } else {
                self.twilio_outbound_per_min_usd
            },
        }
    }
}

/// What one call pays, per unit: the prices of its model, its transcription model and its Twilio minutes.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRates {
    /// The Realtime model.
    pub model: String,
    /// Its prices; `None` when the table does not know it (its tokens then cost nothing in the estimate).
    pub model_price: Option<ModelPrice>,
    /// The input transcription model's price per minute of call, USD.
    pub transcription_per_min_usd: f64,
    /// Twilio's price per started minute, USD.
    pub twilio_per_min_usd: f64,
}

/// A call's estimated cost, USD, rounded to millionths of a dollar, as `get_call` and the call record show it:
/// `{"total_usd":0.185,"openai_usd":0.1616,"transcription_usd":0.00675,"twilio_usd":0.017,"model":"gpt-realtime-2.1",
/// "model_priced":true,"prices_as_of":"2026-11-30"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallCost {
    /// The sum of the three meters.
    pub total_usd: f64,
    /// The Realtime model: its tokens, and its per-minute price if it has one.
    pub openai_usd: f64,
    /// The input transcription model, per minute of call.
    pub transcription_usd: f64,
    /// Twilio's minutes (every started minute).
    pub twilio_usd: f64,
    /// The Realtime model the tokens were priced for.
    pub model: String,
    /// False when the price table does not know the model (its tokens are not counted).
    pub model_priced: bool,
    /// The date of the built-in prices ([`PRICES_AS_OF`]).
    pub prices_as_of: String,
}

impl CallRates {
    /// The estimated cost of `usage` over a call of `duration_ms`.
    pub fn estimate(&self, usage: &Usage, duration_ms: u64) -> CallCost {
        let minutes = duration_ms as f64 / 60_000.0;
        let started_minutes = duration_ms.div_ceil(60_000) as f64;
        // A per-minute model (GPT-Live) bills the active minutes it reported, else the call's minutes.
        let model_minutes = if usage.live_active_seconds > 0 {
            usage.live_active_seconds as f64 / 60.0
        } else {
            minutes
        };
        let openai = self.model_price.map_or(0.0, |price| {
            token_cost(&price, usage) + price.per_min * model_minutes
        });
        let transcription = self.transcription_per_min_usd * minutes;
        let twilio = self.twilio_per_min_usd * started_minutes;
        CallCost {
            total_usd: round_usd(openai + transcription + twilio),
            openai_usd: round_usd(openai),
            transcription_usd: round_usd(transcription),
            twilio_usd: round_usd(twilio),
            model: self.model.clone(),
            model_priced: self.model_price.is_some(),
            prices_as_of: PRICES_AS_OF.to_owned(),
        }
    }
}

/// The tokens of `usage` at `price`, USD (cached input split between text and audio by their share of the input).
fn token_cost(price: &ModelPrice, usage: &Usage) -> f64 {
    let input = &usage.input_token_details;
    let output = &usage.output_token_details;
    let text_in = input.text_tokens as f64;
    let audio_in = input.audio_tokens as f64;
    let cached = (input.cached_tokens as f64).min(text_in + audio_in);
    let audio_share = if text_in + audio_in > 0.0 {
        audio_in / (text_in + audio_in)
    } else {
        0.0
    };
    let cached_audio = cached * audio_share;
    let cached_text = cached - cached_audio;
    let per_token = (text_in - cached_text) * price.text_in
        + cached_text * price.text_cached_in
        + (audio_in - cached_audio) * price.audio_in
        + cached_audio * price.audio_cached_in
        + output.text_tokens as f64 * price.text_out
        + output.audio_tokens as f64 * price.audio_out;
    per_token / 1_000_000.0
}

/// Rounds to millionths of a dollar.
fn round_usd(usd: f64) -> f64 {
    (usd * 1_000_000.0).round() / 1_000_000.0
}

#[cfg(test)]
#[path = "cost_tests.rs"]
mod tests;
