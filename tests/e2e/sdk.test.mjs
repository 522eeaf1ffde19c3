// End-to-end with the official OpenAI Node SDK (pinned in package.json): a client written for
// OpenAI's API, pointed at the gateway with a ModelSwitch key, must work unchanged — chat,
// streaming (with and without usage), embeddings (float and base64), the model list, and each
// error class with the contract's error code.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
let gw, key, billingKey, client, strict;

before(async () => {
    gw = await h.startGateway({
        config: {
            models: {
                'err-500': { pricing: { input: 1, output: 1 },
                    deployments: [{ provider: 'mock', model: 'e500-upstream' }] },
            },
        },
        setup: async (g) => {
            const account = await g.createAccount('sdk', 100);
            key = await g.createKey(account);
            billingKey = await g.createKey(account, { type: 'billing' });
        },
    });
    const opts = { baseURL: `${gw.base}/v1`, apiKey: key, timeout: h.scaled(20000) };
    client = new OpenAI({ ...opts, maxRetries: 1 });
    strict = new OpenAI({ ...opts, maxRetries: 0 });
});
after(async () => { await gw?.stop(); });

const MSG = [{ role: 'user', content: 'hi' }];

test('chat.completions.create through the echo provider', T, async () => {
    const r = await client.chat.completions.create({ model: 'echo-1', messages: MSG });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices[0].message.content, 'You said: hi');
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.deepEqual([r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens], [8, 4, 12]);
    assert.ok(r._request_id, 'the SDK saw x-request-id');
});

test('chat.completions.create through an OpenAI-compatible provider', T, async () => {
    const r = await client.chat.completions.create({
        model: 'mock-model', messages: MSG, temperature: 0.2,
        tools: [{ type: 'function', function: { name: 'noop', parameters: { type: 'object', properties: {} } } }],
    });
    assert.equal(r.choices[0].message.content, 'tok0 tok1 tok2 ');
    assert.equal(r.usage.completion_tokens, 3);
    const rec = (await gw.mock.requestsTo('/chat/completions')).at(-1);
    const up = JSON.parse(rec.body);
    assert.equal(up.model, 'mock-upstream-model');
    assert.equal(up.tools[0].function.name, 'noop');
    assert.equal(h.recordedHeader(rec, 'authorization'), 'Bearer sk-upstream-test');
});

test('streaming without stream_options: content, no usage', T, async () => {
    for (const model of ['mock-model', 'echo-1']) {
        const stream = await client.chat.completions.create({ model, messages: MSG, stream: true });
        let content = '';
        let n = 0;
        for await (const chunk of stream) {
            n++;
            assert.equal(chunk.object, 'chat.completion.chunk');
            assert.ok(!chunk.usage, `${model}: unexpected usage ${JSON.stringify(chunk.usage)}`);
            content += chunk.choices[0]?.delta?.content ?? '';
        }
        assert.ok(n >= 3, `${model}: ${n} chunks`);
        assert.equal(content, model === 'echo-1' ? 'You said: hi' : 'tok0 tok1 tok2 ');
    }
});

test('streaming with stream_options.include_usage: the last chunk carries usage', T, async () => {
    for (const [model, usage] of [['mock-model', [11, 3]], ['echo-1', [8, 4]]]) {
        const stream = await client.chat.completions.create({
            model, messages: MSG, stream: true, stream_options: { include_usage: true },
        });
        const chunks = [];
        for await (const chunk of stream) chunks.push(chunk);
        const last = chunks.at(-1);
        assert.deepEqual(last.choices, [], `${model}: the usage chunk has no choices`);
        assert.deepEqual([last.usage.prompt_tokens, last.usage.completion_tokens], usage, model);
        assert.equal(chunks.filter((c) => c.usage).length, 1, `${model}: one usage chunk`);
    }
});

test('the SDK stream helper assembles the final completion', T, async () => {
    const runner = client.chat.completions.stream({ model: 'echo-1', messages: [{ role: 'user', content: 'assemble me' }] });
    const final = await runner.finalChatCompletion();
    assert.equal(final.choices[0].message.content, 'You said: assemble me');
    assert.equal(final.choices[0].finish_reason, 'stop');
});

test('embeddings: float, the SDK default (base64 decoded by the SDK) and explicit base64', T, async () => {
    const input = ['first input', 'second input'];
    const f = await client.embeddings.create({ model: 'echo-embed-1', input, encoding_format: 'float' });
    assert.equal(f.data.length, 2);
    assert.ok(f.data.every((d) => Array.isArray(d.embedding) && d.embedding.length === 8));
    assert.equal(f.usage.prompt_tokens, 4);

    // Without encoding_format the SDK asks for base64 and decodes float32 itself.
    const d = await client.embeddings.create({ model: 'echo-embed-1', input });
    d.data.forEach((e, i) => {
        assert.equal(e.embedding.length, 8);
        e.embedding.forEach((x, j) => assert.equal(x, Math.fround(f.data[i].embedding[j]), `[${i}][${j}]`));
    });

    const b = await client.embeddings.create({ model: 'echo-embed-1', input: 'first input', encoding_format: 'base64' });
    assert.equal(typeof b.data[0].embedding, 'string');
    const buf = Buffer.from(b.data[0].embedding, 'base64');
    assert.equal(buf.length, 32);
    for (let j = 0; j < 8; j++) assert.equal(buf.readFloatLE(j * 4), Math.fround(f.data[0].embedding[j]));
});

test('embeddings through an OpenAI-compatible provider, SDK default encoding', T, async () => {
    const r = await client.embeddings.create({ model: 'mock-embed', input: ['a', 'b'] });
    assert.equal(r.data.length, 2);
    assert.deepEqual(r.data[0].embedding, [0.11, 0.12, 0.13, 0.14].map(Math.fround));
    assert.deepEqual(r.data[1].embedding, [0.21, 0.22, 0.23, 0.24].map(Math.fround));
});

test('models.list and models.retrieve', T, async () => {
    const ids = [];
    for await (const m of client.models.list()) {
        ids.push(m.id);
        assert.equal(m.object, 'model');
        assert.equal(m.pricing?.unit, 'USD per 1M tokens');
    }
    for (const id of ['echo-1', 'echo-embed-1', 'mock-model']) assert.ok(ids.includes(id), `${id} listed`);
    assert.ok(!ids.includes('ghost-model'), 'a model without an enabled deployment is listed');
    const m = await client.models.retrieve('echo-1');
    assert.equal(m.id, 'echo-1');
    assert.equal(m.pricing.input, 0.1);
});

async function expectError(promise, Class, status, code, param) {
    let err = null;
    try {
        await promise;
    } catch (e) {
        err = e;
    }
    assert.ok(err, `expected ${Class.name}, the call succeeded`);
    assert.ok(err instanceof Class, `expected ${Class.name}, got ${err?.constructor?.name}: ${err?.message}`);
    assert.equal(err.status, status);
    assert.equal(err.code, code);
    if (param !== undefined) assert.equal(err.param, param);
    assert.ok(err.requestID ?? err.request_id ?? err.headers?.get?.('x-request-id'), 'x-request-id on the error');
    return err;
}

test('a bad key: AuthenticationError invalid_api_key', T, async () => {
    const bad = new OpenAI({ baseURL: `${gw.base}/v1`, apiKey: h.fakeKey(), maxRetries: 0 });
    const e = await expectError(bad.chat.completions.create({ model: 'echo-1', messages: MSG }),
        OpenAI.AuthenticationError, 401, 'invalid_api_key');
    assert.equal(e.type, 'invalid_request_error');
});

test('a billing key on /v1/: PermissionDeniedError wrong_key_type', T, async () => {
    const mk = new OpenAI({ baseURL: `${gw.base}/v1`, apiKey: billingKey, maxRetries: 0 });
    const e = await expectError(mk.chat.completions.create({ model: 'echo-1', messages: MSG }),
        OpenAI.PermissionDeniedError, 403, 'wrong_key_type');
    assert.equal(e.type, 'permission_error');
});

test('an unknown model: NotFoundError model_not_found', T, async () => {
    await expectError(strict.chat.completions.create({ model: 'no-such-model', messages: MSG }),
        OpenAI.NotFoundError, 404, 'model_not_found');
    await expectError(strict.models.retrieve('no-such-model'), OpenAI.NotFoundError, 404, 'model_not_found');
});

test('missing messages: BadRequestError missing_required_parameter', T, async () => {
    const e = await expectError(strict.chat.completions.create({ model: 'echo-1' }),
        OpenAI.BadRequestError, 400, 'missing_required_parameter', 'messages');
    assert.equal(e.type, 'invalid_request_error');
});

test('an upstream 500: InternalServerError 502 provider_error', T, async () => {
    const e = await expectError(strict.chat.completions.create({
        model: 'err-500', messages: MSG, mock: { status: 500, error_message: 'sdk sees this' },
    }), OpenAI.InternalServerError, 502, 'provider_error');
    assert.equal(e.type, 'upstream_error');
    assert.match(e.message, /sdk sees this/);
});
