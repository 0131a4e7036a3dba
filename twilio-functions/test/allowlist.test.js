// Tests of the allowlist Function, run with Node's built-in test runner (`node --test`).
//
// The TwiML is built by the official `twilio` npm package, exposed as the global `Twilio` as the Functions runtime
// does, and compared with the exact document Twilio receives.

'use strict';

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');

global.Twilio = require('twilio');
const allowlist = require('../allowlist');

const WEBHOOK_URL = 'https://bridge.example.com/incoming-call';
const XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>';
const REJECTED = `${XML_DECLARATION}<Response><Reject reason="rejected"/></Response>`;
const REDIRECTED = `${XML_DECLARATION}<Response><Redirect method="POST">${WEBHOOK_URL}</Redirect></Response>`;

/** Runs the handler as the Functions runtime would and returns the TwiML it answered with and what it logged. */
function invoke(t, context, event) {
  const logs = { error: [], warn: [], log: [] };
  for (const level of Object.keys(logs)) {
    t.mock.method(console, level, (...args) => logs[level].push(args.join(' ')));
  }
  let calls = 0;
  let twiml;
  allowlist.handler(context, event, (error, response) => {
    calls += 1;
    assert.equal(error, null, 'the Function never answers with an error');
    twiml = response.toString();
  });
  assert.equal(calls, 1, 'the callback is called exactly once');
  return { twiml, logs };
}

function context(allowedNumbers, webhookUrl = WEBHOOK_URL) {
  return { ALLOWED_NUMBERS: allowedNumbers, WEBHOOK_URL: webhookUrl };
}

describe('the allowlist Function', () => {
  test('a listed caller is redirected to WEBHOOK_URL with POST', (t) => {
    const { twiml } = invoke(t, context('+14155550100,+442079460000'), { From: '+442079460000' });

    assert.equal(twiml, REDIRECTED);
  });

  test('a caller not on the list is rejected', (t) => {
    const { twiml, logs } = invoke(t, context('+14155550100'), { From: '+14155550199' });

    assert.equal(twiml, REJECTED);
    assert.equal(logs.log.length, 1);
  });

  for (const from of ['anonymous', 'Anonymous', '+266696687', 'Restricted', '+7378742833', 'Unknown', '+8656696',
    'Unavailable', '+86282452253', '+2562533', '', undefined, 'sip:alice@example.com', 'client:alice']) {
    test(`an anonymous or withheld caller (From ${JSON.stringify(from)}) is rejected`, (t) => {
      const { twiml } = invoke(t, context('+14155550100'), { From: from });

      assert.equal(twiml, REJECTED);
    });
  }

  test('a withheld caller-ID value is rejected even when ALLOWED_NUMBERS lists it', (t) => {
    const { twiml } = invoke(t, context('+14155550100, +266696687'), { From: '+266696687' });

    assert.equal(twiml, REJECTED);
  });

  test('a request without any parameters is rejected', (t) => {
    const { twiml } = invoke(t, context('+14155550100'), undefined);

    assert.equal(twiml, REJECTED);
  });

  for (const from of ['(415) 555-0100', '+1 415-555-0100', '0014155550100', '415.555.0100', '1-415-555-0100',
    ' +1 (415) 555 0100 ']) {
    test(`a listed caller whose number arrives as ${JSON.stringify(from)} is redirected`, (t) => {
      const { twiml } = invoke(t, context('+14155550100'), { From: from });

      assert.equal(twiml, REDIRECTED);
    });
  }

  test('ALLOWED_NUMBERS written in local or formatted form matches the E.164 caller', (t) => {
    const allowed = '(415) 555-0100, 0044 20 7946 0000, +33 1.23.45.67.89';

    for (const from of ['+14155550100', '+442079460000', '+33123456789']) {
      assert.equal(invoke(t, context(allowed), { From: from }).twiml, REDIRECTED, from);
    }
    assert.equal(invoke(t, context(allowed), { From: '+14155550101' }).twiml, REJECTED);
  });

  test('a number that differs only in its country code is rejected', (t) => {
    const { twiml } = invoke(t, context('+14155550100'), { From: '+444155550100' });

    assert.equal(twiml, REJECTED);
  });

  test('missing WEBHOOK_URL rejects everyone and logs an error', (t) => {
    const { twiml, logs } = invoke(t, { ALLOWED_NUMBERS: '+14155550100' }, { From: '+14155550100' });

    assert.equal(twiml, REJECTED);
    assert.equal(logs.error.length, 1);
    assert.match(logs.error[0], /WEBHOOK_URL/);
  });

  test('a WEBHOOK_URL that is not https rejects everyone and logs an error', (t) => {
    for (const url of ['http://bridge.example.com/incoming-call', 'bridge.example.com/incoming-call', '  ']) {
      const { twiml, logs } = invoke(t, context('+14155550100', url), { From: '+14155550100' });

      assert.equal(twiml, REJECTED, url);
      assert.match(logs.error.join('\n'), /WEBHOOK_URL/, url);
    }
  });

  test('missing ALLOWED_NUMBERS rejects everyone and logs an error', (t) => {
    const { twiml, logs } = invoke(t, { WEBHOOK_URL }, { From: '+14155550100' });

    assert.equal(twiml, REJECTED);
    assert.equal(logs.error.length, 1);
    assert.match(logs.error[0], /ALLOWED_NUMBERS/);
  });

  test('ALLOWED_NUMBERS with no valid number rejects everyone, warns about the entries and logs an error', (t) => {
    const { twiml, logs } = invoke(t, context('020 7946 0000, anonymous, ,'), { From: '+442079460000' });

    assert.equal(twiml, REJECTED);
    assert.match(logs.warn.join('\n'), /2 ALLOWED_NUMBERS entries/);
    assert.match(logs.error.join('\n'), /ALLOWED_NUMBERS/);
  });

  test('an invalid ALLOWED_NUMBERS entry does not stop the valid ones', (t) => {
    const { twiml, logs } = invoke(t, context('not-a-number, +14155550100'), { From: '+14155550100' });

    assert.equal(twiml, REDIRECTED);
    assert.equal(logs.warn.length, 1);
    assert.equal(logs.error.length, 0);
  });

  test('a WEBHOOK_URL with a query string is XML-escaped in the Redirect', (t) => {
    const url = 'https://bridge.example.com/incoming-call?a=1&b=2';

    const { twiml } = invoke(t, context('+14155550100', url), { From: '+14155550100' });

    assert.equal(
      twiml,
      `${XML_DECLARATION}<Response><Redirect method="POST">https://bridge.example.com/incoming-call?a=1&amp;b=2` +
        '</Redirect></Response>',
    );
  });

  test("a rejected caller's full number never reaches the log", (t) => {
    const { logs } = invoke(t, context('+14155550100'), { From: '+14155550199' });

    const all = [...logs.log, ...logs.warn, ...logs.error].join('\n');
    assert.doesNotMatch(all, /4155550199/);
    assert.match(all, /0199/);
  });
});

describe('normalizeNumber', () => {
  const cases = [
    ['+14155550100', '+14155550100'],
    ['(415) 555-0100', '+14155550100'],
    ['+1 415-555-0100', '+14155550100'],
    ['0014155550100', '+14155550100'],
    ['415.555.0100', '+14155550100'],
    ['1 415 555 0100', '+14155550100'],
    ['00 44 20 7946 0000', '+442079460000'],
    ['+44 (0)20 7946 0000', '+442079460000'], // the trunk prefix (0) is not dialled after the country code
    ['020 7946 0000', null], // a national number without a country code
    ['5550100', null], // 7 digits: no area code
    ['0155550100', null], // 10 digits that cannot be a NANP area code
    ['+0123456789', null], // E.164 country codes do not start with 0
    ['+1234567890123456', null], // 16 digits: longer than E.164 allows
    ['+1', null],
    ['+', null],
    ['', null],
    ['anonymous', null],
    ['+266696687', null],
    ['+1-415-555-0100x12', null],
    [undefined, null],
    [null, null],
    [14155550100, null],
    [['+14155550100'], null],
  ];
  for (const [raw, expected] of cases) {
    test(`normalizes ${JSON.stringify(raw)} to ${JSON.stringify(expected)}`, () => {
      assert.equal(allowlist.normalizeNumber(raw), expected);
    });
  }
});

describe('parseAllowedNumbers', () => {
  test('splits on commas, trims, normalizes, drops duplicates and reports entries that are not numbers', () => {
    const { allowed, invalid } = allowlist.parseAllowedNumbers(' +14155550100 ,(415) 555-0100,, junk ,0033123456789');

    assert.deepEqual([...allowed], ['+14155550100', '+33123456789']);
    assert.deepEqual(invalid, ['junk']);
  });

  test('a value that is not a string allows nobody', () => {
    const { allowed, invalid } = allowlist.parseAllowedNumbers(undefined);

    assert.equal(allowed.size, 0);
    assert.deepEqual(invalid, []);
  });
});
