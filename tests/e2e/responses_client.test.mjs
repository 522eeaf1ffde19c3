// End-to-end (issue 11): OpenAI's Responses API (POST /v1/responses) from the official `openai`
// SDK (responses.create, responses.stream) and from Codex itself (@openai/codex, `codex exec`
// with a provider whose base_url is the gateway), against models served by echo, an OpenAI-shaped,
// an Anthropic and a Gemini upstream (the mock's personalities), all through the hub rewrite and
// the Responses encoder. Stored responses: previous_response_id continuations (whole and streamed),
// responses.retrieve and responses.delete, another account's 404. Codex
// sends built-in tools (web_search) and its own client_metadata on every request: both are left
// out of what a provider that is not OpenAI's Responses API gets.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const PRICING = { input: 1, output: 2 };
const MODELS = ['echo-1', 'gpt-t', 'claude-t', 'gemini-t'];
const CODEX = path.join(h.ROOT, 'tests/e2e/node_modules/.bin/codex');
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
    client = new OpenAI({ apiKey: key, baseURL: `${gw.base}/v1`, maxRetries: 0 });
});
after(async () => { await gw?.stop(); });

for (const model of MODELS) {
    test(`${model}: responses.create gives a completed response with output_text and usage`, T, async () => {
        const r = await client.responses.create({ model, instructions: 'be brief', input: 'hi there' });
        assert.equal(r.object, 'response');
        assert.match(r.id, /^resp_/);
        assert.equal(r.status, 'completed');
        assert.ok(r.output_text.length > 0, JSON.stringify(r));
        assert.ok(r.usage.input_tokens > 0 && r.usage.output_tokens > 0, JSON.stringify(r.usage));
    });

    test(`${model}: responses.stream assembles the same response from typed events`, T, async () => {
        const stream = client.responses.stream({ model, input: 'hi there' });
        const types = [];
        stream.on('event', (e) => types.push(e.type));
        const r = await stream.finalResponse();
        assert.equal(types[0], 'response.created');
        assert.equal(types.at(-1), 'response.completed');
        assert.ok(types.includes('response.output_text.delta'));
        assert.equal(r.status, 'completed');
        assert.ok(r.output_text.length > 0);
    });
}

test('a function call round trip (gpt-t): function_call out, function_call_output back', T, async () => {
    const tools = [{ type: 'function', name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } }];
    const r = await client.responses.create({
        model: 'gpt-t', input: 'weather?', tools, mock: { tool_call: { name: 'get_weather', args: { city: 'Oslo' } } },
    });
    const call = r.output.find((o) => o.type === 'function_call');
    assert.ok(call, JSON.stringify(r.output));
    assert.equal(call.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.arguments), { city: 'Oslo' });
    const r2 = await client.responses.create({
        model: 'gpt-t', tools,
        input: [{ role: 'user', content: 'weather?' }, call,
            { type: 'function_call_output', call_id: call.call_id, output: 'sunny' }],
    });
    assert.equal(r2.status, 'completed');
    const up = (await gw.mocks[0].requestsTo('/v1/chat/completions')).at(-1);
    const msgs = JSON.parse(up.body).messages;
    assert.ok(msgs.some((m) => m.role === 'tool' && m.tool_call_id === call.call_id && m.content === 'sunny'),
        JSON.stringify(msgs));
});

test('errors: a bad key, an unknown model, an unknown previous_response_id', T, async () => {
    const bad = new OpenAI({ apiKey: 'ms-' + 'x'.repeat(40), baseURL: `${gw.base}/v1`, maxRetries: 0 });
    await assert.rejects(bad.responses.create({ model: 'echo-1', input: 'x' }), (e) => e instanceof OpenAI.AuthenticationError);
    await assert.rejects(client.responses.create({ model: 'no-such', input: 'x' }), (e) => e instanceof OpenAI.NotFoundError);
    await assert.rejects(client.responses.create({ model: 'echo-1', input: 'x', previous_response_id: 'resp_1' }),
        (e) => e instanceof OpenAI.BadRequestError && e.param === 'previous_response_id' &&
            e.code === 'previous_response_not_found');
});

test('previous_response_id: a conversation continued from stored responses, whole and streamed', T, async () => {
    const r1 = await client.responses.create({ model: 'gpt-t', input: 'my name is Ada' });
    const r2 = await client.responses.create({ model: 'claude-t', input: 'what is my name?', previous_response_id: r1.id });
    assert.equal(r2.status, 'completed');
    const stream = client.responses.stream({ model: 'gpt-t', input: 'say it again', previous_response_id: r2.id });
    const r3 = await stream.finalResponse();
    assert.equal(r3.status, 'completed');
    // the provider got the whole conversation, in order
    const up = (await gw.mocks[0].requestsTo('/v1/chat/completions')).at(-1);
    const msgs = JSON.parse(up.body).messages;
    assert.deepEqual(msgs.map((m) => m.role), ['user', 'assistant', 'user', 'assistant', 'user'], JSON.stringify(msgs));
    assert.equal(msgs[0].content, 'my name is Ada');
    assert.equal(msgs.at(-1).content, 'say it again');
    // the stored responses, as the client got them; another account sees none of them
    const got = await client.responses.retrieve(r3.id);
    assert.equal(got.id, r3.id);
    assert.equal(got.output_text, r3.output_text);
    const { key: otherKey } = await gw.newProxyKey(10, 'someone-else');
    await gw.waitKeyKnown(otherKey);
    const other = new OpenAI({ apiKey: otherKey, baseURL: `${gw.base}/v1`, maxRetries: 0 });
    await assert.rejects(other.responses.retrieve(r3.id), (e) => e instanceof OpenAI.NotFoundError);
    await assert.rejects(other.responses.create({ model: 'gpt-t', input: 'x', previous_response_id: r3.id }),
        (e) => e instanceof OpenAI.BadRequestError && e.code === 'previous_response_not_found');
    await client.responses.delete(r3.id);
    await assert.rejects(client.responses.retrieve(r3.id), (e) => e instanceof OpenAI.NotFoundError);
});

test('a function call answered by previous_response_id and function_call_output alone', T, async () => {
    const tools = [{ type: 'function', name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } }];
    const r = await client.responses.create({
        model: 'gpt-t', input: 'weather in Lima?', tools, mock: { tool_call: { name: 'get_weather', args: { city: 'Lima' } } },
    });
    const call = r.output.find((o) => o.type === 'function_call');
    assert.ok(call, JSON.stringify(r.output));
    const r2 = await client.responses.create({
        model: 'gpt-t', tools, previous_response_id: r.id,
        input: [{ type: 'function_call_output', call_id: call.call_id, output: 'drizzle' }],
    });
    assert.equal(r2.status, 'completed');
    const up = (await gw.mocks[0].requestsTo('/v1/chat/completions')).at(-1);
    const msgs = JSON.parse(up.body).messages;
    assert.equal(msgs[0].content, 'weather in Lima?');
    assert.equal(msgs[1].tool_calls[0].id, call.call_id);
    assert.ok(msgs.some((m) => m.role === 'tool' && m.tool_call_id === call.call_id && m.content === 'drizzle'),
        JSON.stringify(msgs));
});

test('structured output: text.format json_schema reaches the provider as response_format', T, async () => {
    const schema = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false };
    const r = await client.responses.create({
        model: 'gpt-t', input: 'a city', text: { format: { type: 'json_schema', name: 'place', schema, strict: true } },
    });
    assert.equal(r.status, 'completed');
    const up = (await gw.mocks[0].requestsTo('/v1/chat/completions')).at(-1);
    const rf = JSON.parse(up.body).response_format;
    assert.equal(rf.type, 'json_schema');
    assert.equal(rf.json_schema.name, 'place');
    assert.deepEqual(rf.json_schema.schema, schema);
});

test('codex exec answers through the gateway (echo model)', { ...T, skip: fs.existsSync(CODEX) ? false : `Codex is not installed (${CODEX})` }, async () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'ms-codex-home-'));
    try {
        fs.writeFileSync(path.join(home, 'config.toml'), [
            'model = "echo-1"', 'model_provider = "ms"', '',
            '[model_providers.ms]', 'name = "ModelSwitch"', `base_url = "${gw.base}/v1"`,
            'env_key = "MS_TEST_KEY"', 'wire_api = "responses"', '',
        ].join('\n'));
        const r = await h.run(CODEX, ['exec', '--skip-git-repo-check', 'hello from codex'], {
            timeout: h.scaled(60000), env: { CODEX_HOME: home, HOME: home, MS_TEST_KEY: key },
        });
        assert.equal(r.code, 0, `codex exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
        assert.match(r.stdout + r.stderr, /You said:/);
        // Codex's own request: its long instructions and tools make thousands of prompt tokens
        const r2 = await h.eventually(() => gw.accessLog().find((l) => l.path === '/v1/responses' &&
            l.prompt_tokens > 1000), h.scaled(3000));
        assert.ok(r2.value, 'the access log shows Codex\'s request');
        assert.equal(r2.value.status, 200);
    } finally {
        fs.rmSync(home, { recursive: true, force: true });
    }
});
