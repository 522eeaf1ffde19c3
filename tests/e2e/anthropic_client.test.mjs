// End-to-end (issue 11, first part): the official Anthropic SDK (@anthropic-ai/sdk, pinned in
// package.json), unchanged but for its base URL and an ms- key, against POST /v1/messages, with
// models served by every kind of provider: echo, an OpenAI-shaped and a Gemini upstream through
// the hub rewrite and the Anthropic encoder, and an Anthropic upstream by pass-through (the
// mock's personalities). Each SDK call must parse; errors must be the SDK's own typed classes; the ledger must
// charge a request the same whichever dialect sent it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const PRICING = { input: 1, output: 2 };
const MODELS = ['echo-1', 'gpt-t', 'gemini-t', 'claude-t'];
let gw, key, client;

before(async () => {
    gw = await h.startGatewayWithMocks({
        mocks: 1,
        config: ([m]) => ({
            providers: {
                oai: { kind: 'openai', base_url: `${m.url}/v1`, api_key: 'sk-oai-e2e', timeout_ms: 10000 },
                anth: { kind: 'anthropic', base_url: m.url, api_key: 'sk-ant-e2e', timeout_ms: 10000 },
                goog: { kind: 'gemini', base_url: m.url, api_key: 'AIza-e2e', timeout_ms: 10000 },
            },
            models: {
                'gpt-t': { pricing: PRICING, deployments: [{ provider: 'oai', model: 'gpt-up' }] },
                'claude-t': { pricing: PRICING, deployments: [{ provider: 'anth', model: 'claude-up' }] },
                'gemini-t': { pricing: PRICING, deployments: [{ provider: 'goog', model: 'gemini-up' }] },
            },
        }),
        setup: async (g) => { ({ key } = await g.newProxyKey(100)); },
    });
    client = new Anthropic({ apiKey: key, baseURL: gw.base, maxRetries: 0 });
});
after(async () => { await gw?.stop(); });

const ask = (model, extra = {}) => ({
    model, max_tokens: 64, messages: [{ role: 'user', content: 'hi there' }], ...extra,
});

for (const model of MODELS) {
    test(`${model}: messages.create gives a message with text, stop_reason and usage`, T, async () => {
        const msg = await client.messages.create(ask(model, { system: 'be brief' }));
        assert.equal(msg.type, 'message');
        assert.equal(msg.role, 'assistant');
        // an Anthropic upstream's answer passes through: its model is the deployment's name, as
        // an OpenAI upstream's is for OpenAI clients (docs/DIALECTS.md)
        assert.equal(msg.model, model === 'claude-t' ? 'claude-up' : model);
        assert.match(msg.id, /^msg_/);
        const text = msg.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
        assert.ok(text.length > 0, JSON.stringify(msg));
        assert.equal(msg.stop_reason, 'end_turn');
        assert.ok(msg.usage.input_tokens > 0 && msg.usage.output_tokens > 0, JSON.stringify(msg.usage));
    });

    test(`${model}: messages.stream assembles the same message from named events`, T, async () => {
        const stream = client.messages.stream(ask(model));
        const kinds = [];
        stream.on('streamEvent', (e) => kinds.push(e.type));
        const msg = await stream.finalMessage();
        assert.equal(kinds[0], 'message_start');
        assert.equal(kinds.at(-1), 'message_stop');
        assert.ok(kinds.includes('content_block_start') && kinds.includes('content_block_stop'));
        assert.equal(msg.stop_reason, 'end_turn');
        const text = msg.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
        assert.ok(text.length > 0);
        assert.ok(msg.usage.output_tokens > 0, 'final usage from message_delta');
    });
}

test('errors are the SDK\'s own classes, in Anthropic\'s envelope with the contract\'s code', T, async () => {
    const bad = new Anthropic({ apiKey: 'ms-' + 'x'.repeat(40), baseURL: gw.base, maxRetries: 0 });
    await assert.rejects(bad.messages.create(ask('echo-1')), (e) => {
        assert.ok(e instanceof Anthropic.AuthenticationError, e.constructor.name);
        assert.equal(e.error?.type, 'error');
        assert.equal(e.error?.error?.code, 'invalid_api_key');
        return true;
    });
    await assert.rejects(client.messages.create(ask('no-such-model')), (e) => {
        assert.ok(e instanceof Anthropic.NotFoundError, e.constructor.name);
        assert.equal(e.error?.error?.type, 'not_found_error');
        return true;
    });
    // top_k cannot be translated: refused for a model whose provider does not speak the Messages
    // API (an Anthropic provider takes it as it is: the pass-through test sends it)
    await assert.rejects(client.messages.create({ ...ask('gpt-t'), top_k: 5 }), (e) => {
        assert.ok(e instanceof Anthropic.BadRequestError, e.constructor.name);
        assert.equal(e.error?.error?.param, 'top_k');
        return true;
    });
    // max_tokens is required by the Messages API
    await assert.rejects(client.messages.create({ model: 'echo-1', messages: [{ role: 'user', content: 'x' }] }),
        (e) => {
            assert.ok(e instanceof Anthropic.BadRequestError, e.constructor.name);
            assert.equal(e.error?.error?.param, 'max_tokens');
            return true;
        });
});

test('a Bearer key works too; two different keys are refused', T, async () => {
    const res = await h.post(gw, '/v1/messages', key, ask('echo-1'));
    assert.equal(res.status, 200, res.text);
    const both = await h.post(gw, '/v1/messages', key, ask('echo-1'),
        { headers: { 'x-api-key': 'ms-' + 'y'.repeat(40) } });
    assert.equal(both.status, 400, both.text);
    assert.equal(both.json.type, 'error');
});

test('billing is the same whichever of the three dialects sent the prompt', T, async () => {
    const oai = new OpenAI({ apiKey: key, baseURL: `${gw.base}/v1`, maxRetries: 0 });
    const prompt = 'the same words';
    const a = await oai.chat.completions.create({
        model: 'echo-1', max_tokens: 64, messages: [{ role: 'user', content: prompt }],
    }).withResponse();
    const b = await client.messages.create({
        model: 'echo-1', max_tokens: 64, messages: [{ role: 'user', content: prompt }],
    }).withResponse();
    const c = await oai.responses.create({ model: 'echo-1', max_output_tokens: 64, input: prompt })
        .withResponse();
    assert.equal(a.data.usage.completion_tokens, b.data.usage.output_tokens);
    assert.equal(a.data.usage.prompt_tokens, b.data.usage.input_tokens);
    assert.equal(a.data.usage.completion_tokens, c.data.usage.output_tokens);
    assert.equal(a.data.usage.prompt_tokens, c.data.usage.input_tokens);
    // the ledger rows of the three requests
    const ids = [a, b, c].map((x) => x.response.headers.get('x-request-id'));
    const r = await h.eventually(async () => {
        const rows = await h.sqliteRows(gw, 'SELECT charged_nusd, prompt_tokens, completion_tokens FROM usage ' +
            `WHERE request_id IN ('${ids.join("','")}')`);
        return rows === null || rows.length === 3 ? { rows } : null;
    }, h.scaled(5000));
    assert.ok(r.value, 'three usage rows');
    if (r.value.rows) {
        assert.deepEqual(r.value.rows[0], r.value.rows[1]);
        assert.deepEqual(r.value.rows[0], r.value.rows[2]);
    }
});

test('to an Anthropic provider the request and the answer pass through (signatures, betas, cache_control)', T, async () => {
    const mock = gw.mocks[0];
    await mock.clear();
    const body = {
        model: 'claude-t', max_tokens: 64,
        system: [{ type: 'text', text: 'sys', cache_control: { type: 'ephemeral' } }],
        messages: [{ role: 'user', content: 'think first' }],
        thinking: { type: 'enabled', budget_tokens: 1024 }, top_k: 5, // top_k: refused by the rewrite
        mock: { thinking: true },
    };
    const raw = JSON.stringify(body);
    const res = await h.post(gw, '/v1/messages', key, raw,
        { headers: { 'anthropic-version': '2023-06-01', 'anthropic-beta': 'interleaved-thinking-2025-05-14' } });
    assert.equal(res.status, 200, res.text);
    const reqs = await mock.requestsTo('/v1/messages');
    const rec = reqs[reqs.length - 1];
    assert.equal(rec.body, raw.replace('"model":"claude-t"', '"model":"claude-up"'), 'the client\'s bytes, model spliced');
    assert.equal(h.recordedHeader(rec, 'anthropic-beta'), 'interleaved-thinking-2025-05-14');
    assert.equal(h.recordedHeader(rec, 'anthropic-version'), '2023-06-01');
    assert.equal(h.recordedHeader(rec, 'x-api-key'), 'sk-ant-e2e');
    const thinking = res.json.content.find((b) => b.type === 'thinking');
    assert.ok(thinking && thinking.signature && thinking.signature !== 'modelswitch-unsigned-thinking',
        `the provider's own signature: ${res.text}`);
    // streamed: the provider's named events as they came, then the gateway's message_delta (with
    // the cost) and message_stop
    const stream = client.messages.stream({ ...body, mock: { thinking: true } });
    const msg = await stream.finalMessage();
    assert.ok(msg.content.some((b) => b.type === 'thinking' && b.signature && b.signature !== 'modelswitch-unsigned-thinking'));
    assert.equal(msg.stop_reason, 'end_turn');
    assert.ok(msg.usage.output_tokens > 0);
});

test('messages.countTokens: the gateway\'s estimate (about four bytes a token) for a model no provider counts', T, async () => {
    const req = { model: 'gpt-t', messages: [{ role: 'user', content: 'count these words for me please' }] };
    const { data: r, response } = await client.messages.countTokens(req).withResponse();
    const bytes = Buffer.byteLength(JSON.stringify(req));
    assert.equal(r.input_tokens, Math.ceil(bytes / 4));
    assert.equal(response.headers.get('x-modelswitch-estimate'), 'true');
    await assert.rejects(client.messages.countTokens({ ...req, model: 'no-such-model' }),
        (e) => e instanceof Anthropic.NotFoundError);
});

test('messages.countTokens: an Anthropic provider\'s own count, with the client\'s betas', T, async () => {
    const req = {
        model: 'claude-t', system: 'be brief',
        messages: [{ role: 'user', content: 'count these words for me please' }],
    };
    // the mock counts words (2 + 6): nowhere near the estimate
    const { data: r, response } = await client.messages.countTokens(req).withResponse();
    assert.equal(r.input_tokens, 8);
    assert.notEqual(Math.ceil(Buffer.byteLength(JSON.stringify(req)) / 4), 8);
    assert.equal(response.headers.get('x-modelswitch-estimate'), null);
    assert.equal(response.headers.get('x-modelswitch-provider'), 'anth');
    // the SDK's beta endpoint sends anthropic-beta (the betas asked for, and its own); it reaches
    // the provider as it came
    const beta = await client.beta.messages.countTokens({ ...req, betas: ['files-api-2025-04-14'] });
    assert.equal(beta.input_tokens, 8);
    const rec = (await gw.mock.requestsTo('/v1/messages/count_tokens')).at(-1);
    assert.equal(h.recordedHeader(rec, 'anthropic-beta'), 'files-api-2025-04-14,token-counting-2024-11-01');
    assert.equal(h.recordedHeader(rec, 'x-api-key'), 'sk-ant-e2e');
    assert.equal(JSON.parse(rec.body).model, 'claude-up');
});
