// End-to-end: the official `openai` SDK's responses.create and responses.stream against a model
// whose provider speaks the Responses API (`responses: true`), so the request and the provider's
// answer pass through the gateway (src/providers/openai_responses.c) instead of being translated
// to chat completions. The SDK must parse the provider's own objects and typed events, find the
// gateway's cost in the terminal event's usage, and raise its own error class when the stream
// is cut.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const PRICING = { input: 1, output: 2, cached_input: 0.25 };
let gw, key, client;

before(async () => {
    gw = await h.startGatewayWithMocks({
        mocks: 1,
        config: ([m]) => ({
            providers: {
                oair: { kind: 'openai', base_url: `${m.url}/v1`, api_key: 'sk-oai-e2e', responses: true, timeout_ms: 10000 },
            },
            models: { 'gpt-r': { pricing: PRICING, deployments: [{ provider: 'oair', model: 'gpt-up-r' }] } },
        }),
        setup: async (g) => { ({ key } = await g.newProxyKey(100)); },
    });
    client = new OpenAI({ apiKey: key, baseURL: `${gw.base}/v1`, maxRetries: 0 });
});
after(async () => { await gw?.stop(); });

test('responses.create: the provider\'s response object, usage with cached and reasoning details, the cost header', T, async () => {
    const { data: r, response } = await client.responses.create({
        model: 'gpt-r', instructions: 'be brief', input: 'hi there',
        tools: [{ type: 'web_search' }], include: ['reasoning.encrypted_content'],
        mock: { prompt_tokens: 40, cached_tokens: 30, reasoning_tokens: 5 },
    }).withResponse();
    assert.equal(r.object, 'response');
    assert.match(r.id, /^resp_mock_\d+$/, "the provider's own id");
    assert.equal(r.model, 'gpt-up-r');
    assert.equal(r.status, 'completed');
    assert.equal(r.output_text, 'tok0 tok1 tok2 ');
    assert.equal(r.instructions, 'be brief', 'the provider echoes what it was sent');
    assert.deepEqual(r.usage, { input_tokens: 40, input_tokens_details: { cached_tokens: 30 }, output_tokens: 8,
        output_tokens_details: { reasoning_tokens: 5 }, total_tokens: 48 });
    // 10 input, 30 cache reads, 8 output
    const want = (10n * h.usdToNano('1') + 30n * h.usdToNano('0.25') + 8n * h.usdToNano('2') + 500000n) / 1000000n;
    assert.equal(h.usdToNano(response.headers.get('x-modelswitch-cost')), want);
    const up = JSON.parse((await gw.mocks[0].requestsTo('/v1/responses')).at(-1).body);
    assert.deepEqual(up.tools, [{ type: 'web_search' }], 'built-in tools reach the provider');
});

test('responses.stream: the provider\'s typed events, a function call, and the cost in the final usage', T, async () => {
    const stream = client.responses.stream({
        model: 'gpt-r', input: 'weather?',
        tools: [{ type: 'function', name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } }],
        mock: { chunks: 2, tool_call: { name: 'get_weather', args: { city: 'Oslo' } } },
    });
    const types = [];
    let text = '';
    stream.on('event', (e) => types.push(e.type));
    stream.on('response.output_text.delta', (e) => { text += e.delta; });
    const r = await stream.finalResponse();
    assert.equal(types[0], 'response.created');
    assert.equal(types.at(-1), 'response.completed');
    assert.ok(types.includes('response.function_call_arguments.delta'));
    assert.equal(text, 'tok0 tok1 ');
    assert.match(r.id, /^resp_mock_/);
    const call = r.output.find((o) => o.type === 'function_call');
    assert.deepEqual(JSON.parse(call.arguments), { city: 'Oslo' });
    assert.equal(r.usage.output_tokens, 4);
    assert.equal(typeof r.usage.cost, 'number', 'the gateway\'s cost in the terminal event');
    assert.ok(r.usage.cost > 0);
});

test('a stream cut mid-way makes the SDK raise its APIError; a refused request its typed error', T, async () => {
    const stream = client.responses.stream({ model: 'gpt-r', input: 'hi', mock: { chunks: 3, cut_after: 1 } });
    await assert.rejects(stream.finalResponse(), (e) => e instanceof OpenAI.APIError);
    await assert.rejects(client.responses.create({ model: 'gpt-r', input: 'x', mock: { status: 400 } }),
        (e) => e instanceof OpenAI.InternalServerError && e.status === 502);
});
