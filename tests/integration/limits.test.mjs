// Money and limits at the API: the balance hold (403 insufficient_balance before anything goes
// upstream), settlement to the provider's usage, a key's spend limit (403 spend_limit_reached) and
// the per-key request rate limit (429 rate_limit_exceeded with retry-after headers).
// tests/integration/billing.test.mjs covers billing in depth (streams, disconnects, concurrency).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const RPM = 8;
let gw;

before(async () => {
    gw = await h.startGateway({ config: { limits: { requests_per_minute: RPM } } });
});
after(async () => { await gw?.stop(); });

const MSG = [{ role: 'user', content: 'hi' }];

/** An account made while the gateway runs, once both its key and its balance are known to it. */
async function newAccount(balance, opts = {}) {
    const account = await gw.createAccount('limits', balance);
    const key = await gw.createKey(account, opts);
    const billing = await gw.createKey(account, { type: 'billing' });
    await gw.waitKeyKnown(key);
    await gw.waitKeyKnown(billing);
    const want = h.usdToNano(String(balance));
    const r = await h.eventually(async () => {
        const b = await h.get(gw, '/api/balance', billing);
        return b.status === 200 && h.usdToNano(b.json.balance) === want;
    }, h.scaled(3000), 50);
    assert.ok(r.value, `the new account's balance never showed on /api/balance`);
    return { account, key, billing };
}

test('a hold the balance cannot cover: 403 insufficient_balance, nothing sent upstream', T, async () => {
    // 0.001 USD; mock-model costs 10 USD per 1M output tokens, so a 4096-token cap needs ~0.04.
    const { key } = await newAccount(0.001);
    await gw.mock.clear();
    for (const body of [
        { model: 'mock-model', messages: MSG, max_tokens: 4000 },
        { model: 'mock-model', messages: MSG }, // the hold uses the model's output cap (4096)
    ]) {
        const res = await h.post(gw, '/v1/chat/completions', key, body);
        h.assertError(assert, res, 403, 'permission_error', 'insufficient_balance');
    }
    assert.equal((await gw.mock.requestsTo('/chat/completions')).length, 0,
        'a refused request must not reach the upstream');
    // A small max_tokens fits in the balance.
    const ok = await h.post(gw, '/v1/chat/completions', key,
        { model: 'mock-model', messages: MSG, max_tokens: 5 });
    assert.equal(ok.status, 200, ok.text);
});

test('a zero balance refuses even the cheapest request', T, async () => {
    const { key } = await newAccount(0);
    const res = await h.post(gw, '/v1/chat/completions', key,
        { model: 'echo-1', messages: MSG, max_tokens: 1 });
    h.assertError(assert, res, 403, 'permission_error', 'insufficient_balance');
});

test('the balance is charged exactly the provider-reported usage at list price', T, async () => {
    const { key, billing } = await newAccount(100);
    const res = await h.post(gw, '/v1/chat/completions', key, {
        model: 'mock-model', messages: MSG, max_tokens: 100, mock: { chunks: 3, prompt_tokens: 11 },
    });
    assert.equal(res.status, 200, res.text);
    // 11 x 2.5 / 1e6 + 3 x 10 / 1e6 = 0.0000575 USD
    const want = 100000000000n - (11n * 2500n + 3n * 10000n);
    assert.equal(h.usdToNano(res.headers.get('x-modelswitch-cost') ?? 'none'), 57500n, 'x-modelswitch-cost');
    assert.equal(await h.balanceNano(gw, billing), want);
});

test('a failed request costs nothing (the hold is released)', T, async () => {
    // The balance is exactly the hold of the request sent after the failure.
    const okBody = JSON.stringify({ model: 'mock-model', messages: MSG, max_tokens: 100 });
    const balance = h.holdNano(gw, okBody);
    const { key, billing } = await newAccount(h.nanoToUsd(balance));
    const res = await h.post(gw, '/v1/chat/completions', key,
        { model: 'dead-model', messages: MSG, max_tokens: 10 });
    assert.equal(res.status, 502, res.text);
    assert.equal(await h.balanceNano(gw, billing), balance);
    const ok = await h.post(gw, '/v1/chat/completions', key, okBody);
    assert.equal(ok.status, 200, `the failed request's hold must be free again: ${ok.text}`);
});

test("a key's spend limit: 403 spend_limit_reached once used up", T, async () => {
    // The limit covers the hold of one request plus the charges of two, so exactly two pass.
    const body = JSON.stringify({
        model: 'mock-model', messages: MSG, max_tokens: 3, mock: { chunks: 3, prompt_tokens: 11 },
    });
    const hold = h.holdNano(gw, body);
    const charge = 57500n;
    const { key } = await newAccount(100, { spendLimit: h.nanoToUsd(hold + charge + charge / 2n) });
    const statuses = [];
    let refused = null;
    for (let i = 0; i < 4 && !refused; i++) {
        const res = await h.post(gw, '/v1/chat/completions', key, body);
        statuses.push(res.status);
        if (res.status !== 200) refused = res;
    }
    assert.deepEqual(statuses, [200, 200, 403],
        `two requests fit the limit, the third does not (refused: ${refused?.text})`);
    h.assertError(assert, refused, 403, 'permission_error', 'spend_limit_reached');
});

test('the request rate limit: 429 rate_limit_exceeded with retry-after headers', T, async () => {
    // newAccount polled /v1/models with the key: some requests may be counted already
    const { key } = await newAccount(100);
    const statuses = [];
    let limited = null;
    let lastOk = null;
    for (let i = 0; i < RPM + 2; i++) {
        const res = await h.post(gw, '/v1/chat/completions', key, { model: 'echo-1', messages: MSG });
        statuses.push(res.status);
        if (res.status === 429) { limited = res; break; }
        if (res.status === 200) lastOk = res;
    }
    assert.ok(limited, `no 429 within ${RPM + 2} requests at rpm ${RPM}: ${statuses}`);
    assert.ok(statuses.filter((s) => s === 200).length >= RPM - 1, `statuses ${statuses}`);
    h.assertError(assert, limited, 429, 'rate_limit_error', 'rate_limit_exceeded');
    assert.match(limited.headers.get('retry-after') ?? '', /^\d+$/, 'retry-after in seconds');
    assert.match(limited.headers.get('retry-after-ms') ?? '', /^\d+$/, 'retry-after-ms');
    assert.ok(Number(limited.headers.get('retry-after-ms')) <= 60000);
    assert.equal(lastOk.headers.get('x-ratelimit-limit-requests'), String(RPM));
    assert.equal(limited.headers.get('x-ratelimit-remaining-requests'), '0');
    // Other keys are not affected.
    const other = await newAccount(100);
    const res = await h.post(gw, '/v1/chat/completions', other.key, { model: 'echo-1', messages: MSG });
    assert.equal(res.status, 200, res.text);
});
