// End-to-end: the official OpenAI Node SDK (tests/e2e/node_modules/openai), unchanged, against a
// claude- model that the gateway serves from Anthropic's Messages API (the mock upstream's
// Anthropic personality): plain answers, streams, the chat.completions.stream helper assembling a
// tool call, usage with cached tokens, and a field Anthropic cannot take as the SDK's
// BadRequestError naming it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
let gw, key, client;

before(async () => {
    gw = await h.startGatewayWithMocks({
        mocks: 1,
        config: (mocks) => ({
            providers: {
                anthropic: { kind: 'anthropic', base_url: `http://127.0.0.1:${mocks[0].port}`,
                    api_key: 'sk-ant-e2e', timeout_ms: 10000 },
            },
            models: {
                'claude-sonnet-4': {
                    pricing: { input: 3, output: 15, cached_input: 0.3, cache_write: 3.75, cache_write_1h: 6 },
                    max_output_tokens: 8192,
                    deployments: [{ provider: 'anthropic', model: 'claude-sonnet-4-20250514' }],
                },
            },
        }),
        setup: async (g) => {
            ({ key } = await g.newProxyKey(100, 'sdk-anth'));
        },
    });
    client = new OpenAI({ baseURL: `${gw.base}/v1`, apiKey: key, maxRetries: 0, timeout: h.scaled(20000) });
});
after(async () => { await gw?.stop(); });

const MODEL = 'claude-sonnet-4';
const MSG = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'hi' }];

test('chat.completions.create: content, finish_reason, usage', T, async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages: MSG, max_tokens: 64 });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.model, MODEL);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(r.choices[0].message.content, 'tok0 tok1 tok2 ');
    assert.equal(r.choices[0].finish_reason, 'stop');
    // the mock counts the prompt's words: "You are terse." and "hi"
    assert.deepEqual([r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens], [4, 3, 7]);
    assert.ok(r._request_id);
    const rec = (await gw.mock.requestsTo('/v1/messages')).at(-1);
    assert.equal(JSON.parse(rec.body).model, 'claude-sonnet-4-20250514');
});

test('streaming with include_usage: deltas, one usage chunk last', T, async () => {
    const stream = await client.chat.completions.create({
        model: MODEL, messages: MSG, stream: true, stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    const text = chunks.filter((c) => c.choices.length).map((c) => c.choices[0].delta.content ?? '').join('');
    assert.equal(text, 'tok0 tok1 tok2 ');
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const finish = chunks.filter((c) => c.choices[0]?.finish_reason);
    assert.deepEqual(finish.map((c) => c.choices[0].finish_reason), ['stop']);
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assert.deepEqual([last.usage.prompt_tokens, last.usage.completion_tokens], [4, 3]);
    assert.equal(chunks.filter((c) => c.usage).length, 1);
});

test('chat.completions.stream helper: a tool call assembled by finalChatCompletion()', T, async () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city',
        parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
    const runner = client.chat.completions.stream({
        model: MODEL, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools,
        // the mock upstream's control object: the gateway forwards fields OpenAI does not define
        mock: { tool_call: { name: 'get_weather', input: { city: 'Paris' } } },
    });
    const argDeltas = [];
    runner.on('tool_calls.function.arguments.delta', (e) => argDeltas.push(e.arguments_delta));
    const f = await runner.finalChatCompletion();
    const choice = f.choices[0];
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, 'tok0 tok1 tok2 ');
    assert.equal(choice.message.tool_calls.length, 1);
    const call = choice.message.tool_calls[0];
    assert.match(call.id, /^toolu_mock_/);
    assert.equal(call.type, 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
    assert.ok(argDeltas.length >= 2, 'the arguments arrived in pieces');
    // the result goes back as a tool message and comes out as Anthropic's tool_result
    const r = await client.chat.completions.create({ model: MODEL, tools, messages: [
        { role: 'user', content: 'Weather in Paris?' }, choice.message,
        { role: 'tool', tool_call_id: call.id, content: 'sunny' }] });
    assert.equal(r.choices[0].finish_reason, 'stop');
    const up = JSON.parse((await gw.mock.requestsTo('/v1/messages')).at(-1).body);
    assert.deepEqual(up.messages.at(-1), { role: 'user',
        content: [{ type: 'tool_result', tool_use_id: call.id, content: 'sunny' }] });
});

test('usage with cached tokens, streamed and not', T, async () => {
    const mock = { input_tokens: 10, cache_read_input_tokens: 900, cache_creation_input_tokens: 90,
        output_tokens: 5 };
    const r = await client.chat.completions.create({ model: MODEL, messages: MSG, mock });
    assert.equal(r.usage.prompt_tokens, 1000);
    assert.equal(r.usage.prompt_tokens_details.cached_tokens, 900);
    assert.equal(r.usage.completion_tokens, 5);
    const stream = await client.chat.completions.create({
        model: MODEL, messages: MSG, mock, stream: true, stream_options: { include_usage: true } });
    let usage = null;
    for await (const c of stream) if (c.usage) usage = c.usage;
    assert.equal(usage.prompt_tokens, 1000);
    assert.equal(usage.prompt_tokens_details.cached_tokens, 900);
    assert.ok(usage.cost > 0, 'the gateway adds what it charged');
});

test('a field Anthropic cannot take: BadRequestError naming it', T, async () => {
    const e = await client.chat.completions.create({ model: MODEL, messages: MSG, n: 2 })
        .then(() => null, (err) => err);
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal(e.status, 400);
    assert.equal(e.code, 'invalid_parameter');
    assert.equal(e.param, 'n');
});
