// End-to-end with the official OpenAI Node SDK against a Gemini model (issue 10): a client written
// for OpenAI's API talks to the gateway, which translates to Google's Gemini API (the mock
// upstream's Gemini personality). Plain calls, streams, the stream helper with a tool call and
// finalChatCompletion(), and usage with cached and reasoning tokens as the SDK types them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
let gw, mockG, client;

before(async () => {
    mockG = await h.startMock();
    gw = await h.startGateway({
        config: {
            providers: {
                google: { kind: 'gemini', base_url: `http://127.0.0.1:${mockG.port}`, api_key: 'AIza-e2e' },
            },
            models: {
                'gemini-2.5-flash': {
                    pricing: { input: 0.3, output: 2.5, cached_input: 0.075 },
                    deployments: [{ provider: 'google', model: 'gemini-2.5-flash' }],
                },
            },
        },
        setup: async (g) => {
            const account = await g.createAccount('sdk-gem', 100);
            g.key = await g.createKey(account);
        },
    });
    client = new OpenAI({ baseURL: `${gw.base}/v1`, apiKey: gw.key, timeout: h.scaled(20000), maxRetries: 0 });
});
after(async () => {
    await gw?.stop();
    await mockG?.stop();
});

const MODEL = 'gemini-2.5-flash';
const MSG = [{ role: 'user', content: 'hi' }];

test('chat.completions.create', T, async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages: MSG });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.model, MODEL);
    assert.equal(r.choices[0].message.content, 'tok0 tok1 tok2 ');
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.deepEqual([r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens], [11, 3, 14]);
    assert.ok(r._request_id);
});

test('streaming with usage', T, async () => {
    const stream = await client.chat.completions.create({
        model: MODEL, messages: MSG, stream: true, stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''), 'tok0 tok1 tok2 ');
    assert.equal(chunks.at(-2).choices[0].finish_reason, 'stop');
    assert.deepEqual(chunks.at(-1).choices, []);
    assert.equal(chunks.at(-1).usage.total_tokens, 14);
});

test('the stream helper with a tool call, and finalChatCompletion()', T, async () => {
    const runner = client.chat.completions.stream({
        model: MODEL,
        messages: [{ role: 'user', content: 'Weather in Paris?' }],
        tools: [{
            type: 'function',
            function: {
                name: 'get_weather',
                parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
            },
        }],
        mock: { chunks: 1, tool_call: { name: 'get_weather', args: { city: 'Paris' } } },
    });
    const done = [];
    runner.on('tool_calls.function.arguments.done', (e) => done.push(e));
    const final = await runner.finalChatCompletion();
    const m = final.choices[0].message;
    assert.equal(final.choices[0].finish_reason, 'tool_calls');
    assert.equal(m.content, 'tok0 ');
    assert.equal(m.tool_calls.length, 1);
    assert.match(m.tool_calls[0].id, /^call_[0-9a-f]{16}$/);
    assert.equal(m.tool_calls[0].function.name, 'get_weather');
    assert.deepEqual(JSON.parse(m.tool_calls[0].function.arguments), { city: 'Paris' });
    assert.equal(done.length, 1);
    assert.deepEqual(done[0].parsed_arguments ?? JSON.parse(done[0].arguments), { city: 'Paris' });

    // the round trip: the SDK's own message and the tool's answer go back as Gemini parts
    const r = await client.chat.completions.create({
        model: MODEL,
        messages: [{ role: 'user', content: 'Weather in Paris?' }, m,
            { role: 'tool', tool_call_id: m.tool_calls[0].id, content: 'sunny' }],
    });
    assert.equal(r.choices[0].message.content, 'tok0 tok1 tok2 ');
    const sent = JSON.parse((await mockG.requests()).at(-1).body);
    assert.deepEqual(sent.contents.at(-1),
        { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { result: 'sunny' } } }] });
});

test('usage with cached and reasoning tokens', T, async () => {
    const r = await client.chat.completions.create({
        model: MODEL, messages: MSG, reasoning_effort: 'medium',
        mock: { prompt_tokens: 200, cached_tokens: 150, thinking: true, thoughts_tokens: 30 },
    });
    assert.equal(r.choices[0].message.content, 'tok0 tok1 tok2 ');
    assert.equal(r.usage.prompt_tokens, 200);
    assert.equal(r.usage.prompt_tokens_details.cached_tokens, 150);
    assert.equal(r.usage.completion_tokens, 33);
    assert.equal(r.usage.completion_tokens_details.reasoning_tokens, 30);
    assert.equal(r.usage.total_tokens, 233);
    // a refused field is a BadRequestError naming it
    await assert.rejects(client.chat.completions.create({ model: MODEL, messages: MSG, n: 3 }),
        (e) => e instanceof OpenAI.BadRequestError && e.param === 'n' && e.code === 'invalid_parameter');
});
