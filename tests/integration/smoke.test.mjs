// A short tour of the main paths, cheap enough to run with the gateway under valgrind (run.sh's
// valgrind stage sets MODELSWITCH_VALGRIND=1): echo and proxied chat, streamed and not, embeddings,
// the model list, an authentication error and a validation error, then a clean SIGTERM exit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
let gw, key;

before(async () => {
    gw = await h.startGateway({ setup: async (g) => { ({ key } = await g.newProxyKey(100)); } });
});
after(async () => { await gw?.stop(); });

const MSG = [{ role: 'user', content: 'hi' }];

test('health, models, echo chat', T, async () => {
    assert.equal((await h.get(gw, '/healthz')).status, 200);
    const models = await h.get(gw, '/v1/models', key);
    assert.equal(models.status, 200, models.text);
    assert.ok(models.json.data.some((m) => m.id === 'echo-1'));
    const res = await h.post(gw, '/v1/chat/completions', key, { model: 'echo-1', messages: MSG });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.choices[0].message.content, 'You said: hi');
    assert.equal(res.json.usage.prompt_tokens, 8);
});

test('echo stream and embeddings', T, async () => {
    const s = await h.post(gw, '/v1/chat/completions', key,
        { model: 'echo-1', messages: MSG, stream: true, stream_options: { include_usage: true } });
    assert.equal(s.status, 200, s.text);
    const events = h.sseEvents(s.text);
    assert.equal(events.at(-1), '[DONE]');
    assert.equal(h.streamContent(events), 'You said: hi');
    const e = await h.post(gw, '/v1/embeddings', key, { model: 'echo-embed-1', input: ['a', 'b c'] });
    assert.equal(e.status, 200, e.text);
    assert.equal(e.json.data.length, 2);
});

test('proxied chat, plain and streamed', T, async () => {
    const res = await h.post(gw, '/v1/chat/completions', key, { model: 'mock-model', messages: MSG });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.choices[0].message.content, 'tok0 tok1 tok2 ');
    const s = await h.post(gw, '/v1/chat/completions', key, { model: 'mock-model', messages: MSG, stream: true });
    assert.equal(s.status, 200, s.text);
    const events = h.sseEvents(s.text);
    assert.equal(events.at(-1), '[DONE]');
    assert.equal(h.streamContent(events), 'tok0 tok1 tok2 ');
});

test('errors: unknown key, invalid JSON, unknown model, upstream failure', T, async () => {
    const bad = await h.post(gw, '/v1/chat/completions', h.fakeKey(), { model: 'echo-1', messages: MSG });
    h.assertError(assert, bad, 401, 'invalid_request_error', 'invalid_api_key');
    const json = await h.post(gw, '/v1/chat/completions', key, '{"model":');
    h.assertError(assert, json, 400, 'invalid_request_error', 'invalid_json');
    const nf = await h.post(gw, '/v1/chat/completions', key, { model: 'nope', messages: MSG });
    assert.equal(nf.status, 404);
    const up = await h.post(gw, '/v1/chat/completions', key,
        { model: 'dead-model', messages: MSG });
    assert.equal(up.status, 502, up.text);
});
