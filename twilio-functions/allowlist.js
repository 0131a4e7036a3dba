/**
 * callbridge layer 1: a Twilio Function that lets only known callers reach callbridge.
 *
 * Point your Twilio number's "A call comes in" at this Function. It normalizes the caller's number (`event.From`)
 * to E.164 and compares it with the Function's environment:
 *
 *   ALLOWED_NUMBERS  comma-separated numbers allowed to call, e.g. "+14155550100, (415) 555-0101, 0044 20 7946 0000"
 *   WEBHOOK_URL      where listed callers go: https://YOUR-PUBLIC-URL/incoming-call
 *
 * A listed caller gets `<Redirect method="POST">WEBHOOK_URL</Redirect>`: Twilio then posts the call to callbridge,
 * signed with X-Twilio-Signature for WEBHOOK_URL, so callbridge's own signature check still holds. Everyone else,
 * anonymous and withheld numbers included, gets `<Reject reason="rejected"/>`: the call is refused before it is
 * answered, at no charge. If WEBHOOK_URL or ALLOWED_NUMBERS is missing or unusable, every caller is rejected and an
 * error is logged (fail closed).
 *
 * Numbers are compared in E.164 (`+` and 2 to 15 digits, the first not 0). Before comparing, both sides are
 * normalized the same way (see `normalizeNumber`):
 *   - spaces, dashes, dots, slashes and parentheses are removed: "+1 (415) 555-0100" -> "+14155550100";
 *   - a trunk prefix written as "(0)" is dropped: "+44 (0)20 7946 0000" -> "+442079460000";
 *   - the international prefix 00 becomes +: "0014155550100" -> "+14155550100";
 *   - a bare 10-digit number, or 11 digits starting with 1, is taken as North American (NANP) and gets +1:
 *     "415 555 0100" and "1-415-555-0100" -> "+14155550100";
 *   - anything else without a + (a national number from another country, "anonymous", a SIP URI) is not a number:
 *     such a caller is rejected, and such an ALLOWED_NUMBERS entry is ignored with a warning.
 * The keypad spellings Twilio and carriers use for withheld caller ID (+266696687 ANONYMOUS, +7378742833 RESTRICTED,
 * +8656696 UNKNOWN, +86282452253 UNAVAILABLE, +2562533 BLOCKED, +7748283 PRIVATE) look like numbers but name nobody:
 * they are always rejected, even when listed.
 *
 * Follows https://www.twilio.com/docs/serverless/functions-assets/functions/invocation (the handler and its
 * callback), https://www.twilio.com/docs/voice/twiml/redirect and https://www.twilio.com/docs/voice/twiml/reject.
 * The Functions runtime provides the global `Twilio` (the `twilio` npm package); the tests set it themselves.
 */

'use strict';

/** E.164: a +, then 2 to 15 digits, the first of them not 0. */
const E164 = /^\+[1-9][0-9]{1,14}$/;

/** Separators people write inside phone numbers; removed before anything else. */
const SEPARATORS = /[\s\-.()/]/g;

/**
 * Caller-ID values that stand for "no number": the keypad spellings of ANONYMOUS, RESTRICTED, UNKNOWN, UNAVAILABLE,
 * BLOCKED and PRIVATE. They are valid E.164 in shape, so they are refused by name.
 */
const WITHHELD_NUMBERS = new Set([
  '+266696687',
  '+7378742833',
  '+8656696',
  '+86282452253',
  '+2562533',
  '+7748283',
]);

/**
 * Normalizes a phone number as written by a person or sent by Twilio to E.164.
 *
 * @param {unknown} raw - e.g. "+14155550100", "(415) 555-0100", "+1 415-555-0100", "0014155550100".
 * @returns {string|null} the E.164 form ("+14155550100"), or null when `raw` is not a string or not a phone number
 *   this Function can place without guessing a country (anything without +, 00 or a NANP shape), or is a withheld
 *   caller-ID value such as "+266696687".
 */
function normalizeNumber(raw) {
  if (typeof raw !== 'string') {
    return null;
  }
  // "+44 (0)20 …": the (0) is the national trunk prefix, which is not dialled after a country code.
  const compact = raw.replace(/\(0\)/g, '').replace(SEPARATORS, '');
  let e164;
  if (compact.startsWith('+')) {
    e164 = compact;
  } else if (compact.startsWith('00')) {
    e164 = `+${compact.slice(2)}`;
  } else if (/^[2-9][0-9]{9}$/.test(compact)) {
    e164 = `+1${compact}`;
  } else if (/^1[2-9][0-9]{9}$/.test(compact)) {
    e164 = `+${compact}`;
  } else {
    return null;
  }
  if (!E164.test(e164) || WITHHELD_NUMBERS.has(e164)) {
    return null;
  }
  return e164;
}

/**
 * Parses ALLOWED_NUMBERS: comma-separated numbers, each normalized with `normalizeNumber`.
 *
 * @param {unknown} raw - the ALLOWED_NUMBERS value, e.g. "+14155550100, (415) 555-0101".
 * @returns {{ allowed: Set<string>, invalid: string[] }} the E.164 numbers, and the entries that are not numbers
 *   (ignored: they allow nobody). Empty entries (a trailing comma) are skipped silently.
 */
function parseAllowedNumbers(raw) {
  const allowed = new Set();
  const invalid = [];
  if (typeof raw !== 'string') {
    return { allowed, invalid };
  }
  for (const entry of raw.split(',')) {
    const trimmed = entry.trim();
    if (trimmed === '') {
      continue;
    }
    const e164 = normalizeNumber(trimmed);
    if (e164 === null) {
      invalid.push(trimmed);
    } else {
      allowed.add(e164);
    }
  }
  return { allowed, invalid };
}

/**
 * Checks WEBHOOK_URL: it must be an absolute https URL (callbridge's public URL + /incoming-call).
 *
 * @param {unknown} raw - the WEBHOOK_URL value.
 * @returns {string|null} the URL as given (trimmed), or null when it is missing or not an https URL.
 */
function parseWebhookUrl(raw) {
  if (typeof raw !== 'string' || raw.trim() === '') {
    return null;
  }
  const trimmed = raw.trim();
  try {
    return new URL(trimmed).protocol === 'https:' ? trimmed : null;
  } catch {
    return null;
  }
}

/**
 * The caller's number for a log line: only its last four digits, to keep callers' numbers out of logs.
 *
 * @param {unknown} from - `event.From` as Twilio sent it.
 * @returns {string} e.g. "…0100", or "(none)".
 */
function maskNumber(from) {
  if (typeof from !== 'string' || from === '') {
    return '(none)';
  }
  return `…${from.slice(-4)}`;
}

/**
 * TwiML that refuses the call before it is answered (no charge): `<Reject reason="rejected"/>`.
 *
 * @returns {object} a `Twilio.twiml.VoiceResponse`.
 */
function rejectResponse() {
  const twiml = new Twilio.twiml.VoiceResponse();
  twiml.reject({ reason: 'rejected' });
  return twiml;
}

/**
 * The Function: redirects listed callers to callbridge and rejects everyone else.
 *
 * @param {{ ALLOWED_NUMBERS?: string, WEBHOOK_URL?: string }} context - the Function's environment variables.
 * @param {{ From?: string }} event - the voice webhook's parameters; only `From` is read.
 * @param {(error: Error|null, response?: object) => void} callback - receives the TwiML (a VoiceResponse); it is
 *   never given an error, because an error would make Twilio play its application-error message and charge the call.
 */
exports.handler = (context, event, callback) => {
  const webhookUrl = parseWebhookUrl(context && context.WEBHOOK_URL);
  const { allowed, invalid } = parseAllowedNumbers(context && context.ALLOWED_NUMBERS);
  if (invalid.length > 0) {
    console.warn(
      `allowlist: ${invalid.length} ALLOWED_NUMBERS entries are not phone numbers and are ignored ` +
        '(use E.164 such as +14155550100, or 00 and the country code)',
    );
  }
  if (webhookUrl === null || allowed.size === 0) {
    console.error(
      'allowlist: rejecting every caller: ' +
        (webhookUrl === null
          ? 'WEBHOOK_URL is missing or not an https URL (set it to https://YOUR-PUBLIC-URL/incoming-call)'
          : 'ALLOWED_NUMBERS lists no valid number (comma-separated E.164, e.g. +14155550100)'),
    );
    callback(null, rejectResponse());
    return;
  }

  const from = event ? event.From : undefined;
  const caller = normalizeNumber(from);
  if (caller === null || !allowed.has(caller)) {
    console.log(`allowlist: rejected a caller not on ALLOWED_NUMBERS (From ${maskNumber(from)})`);
    callback(null, rejectResponse());
    return;
  }

  const twiml = new Twilio.twiml.VoiceResponse();
  twiml.redirect({ method: 'POST' }, webhookUrl);
  callback(null, twiml);
};

// For the tests; the Functions runtime only calls `handler`.
exports.normalizeNumber = normalizeNumber;
exports.parseAllowedNumbers = parseAllowedNumbers;
exports.parseWebhookUrl = parseWebhookUrl;
