// The mock upstream's provider personalities, called directly (no gateway): OpenAI usage details,
// the Azure OpenAI routes, Anthropic's Messages API and Google's Gemini API. These tests document
// the wire shapes, streaming event order, faults and header requirements that the gateway's
// adapters are built and tested against (tests/mock/README.md is the reference).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
let mock;

before(async () => { mock = await h.startMock(); });
after(async () => { await mock?.stop(); });

/** POSTs body (an object, or a raw string) to the mock; returns {status, headers, text, json}. */
async function call(path, body, headers = {}) {
    const res = await fetch(mock.url + path, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
        signal: AbortSignal.timeout(h.scaled(10000)),
    });
    const text = await res.text();
    let json;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: res.status, headers: res.headers, text, json };
}

/** Named SSE events: [{event, data}] with data parsed as JSON (event is null without a name). */
function namedEvents(text) {
    const out = [];
    for (const block of text.split('\n\n')) {
        if (!block.trim()) continue;
        let event = null;
        const data = [];
        for (const line of block.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        out.push({ event, data: data.length ? JSON.parse(data.join('\n')) : null });
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// OpenAI usage details

const chat = (mockOpts, extra = {}) => ({
    model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], mock: mockOpts, ...extra,
});

test('openai: without detail options the usage has exactly the three counts', T, async () => {
    const r = await call('/v1/chat/completions', chat({}));
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.usage, { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 });
});

test('openai: cached_tokens and reasoning_tokens give the details objects', T, async () => {
    const r = await call('/v1/chat/completions',
        chat({ prompt_tokens: 100, cached_tokens: 60, reasoning_tokens: 7, chunks: 2 }));
    assert.equal(r.status, 200);
    assert.equal(r.json.choices[0].message.content, 'tok0 tok1 ');
    // prompt_tokens includes the cached ones; completion_tokens includes the reasoning ones.
    assert.deepEqual(r.json.usage, {
        prompt_tokens: 100, completion_tokens: 9, total_tokens: 109,
        prompt_tokens_details: { cached_tokens: 60 },
        completion_tokens_details: { reasoning_tokens: 7 },
    });
    const only = await call('/v1/chat/completions', chat({ cached_tokens: 0 }));
    assert.deepEqual(only.json.usage, {
        prompt_tokens: 11, completion_tokens: 3, total_tokens: 14,
        prompt_tokens_details: { cached_tokens: 0 },
    });
});

test('openai: the stream usage chunk carries the details too', T, async () => {
    const r = await call('/v1/chat/completions', chat({ prompt_tokens: 20, cached_tokens: 5,
        reasoning_tokens: 4 }, { stream: true, stream_options: { include_usage: true } }));
    assert.equal(r.status, 200);
    const ev = h.sseEvents(r.text);
    assert.equal(ev.at(-1), '[DONE]');
    const usage = ev.at(-2);
    assert.deepEqual(usage.choices, []);
    assert.deepEqual(usage.usage, {
        prompt_tokens: 20, completion_tokens: 7, total_tokens: 27,
        prompt_tokens_details: { cached_tokens: 5 },
        completion_tokens_details: { reasoning_tokens: 4 },
    });
    assert.equal(h.streamContent(ev), 'tok0 tok1 tok2 ');
});

test('openai: cached_tokens above the prompt tokens is a bad mock option', T, async () => {
    const r = await call('/v1/chat/completions', chat({ cached_tokens: 12 }));
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'invalid_mock_option');
    const bad = await call('/v1/chat/completions', chat({ reasoning_tokens: -1 }));
    assert.equal(bad.status, 400);
    assert.match(bad.json.error.message, /reasoning_tokens/);
});

// ---------------------------------------------------------------------------------------------
// Azure OpenAI

const AZ = '/openai/deployments/my-gpt4o';
const AZ_KEY = { 'api-key': 'az-secret' };

test('azure: chat answers like the OpenAI route, options and streaming included', T, async () => {
    const r = await call(`${AZ}/chat/completions?api-version=2024-10-21`,
        chat({ chunks: 2, cached_tokens: 3 }), AZ_KEY);
    assert.equal(r.status, 200);
    assert.equal(r.json.object, 'chat.completion');
    assert.equal(r.json.model, 'gpt-4o');
    assert.equal(r.json.choices[0].message.content, 'tok0 tok1 ');
    assert.deepEqual(r.json.usage.prompt_tokens_details, { cached_tokens: 3 });

    const s = await call(`${AZ}/chat/completions?api-version=2024-10-21`,
        chat({}, { stream: true, stream_options: { include_usage: true } }), AZ_KEY);
    assert.equal(s.status, 200);
    assert.match(s.headers.get('content-type'), /text\/event-stream/);
    const ev = h.sseEvents(s.text);
    assert.equal(ev.at(-1), '[DONE]');
    assert.equal(h.streamContent(ev), 'tok0 tok1 tok2 ');

    const f = await call(`${AZ}/chat/completions?api-version=2024-10-21`,
        chat({ status: 429, retry_after: 3 }), AZ_KEY);
    assert.equal(f.status, 429);
    assert.equal(f.headers.get('retry-after'), '3');
    assert.equal(f.json.error.type, 'rate_limit_error');
});

test('azure: embeddings answer like the OpenAI route', T, async () => {
    const r = await call(`${AZ}/embeddings?api-version=2024-10-21`,
        { input: ['a', 'b'], mock: { dims: 2 } }, AZ_KEY);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.data.map((d) => d.embedding), [[0.11, 0.12], [0.21, 0.22]]);
});

test('azure: the recording keeps the api-key header, the deployment path and the query', T, async () => {
    await mock.clear();
    await call(`${AZ}/chat/completions?api-version=2024-10-21&x=1`, chat({}), AZ_KEY);
    const [rec] = await mock.requests();
    assert.equal(rec.path, `${AZ}/chat/completions`);
    assert.equal(rec.query, 'api-version=2024-10-21&x=1');
    assert.equal(rec.headers['api-key'], 'az-secret');
});

test('azure: no api-version, or a path Azure does not serve, gets Azure\'s 404', T, async () => {
    for (const p of [`${AZ}/chat/completions`, `${AZ}/chat/completions?api-version=`,
        `${AZ}/chat/completions?x=1&apiversion=1`, `${AZ}/completionz?api-version=1`,
        '/openai/deployments//chat/completions?api-version=1', `${AZ}?api-version=1`]) {
        const r = await call(p, chat({}), AZ_KEY);
        assert.equal(r.status, 404, p);
        assert.deepEqual(r.json, { error: { code: '404', message: 'Resource not found' } }, p);
    }
    // The check comes first: even a fault option does not change it.
    const r = await call(`${AZ}/chat/completions`, chat({ status: 500 }), AZ_KEY);
    assert.equal(r.status, 404);
});
