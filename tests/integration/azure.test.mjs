// The `azure` provider kind (issue 10): OpenAI's API on Azure, so the client's bytes pass through
// as for `openai`, but the deployment goes into the path, the API version into the query and the
// key into an `api-key` header (learn.microsoft.com, "Azure OpenAI in Azure AI Foundry Models REST
// API reference": POST {endpoint}/openai/deployments/{deployment-id}/chat/completions
// ?api-version=…, header api-key). The mock upstream records what it received.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
let gw, key;

before(async () => {
    const mock = await h.startMock();
    // the mock's root, not its /v1: Azure's paths start with /openai/
    const root = `http://127.0.0.1:${mock.port}`;
    gw = await h.prepareGateway({
        mock,
        config: {
            providers: {
                az: { kind: 'azure', base_url: root, api_key: 'az-secret-key' },
                az2: { kind: 'azure', base_url: root, api_key: 'az-secret-key', api_version: '2025-01-01-preview' },
            },
            models: {
                'gpt-az': {
                    pricing: { input: 2, output: 8 },
                    deployments: [{ provider: 'az', model: 'my gpt/4o' }],
                },
                'gpt-az2': {
                    pricing: { input: 2, output: 8 },
                    deployments: [{ provider: 'az2', model: 'dep2' }],
                },
                'emb-az': {
                    pricing: { input: 0.02, output: 0 },
                    deployments: [{ provider: 'az', model: 'emb-dep' }],
                },
            },
        },
    });
    ({ key } = await gw.newProxyKey(100));
    await gw.start();
});
after(async () => { await gw?.stop(); });

async function lastUpstream() {
    const reqs = await gw.mock.requests();
    assert.ok(reqs.length > 0, 'the mock received nothing');
    return reqs[reqs.length - 1];
}

function assertAzureAuth(rec) {
    assert.equal(h.recordedHeader(rec, 'api-key'), 'az-secret-key');
    assert.equal(h.recordedHeader(rec, 'authorization'), undefined, 'no OpenAI-style key');
    for (const [k, v] of Object.entries(rec.headers ?? {})) {
        assert.ok(!String(v).includes(key), `the client's key leaked upstream in ${k}`);
    }
}

test('chat: deployment in the path (escaped), api-version in the query, api-key header', T, async () => {
    await gw.mock.clear();
    const raw = '{"model":"gpt-az","messages":[{"role":"user","content":"hi"}],"temperature":0.50}';
    const res = await h.post(gw, '/v1/chat/completions', key, raw);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers.get('x-modelswitch-provider'), 'az');
    const rec = await lastUpstream();
    assert.equal(rec.path, '/openai/deployments/my%20gpt%2F4o/chat/completions');
    assert.equal(rec.query, 'api-version=2024-10-21', 'the default API version');
    assertAzureAuth(rec);
    // OpenAI's dialect both sides: the body passes through, only model spliced
    assert.equal(rec.body, '{"model":"my gpt/4o","messages":[{"role":"user","content":"hi"}],"temperature":0.50}');
    assert.equal(res.json.choices[0].message.content, 'tok0 tok1 tok2 ');
    assert.ok(res.headers.get('x-modelswitch-cost'), 'billed');
});

test('a configured api_version; streaming with usage forced and billed', T, async () => {
    await gw.mock.clear();
    const res = await h.post(gw, '/v1/chat/completions', key,
        { model: 'gpt-az2', messages: [{ role: 'user', content: 's' }], stream: true });
    assert.equal(res.status, 200, res.text);
    const ev = h.sseEvents(res.text);
    assert.equal(ev[ev.length - 1], '[DONE]');
    assert.equal(h.streamContent(ev.slice(0, -1)), 'tok0 tok1 tok2 ');
    const rec = await lastUpstream();
    assert.equal(rec.path, '/openai/deployments/dep2/chat/completions');
    assert.equal(rec.query, 'api-version=2025-01-01-preview');
    assert.deepEqual(JSON.parse(rec.body).stream_options, { include_usage: true });
    assertAzureAuth(rec);
});

test('embeddings go to the deployment\'s /embeddings', T, async () => {
    await gw.mock.clear();
    const res = await h.post(gw, '/v1/embeddings', key, { model: 'emb-az', input: ['a', 'b'] });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.data.length, 2);
    const rec = await lastUpstream();
    assert.equal(rec.path, '/openai/deployments/emb-dep/embeddings');
    assertAzureAuth(rec);
});

test('an Azure error reaches the client as the contract says, without the key', T, async () => {
    const res = await h.post(gw, '/v1/chat/completions', key, {
        model: 'gpt-az', messages: [{ role: 'user', content: 'e' }],
        mock: { status: 400, error_message: 'bad request for key az-secret-key' },
    });
    h.assertError(assert, res, 502, 'upstream_error', 'provider_error');
    assert.ok(!res.text.includes('az-secret-key'), res.text);
});

test('check-config: api_version belongs to azure only, and is a plain version string', T, async () => {
    const bad = [
        ['providers:\n  o: {kind: openai, api_key: k, api_version: 2024-10-21}\n', 'only an azure provider takes api_version'],
        ['providers:\n  a: {kind: azure, base_url: "https://x", api_key: k, api_version: "2024/10"}\n', 'expected a version'],
    ];
    for (const [providers, msg] of bad) {
        const text = `${providers}models:\n  m: {pricing: {input: 1, output: 1}, deployments: []}\n`;
        const file = path.join(gw.dir, 'bad.yaml');
        fs.writeFileSync(file, text);
        const r = await h.run(h.GATEWAY_BIN, ['check-config', '--config', file]);
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, new RegExp(msg));
    }
});
