// POST /v1/messages/count_tokens (src/api/count_tokens.c, docs/DIALECTS.md): the Anthropic
// provider's own count where the model has an Anthropic deployment in service, else the gateway's
// estimate (the body's bytes / 4, rounded up) marked by x-modelswitch-estimate. Against the mock's
// Anthropic personality, whose count is the words of the prompt (or mock.input_tokens), never
// near bytes / 4, so every test can tell who answered. What went upstream is read back from the
// mock's recording. This file owns its gateway's lifetime: the last test drains it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const ANT_KEY = 'sk-ant-count-test-0123456789';
const PRICING = { input: 3, output: 15 };
const CT = '/v1/messages/count_tokens';
let gw, ant, key, billingKey, slowKey, deadPort;

before(async () => {
    deadPort = await h.closedPort();
    gw = await h.startGatewayWithMocks({
        mocks: 1,
        config: ([m]) => ({
            server: { drain_timeout_ms: h.scaled(4000) },
            providers: {
                anth: { kind: 'anthropic', base_url: m.url, api_key: ANT_KEY, timeout_ms: 10000 },
                anthslow: { kind: 'anthropic', base_url: m.url, api_key: ANT_KEY, timeout_ms: 1000 },
                anthdead: { kind: 'anthropic', base_url: `http://127.0.0.1:${deadPort}`, api_key: ANT_KEY,
                    timeout_ms: 2000 },
            },
            models: {
                'claude-ct': { pricing: PRICING, deployments: [{ provider: 'anth', model: 'claude-up-ct' }] },
                'claude-slow': { pricing: PRICING, deployments: [{ provider: 'anthslow', model: 'claude-up-slow' }] },
                'claude-dead': { pricing: PRICING, deployments: [{ provider: 'anthdead', model: 'claude-up-dead' }] },
                // served first by an OpenAI deployment: the count still comes from the Anthropic one
                'claude-mixed': { pricing: PRICING, deployments: [
                    { provider: 'mock', model: 'gpt-mixed', priority: 1 },
                    { provider: 'anth', model: 'claude-up-mixed', priority: 2 }] },
            },
        }),
        setup: async (g) => {
            const account = await g.createAccount('ct', 100);
            key = await g.createKey(account);
            billingKey = await g.createKey(account, { type: 'billing' });
            // two requests a minute: the third count in a row is over the key's limit
            const r = await g.cli(['key', 'create', '--account', account, '--rpm', '2']);
            slowKey = r.stdout.trim().split('\n').at(-1).trim();
            assert.match(slowKey, /^ms-/);
        },
    });
    ant = gw.mocks[0];
});
after(async () => { await gw?.stop(); });

const ANT_H = { 'anthropic-version': '2023-06-01' };
const count = (body, { k = key, headers = ANT_H } = {}) =>
    h.post(gw, CT, undefined, body, { headers: { 'x-api-key': k, ...headers } });
const ask = (model, extra = {}) => ({
    model, system: 'be brief', messages: [{ role: 'user', content: 'count these five words please' }], ...extra,
});
const estimateOf = (body) => Math.ceil(Buffer.byteLength(JSON.stringify(body)) / 4);

async function lastCount() {
    const reqs = await ant.requestsTo(CT);
    assert.ok(reqs.length > 0, 'the mock received no count_tokens request');
    return reqs.at(-1);
}

/** The Anthropic error envelope with the contract's status and code. */
function assertEnvelope(res, status, type, code) {
    assert.equal(res.status, status, res.text);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal(res.json?.type, 'error', res.text);
    assert.equal(res.json.error.type, type, res.text);
    assert.equal(res.json.error.code, code, res.text);
    assert.ok(res.json.error.message.length > 0);
}

function assertEstimate(res, body, reason) {
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, { input_tokens: estimateOf(body) });
    assert.equal(res.headers.get('x-modelswitch-estimate'), 'true');
    assert.equal(res.headers.get('x-modelswitch-estimate-reason'), reason);
}

test("the provider's count passes through: model spliced, the provider's key, no estimate header", T, async () => {
    await ant.clear();
    const body = ask('claude-ct');
    const res = await count(body);
    assert.equal(res.status, 200, res.text);
    // the mock counts words: 2 of the system prompt, 5 of the message; bytes / 4 is far more
    assert.equal(res.text, '{"input_tokens":7}');
    assert.notEqual(estimateOf(body), 7);
    assert.equal(res.headers.get('x-modelswitch-estimate'), null);
    assert.equal(res.headers.get('x-modelswitch-provider'), 'anth');
    assert.equal(res.headers.get('x-modelswitch-model'), 'claude-ct');
    assert.ok(res.headers.get('x-ratelimit-limit-requests'), 'rate-limit headers on every /v1/ answer');
    const rec = await lastCount();
    assert.equal(rec.path, CT);
    assert.equal(rec.body, JSON.stringify(body).replace('"claude-ct"', '"claude-up-ct"'));
    assert.equal(h.recordedHeader(rec, 'x-api-key'), ANT_KEY);
    assert.equal(h.recordedHeader(rec, 'authorization'), undefined);
    assert.equal(h.recordedHeader(rec, 'content-type'), 'application/json');
    for (const [k, v] of Object.entries(rec.headers)) {
        assert.ok(!String(v).includes(key), `the client's key leaked upstream in ${k}`);
    }
    // the provider's own figure, whatever it is
    const forced = await count(ask('claude-ct', { mock: { input_tokens: 4242 } }));
    assert.equal(forced.json.input_tokens, 4242);
});

test('only model is spliced: the rest of the body goes byte for byte, escapes and spacing kept', T, async () => {
    await ant.clear();
    const raw = '{ "messages" : [{"role":"user","content":"caf\\u00e9 \\"q\\""}],\n "tools":[],' +
        ' "model" : "claude-ct", "thinking": {"type":"enabled","budget_tokens":1024}}';
    const res = await h.post(gw, CT, undefined, raw, { headers: { 'x-api-key': key, ...ANT_H } });
    assert.equal(res.status, 200, res.text);
    assert.equal((await lastCount()).body, raw.replace('"claude-ct"', '"claude-up-ct"'));
});

test('anthropic-version and anthropic-beta are forwarded as /v1/messages forwards them', T, async () => {
    await ant.clear();
    const res = await count(ask('claude-ct'), {
        headers: { 'anthropic-version': '2099-12-31', 'anthropic-beta': 'token-counting-2024-11-01,files-api' },
    });
    assert.equal(res.status, 200, res.text);
    const rec = await lastCount();
    assert.equal(h.recordedHeader(rec, 'anthropic-version'), '2099-12-31');
    assert.equal(h.recordedHeader(rec, 'anthropic-beta'), 'token-counting-2024-11-01,files-api');
    // none from the client: the adapter's default version (the mock refuses a request without
    // one), and no beta
    const plain = await count(ask('claude-ct'), { headers: {} });
    assert.equal(plain.status, 200, plain.text);
    const rec2 = await lastCount();
    assert.equal(h.recordedHeader(rec2, 'anthropic-version'), '2023-06-01');
    assert.equal(h.recordedHeader(rec2, 'anthropic-beta'), undefined);
});

test('a model with no Anthropic deployment gets the estimate; nothing goes upstream', T, async () => {
    await ant.clear();
    for (const model of ['mock-model', 'echo-1']) {
        const body = ask(model);
        const res = await count(body);
        assertEstimate(res, body, 'no_provider_count');
        assert.equal(res.headers.get('x-modelswitch-model'), model);
        assert.ok(res.headers.get('x-ratelimit-limit-requests'));
    }
    assert.equal((await ant.requests()).length, 0, 'an estimate asked the provider');
});

test('an Anthropic deployment of lower priority still counts', T, async () => {
    await ant.clear();
    const res = await count(ask('claude-mixed'));
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.input_tokens, 7);
    assert.equal(res.headers.get('x-modelswitch-provider'), 'anth');
    assert.match((await lastCount()).body, /"model":"claude-up-mixed"/);
});

test("a provider's 4xx is the contract's 502 in Anthropic's envelope, with its message, not retried", T, async () => {
    await ant.clear();
    const res = await count(ask('claude-ct', { mock: { status: 400, error_message: 'messages: bad block' } }));
    assertEnvelope(res, 502, 'api_error', 'provider_error');
    assert.match(res.json.error.message, /anth.*400.*messages: bad block/);
    assert.equal(res.headers.get('x-should-retry'), 'false');
    assert.equal(res.headers.get('x-modelswitch-estimate'), null);
    assert.equal((await ant.requestsTo(CT)).length, 1, 'one attempt');
    // a provider that refuses its own key: the key never reaches the client
    const auth = await count(ask('claude-ct', { mock: { status: 401, error_message: `bad key ${ANT_KEY}` } }));
    assertEnvelope(auth, 502, 'api_error', 'provider_error');
    assert.ok(!auth.text.includes(ANT_KEY), auth.text);
    assert.match(auth.json.error.message, /\[redacted\]/);
});

test('a provider that cannot answer (5xx, 429, 529, an invalid answer) gives the estimate', T, async () => {
    for (const mock of [{ status: 500 }, { status: 503 }, { status: 429 }, { status: 529 }, { invalid_json: true }]) {
        await ant.clear();
        const body = ask('claude-ct', { mock });
        const res = await count(body);
        assertEstimate(res, body, 'provider_unavailable');
        assert.equal((await ant.requestsTo(CT)).length, 1, `${JSON.stringify(mock)}: one attempt, no retry`);
    }
});

test('an unreachable or slow provider gives the estimate', T, async () => {
    const dead = ask('claude-dead');
    assertEstimate(await count(dead), dead, 'provider_unavailable');
    // the provider's own timeout (1 s) bounds the wait
    await ant.clear();
    const slow = ask('claude-slow', { mock: { delay_ms: 5000 } });
    assertEstimate(await count(slow), slow, 'provider_unavailable');
    assert.equal((await ant.requestsTo(CT)).length, 1);
});

test('nothing is held or billed: no usage row, the balance untouched', T, async () => {
    const before = await h.balanceNano(gw, billingKey);
    const ids = [];
    for (const body of [ask('claude-ct'), ask('mock-model'), ask('claude-ct', { mock: { status: 500 } })]) {
        const res = await count(body);
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('x-modelswitch-cost'), null);
        ids.push(res.headers.get('x-request-id'));
    }
    // a billed request after them: once its row is in, theirs would be too
    const msg = await h.post(gw, '/v1/messages', undefined,
        { model: 'claude-ct', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] },
        { headers: { 'x-api-key': key, ...ANT_H } });
    assert.equal(msg.status, 200, msg.text);
    const cost = h.usdToNano(msg.headers.get('x-modelswitch-cost'));
    assert.ok(cost > 0n);
    const { value: rows } = await h.eventually(async () => {
        const r = await h.usageRows(gw, billingKey);
        return r.length >= 1 ? r : null;
    }, h.scaled(5000));
    assert.ok(rows, 'the billed request never reached the ledger');
    assert.equal(rows.length, 1, JSON.stringify(rows));
    assert.equal(rows[0].requestId, msg.headers.get('x-request-id'));
    assert.ok(!ids.includes(rows[0].requestId));
    assert.equal(await h.balanceNano(gw, billingKey), before - cost);
});

test("a count asked of the provider costs one of the key's requests per minute; over it, the estimate", T, async () => {
    await ant.clear();
    // estimates ask nobody and cost nothing
    for (let i = 0; i < 3; i++) assert.equal((await count(ask('mock-model'), { k: slowKey })).status, 200);
    const a = await count(ask('claude-ct'), { k: slowKey });
    const b = await count(ask('claude-ct'), { k: slowKey });
    assert.equal(a.json.input_tokens, 7, a.text);
    assert.equal(b.json.input_tokens, 7, b.text);
    assert.equal(b.headers.get('x-ratelimit-remaining-requests'), '0');
    const body = ask('claude-ct');
    const c = await count(body, { k: slowKey });
    assertEstimate(c, body, 'rate_limited');
    assert.equal((await ant.requestsTo(CT)).length, 2, 'over the limit, the provider was asked');
    // the same limit as /v1/messages: the counts used it up
    const msg = await h.post(gw, '/v1/messages', undefined,
        { model: 'claude-ct', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] },
        { headers: { 'x-api-key': slowKey, ...ANT_H } });
    assertEnvelope(msg, 429, 'rate_limit_error', 'rate_limit_exceeded');
});

test('refusals before anything runs: bad key 401, bad body 400, unknown model 404, all in the envelope', T, async () => {
    await ant.clear();
    assertEnvelope(await count(ask('claude-ct'), { k: h.fakeKey() }), 401, 'authentication_error', 'invalid_api_key');
    const none = await h.post(gw, CT, undefined, ask('claude-ct'), { headers: ANT_H });
    assertEnvelope(none, 401, 'authentication_error', 'missing_api_key');
    const noMsgs = await count({ model: 'claude-ct' });
    assertEnvelope(noMsgs, 400, 'invalid_request_error', 'missing_required_parameter');
    assert.equal(noMsgs.json.error.param, 'messages');
    assertEnvelope(await count('{"model":', {}), 400, 'invalid_request_error', 'invalid_json');
    assertEnvelope(await count(ask('no-such-model')), 404, 'not_found_error', 'model_not_found');
    assert.equal((await ant.requests()).length, 0);
});

test('the access log names the provider, its time and the status', T, async () => {
    const res = await count(ask('claude-ct'));
    assert.equal(res.status, 200);
    const line = await gw.waitForLog(res.headers.get('x-request-id'));
    assert.equal(line.path, CT);
    assert.equal(line.status, 200);
    assert.equal(line.model, 'claude-ct');
    assert.equal(line.provider, 'anth');
    assert.equal(typeof line.upstream_ms, 'number');
    const est = await count(ask('mock-model'));
    const eline = await gw.waitForLog(est.headers.get('x-request-id'));
    assert.equal(eline.provider, null);
    assert.equal(eline.upstream_ms, null);
});

test('a client that leaves mid-count cancels it; the gateway goes on serving', T, async () => {
    await ant.clear();
    const ac = new AbortController();
    const gone = fetch(gw.base + CT, {
        method: 'POST', signal: ac.signal,
        headers: { 'x-api-key': key, 'content-type': 'application/json', ...ANT_H },
        body: JSON.stringify(ask('claude-ct', { mock: { hang: true } })),
    }).catch((e) => e);
    const sent = await h.eventually(async () => (await ant.requestsTo(CT)).length === 1, h.scaled(5000));
    assert.ok(sent.value, 'the count never reached the provider');
    ac.abort();
    assert.ok((await gone) instanceof Error);
    const { value: line } = await h.eventually(
        () => gw.accessLog().find((l) => l.path === CT && l.status === 499), h.scaled(5000));
    assert.ok(line, 'no access line for the abandoned count');
    assert.equal(line.provider, 'anth');
    const res = await count(ask('claude-ct'));
    assert.equal(res.json.input_tokens, 7, res.text);
});

test('draining: a count in flight is answered, one that hangs is cut at the drain timeout, exit 0', T, async () => {
    await ant.clear();
    const slow = count(ask('claude-ct', { mock: { delay_ms: 300 } }));
    const hung = count(ask('claude-ct', { mock: { hang: true } })).catch((e) => e);
    const sent = await h.eventually(async () => (await ant.requestsTo(CT)).length === 2, h.scaled(5000));
    assert.ok(sent.value, 'the counts never reached the provider');
    const exited = gw.signalAndWait('SIGTERM', h.scaled(15000));
    const res = await slow;
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.input_tokens, 7);
    assert.ok((await hung) instanceof Error, 'the hung count was answered');
    assert.deepEqual(await exited, { code: 0, signal: null });
    h.checkSanitizerReports(gw.stderr, 'gateway');
});
