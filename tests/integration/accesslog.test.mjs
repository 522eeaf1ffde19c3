// The access log: one JSON line per request on stderr, with the contract's fields, the key's
// display prefix and never a full key (the client's, or the provider's).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
let gw, account, key;

before(async () => {
    gw = await h.startGateway({
        setup: async (g) => {
            account = await g.createAccount('logged', 100);
            key = await g.createKey(account);
        },
    });
});
after(async () => { await gw?.stop(); });

const FIELDS = ['time', 'request_id', 'account', 'key', 'model', 'provider', 'status', 'upstream_ms',
    'total_ms', 'bytes_in', 'bytes_out'];

function assertShape(e) {
    for (const f of FIELDS) assert.ok(f in e, `access log lacks "${f}": ${JSON.stringify(e)}`);
    assert.ok(!Number.isNaN(Date.parse(e.time)), `time ${e.time}`);
    assert.equal(typeof e.status, 'number');
    assert.equal(typeof e.total_ms, 'number');
    assert.ok(e.total_ms >= 0);
    assert.ok(e.upstream_ms === null || (typeof e.upstream_ms === 'number' && e.upstream_ms >= 0));
    assert.ok(Number.isInteger(e.bytes_in) && e.bytes_in >= 0);
    assert.ok(Number.isInteger(e.bytes_out) && e.bytes_out > 0);
}

test('one line per request with every field; the key appears only as its prefix', T, async () => {
    const body = JSON.stringify({ model: 'echo-1', messages: [{ role: 'user', content: 'log me' }] });
    const echo = await h.post(gw, '/v1/chat/completions', key, body);
    assert.equal(echo.status, 200, echo.text);
    const streamed = await h.post(gw, '/v1/chat/completions', key,
        { model: 'mock-model', stream: true, messages: [{ role: 'user', content: 'x' }] });
    assert.equal(streamed.status, 200, streamed.text);
    const unauth = await h.post(gw, '/v1/chat/completions', h.fakeKey(), body);
    assert.equal(unauth.status, 401);
    const notFound = await h.get(gw, '/v1/nowhere', key);
    assert.equal(notFound.status, 404);

    const e1 = await gw.waitForLog(echo.headers.get('x-request-id'));
    assertShape(e1);
    assert.equal(e1.status, 200);
    assert.equal(String(e1.account), String(account));
    assert.equal(e1.key, key.slice(0, 8));
    assert.equal(e1.model, 'echo-1');
    assert.ok(['local', 'echo'].includes(e1.provider), `provider ${e1.provider}`);
    assert.ok(e1.bytes_in >= Buffer.byteLength(body), `bytes_in ${e1.bytes_in}`);
    assert.ok(e1.bytes_out >= Buffer.byteLength(echo.text), `bytes_out ${e1.bytes_out}`);

    const e2 = await gw.waitForLog(streamed.headers.get('x-request-id'));
    assertShape(e2);
    assert.equal(e2.status, 200);
    assert.equal(e2.model, 'mock-model');
    assert.equal(e2.provider, 'mock');
    assert.equal(typeof e2.upstream_ms, 'number', 'upstream_ms of a proxied request');
    assert.ok(e2.bytes_out >= Buffer.byteLength(streamed.text));

    const e3 = await gw.waitForLog(unauth.headers.get('x-request-id'));
    assertShape(e3);
    assert.equal(e3.status, 401);

    const e4 = await gw.waitForLog(notFound.headers.get('x-request-id'));
    assertShape(e4);
    assert.equal(e4.status, 404);

    for (const rid of [echo, streamed, unauth, notFound].map((r) => r.headers.get('x-request-id'))) {
        assert.equal(gw.accessLog().filter((e) => e.request_id === rid).length, 1, `one line for ${rid}`);
    }
    assert.ok(!gw.stderr.includes(key), 'the full client key appears in the log');
    assert.ok(!gw.stderr.includes('sk-upstream-test'), 'the provider key appears in the log');
});

test('a request with a hostile path and model logs valid JSON', T, async () => {
    const model = 'no"such\\model\n\u0001';
    const res = await h.post(gw, '/v1/chat/completions', key,
        { model, messages: [{ role: 'user', content: 'x' }] });
    assert.equal(res.status, 404);
    const e = await gw.waitForLog(res.headers.get('x-request-id'));
    assertShape(e);
    // the name as error messages print it (control bytes spelled out), quote and backslash
    // escaped and read back as they were
    assert.equal(e.model, 'no"such\\model\\u000a\\u0001');
    const odd = await h.get(gw, '/v1/%22%0a%5c%00?x="\'', key);
    const e2 = await gw.waitForLog(odd.headers.get('x-request-id'));
    assertShape(e2);
    assert.equal(e2.path, '/v1/%22%0a%5c%00'); // the path, without the query
    // a long path of bytes that all need escaping (sent raw: fetch would encode them) is cut
    // at 200 bytes, and each comes back as it was
    const long = '/v1/' + '"\\'.repeat(150);
    const [lr] = await h.rawExchange(gw.port, `GET ${long} HTTP/1.1\r\nHost: t\r\n\r\n`);
    const e3 = await gw.waitForLog(lr.headers['x-request-id']);
    assertShape(e3);
    assert.equal(e3.path, long.slice(0, 200));
    for (const line of gw.stderr.split('\n').filter((l) => l.includes('"type":"access"'))) {
        assert.doesNotThrow(() => JSON.parse(line), `access log line is not JSON: ${line}`);
    }
});
