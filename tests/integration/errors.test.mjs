// Every reachable error row of the API contract, with its exact status, type, code and param,
// `x-should-retry: false` on 400/401/403/404 and `x-request-id` everywhere: authentication
// (missing, malformed, unknown, wrong type, expired, deactivated, deleted keys; CLI changes must
// reach the running gateway within 1 s), request validation, unknown models, the body limit, and
// upstream failures (error status, invalid JSON, hang past the timeout, connection refused).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
// How long a CLI change may take to reach the running gateway: 1 s in the contract, plus a little
// for process scheduling (and the slowdown of sanitizer builds).
const PROPAGATION_MS = 1000 + h.scaled(500);
let gw, account, key, billingKey;

before(async () => {
    gw = await h.startGateway({
        config: {
            // Each fault has its own model: a deployment that failed max_attempts times cools down
            // (routing.test.mjs tests that), and must not turn the next test's 502 into a 503.
            models: {
                'err-500': { pricing: { input: 1, output: 1 },
                    deployments: [{ provider: 'mock', model: 'e500-upstream' }] },
                'err-500-stream': { pricing: { input: 1, output: 1 },
                    deployments: [{ provider: 'mock', model: 'e500s-upstream' }] },
                'err-json': { pricing: { input: 1, output: 1 },
                    deployments: [{ provider: 'mock', model: 'ejson-upstream' }] },
                'err-400': { pricing: { input: 1, output: 1 },
                    deployments: [{ provider: 'mock', model: 'e400-upstream' }] },
            },
        },
        setup: async (g) => {
            account = await g.createAccount('errors', 100);
            key = await g.createKey(account);
            billingKey = await g.createKey(account, { type: 'billing' });
        },
    });
});
after(async () => { await gw?.stop(); });

const HELLO = { model: 'echo-1', messages: [{ role: 'user', content: 'hi' }] };
const chatWith = (headers, body = HELLO) =>
    h.request(gw, 'POST', '/v1/chat/completions', { headers, body });
const chat = (body, k = key) => h.post(gw, '/v1/chat/completions', k, body);

// --- authentication -------------------------------------------------------------------------

test('no Authorization header: 401 missing_api_key', T, async () => {
    const res = await chatWith({});
    h.assertError(assert, res, 401, 'authentication_error', 'missing_api_key');
});

test('Authorization that is not "Bearer <key>": 401 missing_api_key', T, async () => {
    for (const value of [`Basic ${Buffer.from('u:p').toString('base64')}`, 'Bearer', 'Bearer ', key]) {
        const res = await chatWith({ authorization: value });
        h.assertError(assert, res, 401, 'authentication_error', 'missing_api_key');
    }
});

test('unknown or malformed key: 401 invalid_api_key "Invalid API key"', T, async () => {
    for (const k of [h.fakeKey('ms-'), 'ms-short', 'sk-' + 'a'.repeat(40), key.toUpperCase(),
        key.slice(0, -1)]) {
        const res = await chatWith({ authorization: `Bearer ${k}` });
        h.assertError(assert, res, 401, 'invalid_request_error', 'invalid_api_key');
        assert.equal(res.json.error.message, 'Invalid API key');
        assert.ok(!res.text.includes(k), 'the error must not echo the key');
    }
});

test('a billing key (mk-) on /v1/: 403 wrong_key_type', T, async () => {
    const res = await chat(HELLO, billingKey);
    h.assertError(assert, res, 403, 'permission_error', 'wrong_key_type');
    const models = await h.get(gw, '/v1/models', billingKey);
    h.assertError(assert, models, 403, 'permission_error', 'wrong_key_type');
});

test('a proxy key (ms-) on /api/: 403 wrong_key_type; a billing key works there', T, async () => {
    const res = await h.get(gw, '/api/balance', key);
    h.assertError(assert, res, 403, 'permission_error', 'wrong_key_type');
    const ok = await h.get(gw, '/api/balance', billingKey);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(typeof ok.json.balance, 'number');
    const missing = await h.get(gw, '/api/keys/999999', billingKey);
    h.assertError(assert, missing, 404, 'not_found_error', 'not_found');
});

test('an expired key: 401 expired_api_key', T, async () => {
    // Expires 3-4 s from now, on a whole second (so any ISO 8601 parser reads it).
    const at = new Date(Math.ceil((Date.now() + 3000) / 1000) * 1000);
    const k = await gw.createKey(account, { expires: at.toISOString().replace(/\.\d{3}Z$/, 'Z') });
    await gw.waitKeyKnown(k);
    assert.ok(Date.now() < at.getTime() - 200, 'the key took too long to reach the gateway');
    const first = await chat(HELLO, k);
    assert.equal(first.status, 200, `before expiry: ${first.text}`);
    await h.sleep(Math.max(0, at.getTime() - Date.now()) + 100);
    const { value: res, elapsed } = await h.eventually(async () => {
        const r = await chat(HELLO, k);
        return r.status === 401 ? r : null;
    }, 1000);
    assert.ok(res, `still accepted ${elapsed} ms after expiry`);
    h.assertError(assert, res, 401, 'authentication_error', 'expired_api_key');
});

test('deactivate -> 403 key_deactivated within 1 s; activate -> works again', T, async () => {
    const k = await gw.createKey(account, { name: 'toggle' });
    const id = await gw.keyId(account, k);
    await gw.waitKeyKnown(k);
    assert.equal((await chat(HELLO, k)).status, 200);

    await gw.cli(['key', 'deactivate', id]);
    const off = await h.eventually(async () => {
        const r = await chat(HELLO, k);
        return r.status !== 200 ? r : null;
    }, PROPAGATION_MS);
    assert.ok(off.value, `deactivation not seen after ${off.elapsed} ms`);
    h.assertError(assert, off.value, 403, 'permission_error', 'key_deactivated');

    await gw.cli(['key', 'activate', id]);
    const on = await h.eventually(async () => (await chat(HELLO, k)).status === 200, PROPAGATION_MS);
    assert.ok(on.value, `reactivation not seen after ${on.elapsed} ms`);
});

test('delete -> 401 invalid_api_key within 1 s, for good', T, async () => {
    const k = await gw.createKey(account, { name: 'doomed' });
    const id = await gw.keyId(account, k);
    await gw.waitKeyKnown(k);
    assert.equal((await chat(HELLO, k)).status, 200);
    await gw.cli(['key', 'delete', id]);
    const gone = await h.eventually(async () => {
        const r = await chat(HELLO, k);
        return r.status !== 200 ? r : null;
    }, PROPAGATION_MS);
    assert.ok(gone.value, `deletion not seen after ${gone.elapsed} ms`);
    h.assertError(assert, gone.value, 401, 'invalid_request_error', 'invalid_api_key');
    // Reactivating a deleted key is not possible.
    await gw.cli(['key', 'activate', id], { allowFail: true });
    await h.sleep(PROPAGATION_MS);
    h.assertError(assert, await chat(HELLO, k), 401, 'invalid_request_error', 'invalid_api_key');
});

test('a key created while the gateway runs works within 1 s', T, async () => {
    const k = await gw.createKey(account, { name: 'fresh' });
    const r = await h.eventually(async () => (await chat(HELLO, k)).status === 200, PROPAGATION_MS);
    assert.ok(r.value, `new key not accepted after ${r.elapsed} ms`);
});

// --- request validation ---------------------------------------------------------------------

const invalid = (body) => h.post(gw, '/v1/chat/completions', key, body);

test('a body that is not JSON: 400 invalid_json', T, async () => {
    for (const body of ['{"model":', 'not json', '', '{"model":"echo-1",}', '\u0000']) {
        const res = await invalid(body);
        h.assertError(assert, res, 400, 'invalid_request_error', 'invalid_json');
    }
});

test('a JSON body that is not an object: 400 invalid_json', T, async () => {
    for (const body of ['[1,2]', '"text"', '42', 'null', 'true']) {
        const res = await invalid(body);
        h.assertError(assert, res, 400, 'invalid_request_error', 'invalid_json');
    }
});

test('missing model / messages: 400 missing_required_parameter naming the field', T, async () => {
    h.assertError(assert, await invalid({ messages: HELLO.messages }), 400,
        'invalid_request_error', 'missing_required_parameter', 'model');
    h.assertError(assert, await invalid({ model: 'echo-1' }), 400,
        'invalid_request_error', 'missing_required_parameter', 'messages');
});

test('fields of the wrong type or out of range: 400 invalid_parameter naming the field', T, async () => {
    const cases = [
        [{ ...HELLO, model: 5 }, 'model'],
        [{ ...HELLO, messages: 'x' }, 'messages'],
        [{ ...HELLO, stream: 'yes' }, 'stream'],
        [{ ...HELLO, max_tokens: -1 }, 'max_tokens'],
        [{ ...HELLO, max_tokens: 'x' }, 'max_tokens'],
        [{ ...HELLO, max_tokens: 1.5 }, 'max_tokens'],
        [{ ...HELLO, n: 0 }, 'n'],
        [{ ...HELLO, n: 129 }, 'n'],
        [{ ...HELLO, n: 1.5 }, 'n'],
        [{ ...HELLO, n: '2' }, 'n'],
    ];
    for (const [body, param] of cases) {
        const res = await invalid(body);
        h.assertError(assert, res, 400, 'invalid_request_error', 'invalid_parameter', param);
    }
});

test('an unknown model: 404 model_not_found', T, async () => {
    for (const model of ['no-such-model']) {
        const res = await invalid({ ...HELLO, model });
        h.assertError(assert, res, 404, 'not_found_error', 'model_not_found', null, { paramAlt: 'model' });
        const emb = await h.post(gw, '/v1/embeddings', key, { model, input: 'x' });
        h.assertError(assert, emb, 404, 'not_found_error', 'model_not_found', null, { paramAlt: 'model' });
    }
});

test('a model whose only provider has no API key: 503 provider_not_configured naming the variable', T, async () => {
    // ghost-model's provider takes its key from ${MODELSWITCH_TEST_UNSET_KEY_9F2C:-}, unset here
    for (const [p, body] of [['/v1/chat/completions', { ...HELLO, model: 'ghost-model' }],
        ['/v1/embeddings', { model: 'ghost-model', input: 'x' }]]) {
        const res = await h.post(gw, p, key, body);
        h.assertError(assert, res, 503, 'service_unavailable_error', 'provider_not_configured', 'model');
        assert.match(res.json.error.message, /ghost-model.*'disabled'.*MODELSWITCH_TEST_UNSET_KEY_9F2C/);
        assert.equal(res.headers.get('x-should-retry'), 'false', 'only the operator can fix it');
        assert.ok(res.headers.get('retry-after'), '503 carries retry-after');
    }
    // and the operator was told at start-up, in one line
    const lines = gw.stderr.split('\n').filter((l) => l.includes('models not served'));
    assert.equal(lines.length, 1, gw.stderr.slice(0, 2000));
    assert.match(lines[0], /ghost-model \(provider disabled: set MODELSWITCH_TEST_UNSET_KEY_9F2C\)/);
});

test('a body over server.max_body_bytes: 413 request_too_large', T, async () => {
    const max = gw.config.server.max_body_bytes;
    const body = JSON.stringify({ ...HELLO, pad: 'x'.repeat(max) });
    const c = await h.RawConn.open(gw.port);
    try {
        c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
        c.write(body);
        const [res] = await c.readResponses(1);
        assert.equal(res.status, 413, res.text);
        const e = JSON.parse(res.text).error;
        assert.deepEqual([e.type, e.code], ['invalid_request_error', 'request_too_large']);
        assert.ok(res.headers['x-request-id']);
    } finally {
        c.destroy();
    }
    // A body of exactly the limit is accepted.
    const fit = JSON.stringify({ ...HELLO, pad: '' });
    const exact = fit.replace('"pad":""', `"pad":"${'y'.repeat(max - fit.length)}"`);
    assert.equal(Buffer.byteLength(exact), max);
    const ok = await invalid(exact);
    assert.equal(ok.status, 200, ok.text.slice(0, 300));
});

// --- upstream failures ----------------------------------------------------------------------

test('upstream 500: 502 provider_error carrying the upstream message', T, async () => {
    const res = await invalid({ model: 'err-500', messages: HELLO.messages,
        mock: { status: 500, error_message: 'the mock upstream exploded' } });
    h.assertError(assert, res, 502, 'upstream_error', 'provider_error');
    assert.match(res.json.error.message, /the mock upstream exploded/);
    assert.ok(!res.text.includes('sk-upstream-test'), 'the provider key must not leak');
});

test('upstream 500 on a stream request (before the first event): 502 provider_error', T, async () => {
    const res = await invalid({ model: 'err-500-stream', stream: true, messages: HELLO.messages,
        mock: { status: 500, error_message: 'stream refused upstream' } });
    h.assertError(assert, res, 502, 'upstream_error', 'provider_error');
    assert.match(res.json.error.message, /stream refused upstream/);
});

test('upstream 400: the client gets an error carrying the upstream message', T, async () => {
    const res = await invalid({ model: 'err-400', messages: HELLO.messages,
        mock: { status: 400, error_message: 'upstream says the request is bad' } });
    assert.ok(res.status >= 400 && res.status < 600 && res.status !== 200, res.text);
    assert.match(res.json?.error?.message ?? '', /upstream says the request is bad/);
});

test('upstream answers invalid JSON: 502 provider_error', T, async () => {
    const res = await invalid({ model: 'err-json', messages: HELLO.messages, mock: { invalid_json: true } });
    h.assertError(assert, res, 502, 'upstream_error', 'provider_error');
});

test('upstream hangs past the provider timeout_ms: 504 upstream_timeout', T, async () => {
    const t0 = Date.now();
    const res = await invalid({ model: 'mock-timeout', messages: HELLO.messages, mock: { hang: true } });
    h.assertError(assert, res, 504, 'timeout_error', 'upstream_timeout');
    const took = Date.now() - t0;
    assert.ok(took >= 900, `answered after ${took} ms, before the 1000 ms timeout`);
});

test('upstream connection refused: 502 provider_error', T, async () => {
    const res = await invalid({ model: 'dead-model', messages: HELLO.messages });
    h.assertError(assert, res, 502, 'upstream_error', 'provider_error');
});

test('x-request-id is unique per response', T, async () => {
    const ids = new Set();
    for (let i = 0; i < 5; i++) {
        const ok = await chat(HELLO);
        const bad = await chatWith({});
        ids.add(ok.headers.get('x-request-id'));
        ids.add(bad.headers.get('x-request-id'));
    }
    assert.equal(ids.size, 10);
});
