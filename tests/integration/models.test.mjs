// The model list (/v1/models, /v1/models/{id}) with prices, /healthz, and the route table's
// answers to unknown routes (404 not_found) and wrong methods (405 with Allow). owned_by is the
// provider kind of the model's first usable deployment (one whose provider is enabled).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
let gw, key;

// Providers of every kind, never called: /v1/models only reads the config. The closed port (9)
// makes a mistaken call fail at once instead of reaching anything.
const OFFLINE = 'http://127.0.0.1:9';
const PROVIDERS = {
    claude: { kind: 'anthropic', base_url: OFFLINE, api_key: 'sk-test' },
    gem: { kind: 'gemini', base_url: OFFLINE, api_key: 'sk-test' },
    az: { kind: 'azure', base_url: `${OFFLINE}/openai`, api_key: 'sk-test' },
    // disabled (its key resolves to ""): its deployments are not usable
    claude_off: { kind: 'anthropic', base_url: OFFLINE, api_key: '${MODELSWITCH_TEST_UNSET_KEY_9F2C:-}' },
};
const MODELS = {
    'claude-x': { pricing: { input: 3, output: 15 }, deployments: [{ provider: 'claude', model: 'c' }] },
    'gemini-x': { pricing: { input: 1, output: 2 }, deployments: [{ provider: 'gem', model: 'g' }] },
    'azure-x': { pricing: { input: 1, output: 2 }, deployments: [{ provider: 'az', model: 'a' }] },
    // several deployments: the first one that is usable names the owner
    'multi-x': {
        pricing: { input: 1, output: 2 },
        deployments: [
            { provider: 'gem', model: 'g' },
            { provider: 'mock', model: 'mock-upstream-model' },
            { provider: 'claude', model: 'c' },
        ],
    },
    'skip-disabled-x': {
        pricing: { input: 1, output: 2 },
        deployments: [
            { provider: 'claude_off', model: 'c' },
            { provider: 'disabled', model: 'ghost-upstream' },
            { provider: 'az', model: 'a' },
            { provider: 'mock', model: 'mock-upstream-model' },
        ],
    },
};
const OWNER = {
    'mock-model': 'openai',
    'mock-embed': 'openai',
    'mock-timeout': 'openai',
    'dead-model': 'openai',
    'echo-1': 'echo',
    'echo-embed-1': 'echo',
    'claude-x': 'anthropic',
    'gemini-x': 'gemini',
    'azure-x': 'azure',
    'multi-x': 'gemini',
    'skip-disabled-x': 'azure',
};

before(async () => {
    gw = await h.startGateway({
        config: { billing: { markup_percent: 0 }, providers: PROVIDERS, models: MODELS },
        setup: async (g) => { ({ key } = await g.newProxyKey(100)); },
    });
});
after(async () => { await gw?.stop(); });

const ENABLED = Object.keys(OWNER);

function assertModelEntry(m) {
    assert.equal(typeof m.id, 'string');
    assert.equal(m.object, 'model');
    assert.equal(typeof m.created, 'number');
    assert.ok(Number.isInteger(m.created) && m.created > 1600000000, `created ${m.created}`);
    assert.equal(typeof m.owned_by, 'string');
    assert.equal(typeof m.pricing, 'object');
    assert.equal(typeof m.pricing.input, 'number');
    assert.equal(typeof m.pricing.output, 'number');
    assert.equal(m.pricing.unit, 'USD per 1M tokens');
}

test('GET /healthz answers 200 without a key', T, async () => {
    const res = await h.get(gw, '/healthz');
    assert.equal(res.status, 200, res.text);
    assert.ok(res.headers.get('x-request-id'), 'x-request-id on /healthz');
});

test('GET /v1/models lists exactly the models with an enabled deployment, with prices', T, async () => {
    const res = await h.get(gw, '/v1/models', key);
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.ok(res.headers.get('x-request-id'));
    assert.equal(res.json.object, 'list');
    assert.ok(Array.isArray(res.json.data));
    res.json.data.forEach(assertModelEntry);
    const ids = res.json.data.map((m) => m.id).sort();
    assert.deepEqual(ids, [...ENABLED].sort(), 'ghost-model (disabled provider) must not be listed');
    const byId = Object.fromEntries(res.json.data.map((m) => [m.id, m]));
    assert.equal(byId['mock-model'].pricing.input, 2.5);
    assert.equal(byId['mock-model'].pricing.output, 10);
    assert.equal(byId['echo-1'].pricing.input, 0.1);
    assert.equal(byId['echo-1'].pricing.output, 0.2);
    assert.equal(byId['echo-embed-1'].pricing.output, 0);
});

test('owned_by is the provider kind of the first usable deployment', T, async () => {
    const res = await h.get(gw, '/v1/models', key);
    assert.equal(res.status, 200, res.text);
    const got = Object.fromEntries(res.json.data.map((m) => [m.id, m.owned_by]));
    assert.deepEqual(got, OWNER);
    for (const [id, owner] of Object.entries(OWNER)) {
        const one = await h.get(gw, `/v1/models/${id}`, key);
        assert.equal(one.status, 200, `${id}: ${one.text}`);
        assert.equal(one.json.owned_by, owner, id);
    }
});

test('GET /v1/models/{id} answers one entry', T, async () => {
    const res = await h.get(gw, '/v1/models/echo-1', key);
    assert.equal(res.status, 200, res.text);
    assertModelEntry(res.json);
    assert.equal(res.json.id, 'echo-1');
    assert.equal(res.json.owned_by, 'echo');
    assert.equal(res.json.pricing.input, 0.1);
});

test('GET /v1/models/{id} of an unknown or disabled model is 404 model_not_found', T, async () => {
    for (const id of ['no-such-model', 'ghost-model']) {
        const res = await h.get(gw, `/v1/models/${id}`, key);
        h.assertError(assert, res, 404, 'not_found_error', 'model_not_found', null, { paramAlt: 'model' });
    }
});

test('GET /v1/models needs a proxy key', T, async () => {
    const res = await h.get(gw, '/v1/models');
    h.assertError(assert, res, 401, 'authentication_error', 'missing_api_key');
});

test('unknown routes are 404 not_found with x-request-id', T, async () => {
    for (const p of ['/v1/nope', '/v1/chat/completions/extra', '/nope']) {
        const res = await h.get(gw, p, key);
        h.assertError(assert, res, 404, 'not_found_error', 'not_found');
    }
});

test('known route, wrong method: 405 method_not_allowed with Allow', T, async () => {
    const cases = [
        ['GET', '/v1/chat/completions', 'POST'],
        ['PUT', '/v1/embeddings', 'POST'],
        ['POST', '/v1/models', 'GET'],
    ];
    for (const [method, p, allow] of cases) {
        const res = await h.request(gw, method, p, { key, body: method === 'GET' ? undefined : '{}' });
        assert.equal(res.status, 405, `${method} ${p}: ${res.text}`);
        assert.equal(res.json?.error?.type, 'invalid_request_error');
        assert.equal(res.json?.error?.code, 'method_not_allowed');
        assert.ok(res.headers.get('x-request-id'));
        const got = (res.headers.get('allow') ?? '').split(',').map((s) => s.trim());
        assert.ok(got.includes(allow), `${method} ${p}: Allow "${res.headers.get('allow')}" lacks ${allow}`);
        assert.ok(!got.includes(method), `${method} ${p}: Allow lists ${method}`);
    }
});
