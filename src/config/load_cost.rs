//! The cost section: the price table (built-in prices, `CALLBRIDGE_MODEL_PRICES` overrides, Twilio's per-minute
//! prices), the per-call cost cap and the daily cost budget, read like the rest of [`super`]: one line per invalid
//! value.

use super::nonempty;
use crate::config::CostSettings;
use crate::config::keys::{ListOrCsv, Raw};

/// The price table (built-in prices, `CALLBRIDGE_MODEL_PRICES` overrides, Twilio's per-minute prices), the per-call
/// cost cap and the daily cost budget; every price and limit is a number of dollars, at least 0.
pub(super) fn cost(errors: &mut Vec<String>, raw: &mut Raw) -> CostSettings {
    let mut prices = crate::cost::PriceTable::default();
    for item in raw
        .model_prices
        .take()
        .map(ListOrCsv::into_vec)
        .unwrap_or_default()
    {
        if let Err(e) = prices.apply_override(&item) {
            errors.push(format!("CALLBRIDGE_MODEL_PRICES is invalid: {e}"));
        }
    }
    let mut usd = |name: &str, value: Option<String>| -> Option<f64> {
        let text = nonempty(value)?;
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Some(v),
            _ => {
                errors.push(format!(
                    "{name} is invalid: {text:?} (a number of US dollars, at least 0)"
                ));
                None
            }
        }
    };
    if let Some(v) = usd(
        "CALLBRIDGE_TWILIO_INBOUND_PRICE_PER_MIN_USD",
        raw.twilio_inbound_price_per_min_usd.take(),
    ) {
        prices.twilio_inbound_per_min_usd = v;
    }
    if let Some(v) = usd(
        "CALLBRIDGE_TWILIO_OUTBOUND_PRICE_PER_MIN_USD",
        raw.twilio_outbound_price_per_min_usd.take(),
    ) {
        prices.twilio_outbound_per_min_usd = v;
    }
    let max_call_cost_usd = usd("CALLBRIDGE_MAX_CALL_COST_USD", raw.max_call_cost_usd.take());
    let daily_cost_budget_usd = usd(
        "CALLBRIDGE_DAILY_COST_BUDGET_USD",
        raw.daily_cost_budget_usd.take(),
    );
    CostSettings {
        prices,
        max_call_cost_usd,
        daily_cost_budget_usd,
    }
}
