// Stored responses of the Responses API (issue 11): store: true (the default) keeps an answer for
// GET /v1/responses/{id} and previous_response_id; DELETE removes it; another account's ids, expired
// ones and store: false ones are not found; a continuation is rebuilt whole (the stored conversation
// before the new input) and sent upstream as any request, to whichever provider serves it, and billed
// on what was sent. Streams and whole answers, echo and an OpenAI-shaped mock upstream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
let gw, key, other, billing;

before(async () => {
    gw = await h.startGatewayWithMocks({
        mocks: 1,
        config: { server: { max_body_bytes: 65536 } },
        setup: async (g) => {
            const owner = await g.newProxyKey(100, 'owner');
            key = owner.key;
            billing = await g.createKey(owner.account, { type: 'billing' });
            ({ key: other } = await g.newProxyKey(100, 'other'));
        },
    });
});
after(async () => { await gw?.stop(); });

const create = (body, k = key) => h.post(gw, '/v1/responses', k, body);

async function streamed(body, k = key) {
    const res = await h.post(gw, '/v1/responses', k, { ...body, stream: true });
    assert.equal(res.status, 200, res.text);
    const events = h.sseEvents(res.text);
    const done = events.at(-1);
    assert.equal(done.type, 'response.completed', res.text);
    return done.response;
}

test('store (default): GET gives back the response the client got; DELETE removes it', T, async () => {
    const res = await create({ model: 'echo-1', input: 'remember the lighthouse' });
    assert.equal(res.status, 200, res.text);
    const r = res.json;
    assert.match(r.id, /^resp_/);
    const got = await h.get(gw, `/v1/responses/${r.id}`, key);
    assert.equal(got.status, 200, got.text);
    assert.deepEqual(got.json, r);
    // another account's id reads like one that never existed, for GET, DELETE and continuing
    const theirs = await h.get(gw, `/v1/responses/${r.id}`, other);
    h.assertError(assert, theirs, 404, 'not_found_error', 'not_found');
    const del2 = await h.request(gw, 'DELETE', `/v1/responses/${r.id}`, { key: other });
    h.assertError(assert, del2, 404, 'not_found_error', 'not_found');
    const cont = await create({ model: 'echo-1', input: 'x', previous_response_id: r.id }, other);
    h.assertError(assert, cont, 400, 'invalid_request_error', 'previous_response_not_found', 'previous_response_id');
    // the owner deletes it: gone for GET, DELETE and continuations
    const del = await h.request(gw, 'DELETE', `/v1/responses/${r.id}`, { key });
    assert.equal(del.status, 200, del.text);
    assert.deepEqual(del.json, { id: r.id, object: 'response', deleted: true });
    h.assertError(assert, await h.get(gw, `/v1/responses/${r.id}`, key), 404, 'not_found_error', 'not_found');
    h.assertError(assert, await h.request(gw, 'DELETE', `/v1/responses/${r.id}`, { key }), 404, 'not_found_error', 'not_found');
    h.assertError(assert, await create({ model: 'echo-1', input: 'x', previous_response_id: r.id }),
        400, 'invalid_request_error', 'previous_response_not_found', 'previous_response_id');
});

test('store: false keeps nothing; unknown and malformed ids are not found; methods and keys', T, async () => {
    const r = (await create({ model: 'echo-1', input: 'forget me', store: false })).json;
    assert.match(r.id, /^resp_/);
    h.assertError(assert, await h.get(gw, `/v1/responses/${r.id}`, key), 404, 'not_found_error', 'not_found');
    for (const id of ['resp_nope', 'a%20b', 'x'.repeat(200)])
        h.assertError(assert, await h.get(gw, `/v1/responses/${id}`, key), 404, 'not_found_error', 'not_found');
    for (const id of ['resp_nope', 'has space', 'x'.repeat(300)]) {
        const res = await create({ model: 'echo-1', input: 'x', previous_response_id: id });
        h.assertError(assert, res, 400, 'invalid_request_error', 'previous_response_not_found', 'previous_response_id');
    }
    h.assertError(assert, await create({ model: 'echo-1', input: 'x', previous_response_id: 7 }),
        400, 'invalid_request_error', 'invalid_parameter', 'previous_response_id');
    const put = await h.request(gw, 'PUT', `/v1/responses/${r.id}`, { key, body: {} });
    assert.equal(put.status, 405);
    assert.equal(put.headers.get('allow'), 'GET, DELETE');
    h.assertError(assert, await h.get(gw, `/v1/responses/${r.id}`, h.fakeKey()), 401, 'invalid_request_error', 'invalid_api_key');
});

test('previous_response_id: the stored conversation goes before the new input, to the provider', T, async () => {
    const first = (await create({ model: 'mock-model', instructions: 'be terse', input: 'my name is Ada' })).json;
    assert.equal(first.status, 'completed');
    const said = first.output.find((o) => o.type === 'message').content[0].text;
    await gw.mock.clear();
    const second = await create({ model: 'mock-model', input: 'what is my name?', previous_response_id: first.id });
    assert.equal(second.status, 200, second.text);
    const [up] = await gw.mock.requestsTo('/chat/completions');
    const sent = JSON.parse(up.body);
    // instructions are not carried over (as at OpenAI); the turns are, in order
    assert.deepEqual(sent.messages.map((m) => [m.role, typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join('')]),
        [['user', 'my name is Ada'], ['assistant', said], ['user', 'what is my name?']]);
    // and a third turn continues the second, which holds the first
    await gw.mock.clear();
    const third = await create({ model: 'mock-model', input: [{ role: 'user', content: 'and again?' }], previous_response_id: second.json.id });
    assert.equal(third.status, 200, third.text);
    const [up3] = await gw.mock.requestsTo('/chat/completions');
    assert.deepEqual(JSON.parse(up3.body).messages.map((m) => m.role), ['user', 'assistant', 'user', 'assistant', 'user']);
});

test('a continuation may be served by another provider than the response it continues', T, async () => {
    const first = await streamed({ model: 'echo-1', input: 'one two three' });
    await gw.mock.clear();
    const res = await create({ model: 'mock-model', input: 'four', previous_response_id: first.id });
    assert.equal(res.status, 200, res.text);
    const [up] = await gw.mock.requestsTo('/chat/completions');
    const roles = JSON.parse(up.body).messages.map((m) => m.role);
    assert.deepEqual(roles, ['user', 'assistant', 'user']);
    // and a streamed answer is stored as its terminal event carried it
    const got = await h.get(gw, `/v1/responses/${first.id}`, key);
    assert.equal(got.status, 200, got.text);
    assert.equal(got.json.id, first.id);
    assert.deepEqual(got.json.output, first.output);
});

test('function calling round trip across stored responses', T, async () => {
    const tools = [{ type: 'function', name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } }];
    const first = (await create({
        model: 'mock-model', input: 'weather in Paris?', tools,
        mock: { tool_call: { name: 'get_weather', args: { city: 'Paris' } } },
    })).json;
    const call = first.output.find((o) => o.type === 'function_call');
    assert.ok(call, JSON.stringify(first));
    await gw.mock.clear();
    const res = await create({
        model: 'mock-model', tools, previous_response_id: first.id,
        input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"temp":21}' }],
    });
    assert.equal(res.status, 200, res.text);
    const [up] = await gw.mock.requestsTo('/chat/completions');
    const msgs = JSON.parse(up.body).messages;
    assert.equal(msgs[1].role, 'assistant');
    assert.equal(msgs[1].tool_calls[0].id, call.call_id);
    assert.equal(msgs[2].role, 'tool');
    assert.equal(msgs[2].tool_call_id, call.call_id);
});

test('the continuation is billed on what was sent: the stored turns count as prompt', T, async () => {
    const first = (await create({ model: 'echo-1', input: 'alpha beta gamma delta' })).json;
    const alone = (await create({ model: 'echo-1', input: 'epsilon', store: false })).json;
    const cont = (await create({ model: 'echo-1', input: 'epsilon', previous_response_id: first.id })).json;
    assert.ok(cont.usage.input_tokens > alone.usage.input_tokens,
        `${cont.usage.input_tokens} > ${alone.usage.input_tokens}`);
    await h.eventually(async () => {
        const rows = await h.usageRows(gw, billing);
        return rows.some((r) => r.promptTokens === cont.usage.input_tokens);
    }, h.scaled(5000));
});

test('an immediate continuation finds the response the client just got', T, async () => {
    let id = null;
    for (let i = 0; i < 20; i++) {
        const body = { model: 'echo-1', input: `turn ${i}` };
        if (id) body.previous_response_id = id;
        const res = i % 2 ? await create(body) : { json: await streamed(body), status: 200 };
        assert.equal(res.status, 200, res.text);
        id = res.json.id;
    }
    const last = await h.get(gw, `/v1/responses/${id}`, key);
    assert.equal(last.status, 200);
});

test('a conversation too long to keep can still be read, but not continued', T, async () => {
    const half = 'word '.repeat(8000); // 40 KB: two of them are over max_body_bytes (64 KiB)
    const first = (await create({ model: 'echo-1', input: half, max_output_tokens: 5 })).json;
    const second = await create({ model: 'echo-1', input: half, max_output_tokens: 5, previous_response_id: first.id });
    assert.equal(second.status, 200, second.text);
    assert.equal((await h.get(gw, `/v1/responses/${second.json.id}`, key)).status, 200);
    const res = await create({ model: 'echo-1', input: 'more', previous_response_id: second.json.id });
    h.assertError(assert, res, 400, 'invalid_request_error', 'invalid_parameter', 'previous_response_id');
});

test('rows past their retention are not read; retention_days: 0 keeps nothing', T, async () => {
    const r = (await create({ model: 'echo-1', input: 'short-lived' })).json;
    assert.equal((await h.get(gw, `/v1/responses/${r.id}`, key)).status, 200);
    let upd;
    try {
        // The gateway may hold the write lock (a ledger flush, the response just stored):
        // the shell waits for it, as the gateway's own connections do, instead of failing.
        upd = await h.run('sqlite3', ['-cmd', '.timeout 10000', gw.config.store.sqlite, `UPDATE responses SET expires_at_ms = 1 WHERE id = '${r.id}'`]);
    } catch (e) {
        if (e.code === 'ENOENT') return; // no sqlite3 shell
        throw e;
    }
    assert.equal(upd.code, 0, upd.stderr);
    h.assertError(assert, await h.get(gw, `/v1/responses/${r.id}`, key), 404, 'not_found_error', 'not_found');
    const g2 = await h.startGatewayWithMocks({
        mocks: 1,
        sections: { responses: { retention_days: 0 } },
        setup: async (g) => { ({ key: g.k } = await g.newProxyKey(10)); },
    });
    try {
        const res = await h.post(g2, '/v1/responses', g2.k, { model: 'echo-1', input: 'x' });
        assert.equal(res.status, 200);
        h.assertError(assert, await h.get(g2, `/v1/responses/${res.json.id}`, g2.k), 404, 'not_found_error', 'not_found');
        const n = await h.sqliteRows(g2, 'SELECT count(*) AS n FROM responses');
        assert.deepEqual(n, [{ n: 0 }]);
    } finally {
        await g2.stop();
    }
});

test('item_reference items are resolved from the account\'s stored responses (the Vercel AI SDK sends them)', T, async () => {
    const tools = [{ type: 'function', name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } }];
    const first = (await create({
        model: 'mock-model', input: 'weather in Rome?', tools,
        mock: { tool_call: { name: 'get_weather', args: { city: 'Rome' } } },
    })).json;
    const msg = first.output.find((o) => o.type === 'message');
    const call = first.output.find((o) => o.type === 'function_call');
    assert.ok(msg && call, JSON.stringify(first.output));
    const input = [
        { role: 'user', content: 'weather in Rome?' },
        { type: 'item_reference', id: msg.id },
        { type: 'item_reference', id: call.id },
        { type: 'function_call_output', call_id: call.call_id, output: 'warm' },
    ];
    await gw.mock.clear();
    const res = await create({ model: 'mock-model', tools, input });
    assert.equal(res.status, 200, res.text);
    const [up] = await gw.mock.requestsTo('/chat/completions');
    const msgs = JSON.parse(up.body).messages;
    assert.equal(msgs.length, 3, JSON.stringify(msgs));
    assert.equal(msgs[1].role, 'assistant');
    assert.equal(msgs[1].content, msg.content[0].text);
    assert.equal(msgs[1].tool_calls[0].id, call.call_id);
    assert.equal(msgs[2].tool_call_id, call.call_id);
    // another account cannot reach them: the reference stays, and a translating provider refuses it
    const theirs = await create({ model: 'mock-model', tools, input }, other);
    h.assertError(assert, theirs, 400, 'invalid_request_error', 'invalid_parameter', 'input');
    // the continuation that follows is kept with the items resolved
    const again = await create({ model: 'mock-model', input: 'thanks', previous_response_id: res.json.id });
    assert.equal(again.status, 200, again.text);
});
