// The account API (/api/, billing keys) and the operator API (/admin/, the admin token) end to end:
// balance; proxy and billing keys created, listed, changed and deleted through the API, each change
// taking effect on /v1/ and /api/ at once (no waiting for the key-cache refresher); isolation
// between accounts (another account's ids are 404, exactly like ids that do not exist); wrong key
// types (403), deleted keys (401), bad bodies (400 with `param`: a key's `name` is required and not
// blank; amounts get the reason they are refused, the maximum balance included); usage paging, usage statistics
// and transactions against the requests actually made; and the operator endpoints, including the
// API being absent (404) when no admin token is configured.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const ADMIN = 'adm-test-token-7d1e0c';
const nano = (usd) => Math.round(usd * 1e9);
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$/;
const HELLO = { model: 'echo-1', messages: [{ role: 'user', content: 'hi' }] };

let gw;
let acctA, proxyA, billingA; // made with the CLI before the gateway starts
let acctB, billingB;

before(async () => {
    gw = await h.startGateway({
        mock: false,
        config: { server: { admin_token: ADMIN } },
        setup: async (g) => {
            acctA = await g.createAccount('alpha', 100);
            proxyA = await g.createKey(acctA, { name: 'cli-proxy' });
            billingA = await g.createKey(acctA, { type: 'billing', name: 'cli-billing' });
            acctB = await g.createAccount('beta', 50);
            billingB = await g.createKey(acctB, { type: 'billing' });
        },
    });
});
after(async () => { await gw?.stop(); });

const api = (method, p, key, body) => h.request(gw, method, p, { key, body });
const admin = (method, p, body, token = ADMIN) => h.request(gw, method, p, { key: token, body });
const chat = (key, body = HELLO) => h.post(gw, '/v1/chat/completions', key, body);

function assertJson(res, status) {
    assert.equal(res.status, status, res.text);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/, res.text);
    assert.ok(res.headers.get('x-request-id'), 'x-request-id');
    assert.ok(res.json && typeof res.json === 'object', res.text);
    return res.json;
}

const KEY_FIELDS = ['id', 'name', 'prefix', 'active', 'createdAt', 'expiresAt', 'spendLimit', 'spent',
    'rpm', 'tpm'];

function assertKeyShape(k) {
    for (const f of KEY_FIELDS) assert.ok(f in k, `key field ${f} missing: ${JSON.stringify(k)}`);
    assert.equal(typeof k.id, 'number');
    assert.equal(typeof k.name, 'string');
    assert.equal(typeof k.active, 'boolean');
    assert.match(k.createdAt, ISO);
    assert.equal(typeof k.spent, 'number');
}

/** A fresh account with a billing key, made through the operator API. */
async function adminAccount(name, balance) {
    const acct = assertJson(await admin('POST', '/admin/accounts', { name, balance }), 201);
    const bk = assertJson(await admin('POST', `/admin/accounts/${acct.id}/billing-keys`, { name: 'first' }), 201);
    return { id: acct.id, billing: bk.key, billingId: bk.id };
}

// --- balance and authentication ----------------------------------------------------------------

test('GET /api/balance: the account balance as a number', T, async () => {
    const j = assertJson(await api('GET', '/api/balance', billingA), 200);
    assert.deepEqual(j, { balance: 100 });
    assert.deepEqual(assertJson(await api('GET', '/api/balance', billingB), 200), { balance: 50 });
});

test('authentication on /api/: missing, unknown, wrong key type', T, async () => {
    h.assertError(assert, await h.get(gw, '/api/balance'), 401, 'authentication_error', 'missing_api_key');
    h.assertError(assert, await api('GET', '/api/balance', h.fakeKey('mk-')), 401,
        'invalid_request_error', 'invalid_api_key');
    const res = await api('GET', '/api/balance', proxyA);
    h.assertError(assert, res, 403, 'permission_error', 'wrong_key_type');
    h.assertError(assert, await api('GET', '/api/keys', proxyA), 403, 'permission_error', 'wrong_key_type');
    // and the other way round
    h.assertError(assert, await chat(billingA), 403, 'permission_error', 'wrong_key_type');
});

test('unknown /api/ paths are 404 (after authentication); wrong methods 405 with Allow', T, async () => {
    h.assertError(assert, await api('GET', '/api/nope', billingA), 404, 'not_found_error', 'not_found');
    h.assertError(assert, await api('GET', '/api/keys/abc', billingA), 404, 'not_found_error', 'not_found');
    h.assertError(assert, await api('GET', '/api/keys/999999', billingA), 404, 'not_found_error', 'not_found');
    h.assertError(assert, await api('GET', '/api/nope'), 401, 'authentication_error', 'missing_api_key');
    for (const [method, p, allow] of [
        ['POST', '/api/balance', 'GET'],
        ['DELETE', '/api/keys', 'GET, POST'],
        ['POST', '/api/keys/1', 'GET, PUT, DELETE'],
        ['PUT', '/api/billing-keys', 'GET, POST'],
        ['POST', '/api/usage', 'GET'],
        ['DELETE', '/api/usage/stats', 'GET'],
        ['PUT', '/api/transactions', 'GET'],
    ]) {
        const res = await api(method, p, billingA, method === 'GET' ? undefined : {});
        h.assertError(assert, res, 405, 'invalid_request_error', 'method_not_allowed');
        assert.equal(res.headers.get('allow'), allow, `${method} ${p}`);
    }
});

// --- proxy keys ----------------------------------------------------------------------------------

test('POST /api/keys: 201, the key shown once, usable on /v1/ at once', T, async () => {
    const res = await api('POST', '/api/keys', billingA, { name: 'made-by-api' });
    const k = assertJson(res, 201);
    assertKeyShape(k);
    assert.match(k.key, /^ms-[A-Za-z0-9]{40}$/);
    assert.equal(k.prefix, k.key.slice(0, 8));
    assert.equal(k.name, 'made-by-api');
    assert.equal(k.active, true);
    assert.equal(k.expiresAt, null);
    assert.equal(k.spendLimit, null);
    assert.equal(k.spent, 0);
    assert.equal(k.rpm, null);
    assert.equal(k.tpm, null);
    // no waiting for the key-cache refresher: the gateway that made the key knows it
    const r = await chat(k.key);
    assert.equal(r.status, 200, r.text);

    // The list shows it, without key material.
    const list = assertJson(await api('GET', '/api/keys', billingA), 200);
    assert.ok(Array.isArray(list.keys));
    const entry = list.keys.find((x) => x.id === k.id);
    assert.ok(entry, 'the new key is listed');
    assertKeyShape(entry);
    assert.equal(entry.prefix, k.prefix);
    assert.ok(!('key' in entry), 'a listed key has no key material');
    assert.ok(!list.keys.some((x) => 'key' in x));
    const all = await api('GET', '/api/keys', billingA);
    assert.ok(!all.text.includes(k.key), 'the full key never appears again');
    // ordered by id; only proxy keys of this account
    const ids = list.keys.map((x) => x.id);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
    assert.ok(list.keys.some((x) => x.prefix === proxyA.slice(0, 8)), 'the CLI key is listed');
    assert.ok(!list.keys.some((x) => x.prefix.startsWith('mk-')), 'no billing keys in /api/keys');

    // GET by id
    const one = assertJson(await api('GET', `/api/keys/${k.id}`, billingA), 200);
    assert.deepEqual(one, entry);
});

test('POST /api/keys with every field; null for the optional ones', T, async () => {
    const expires = new Date(Date.now() + 86400000);
    expires.setUTCMilliseconds(0);
    const iso = expires.toISOString().replace('.000Z', 'Z');
    const k = assertJson(await api('POST', '/api/keys', billingA,
        { name: 'full', expires_at: iso, spend_limit: 12.5, rpm: 60, tpm: 100000 }), 201);
    assert.equal(k.expiresAt, iso);
    assert.equal(k.spendLimit, 12.5);
    assert.equal(k.rpm, 60);
    assert.equal(k.tpm, 100000);
    assert.equal((await chat(k.key)).status, 200);

    const nulls = assertJson(await api('POST', '/api/keys', billingA,
        { name: 'nulls', expires_at: null, spend_limit: null, rpm: null, tpm: null }), 201);
    assert.equal(nulls.spendLimit, null);
    assert.equal(nulls.rpm, null);
});

test('money is exact: decimal text in and out, exponents accepted', T, async () => {
    // 0.1 is not exact as a double; the gateway never goes through one.
    const a = await api('POST', '/api/keys', billingA, '{"name":"m","spend_limit":0.1}');
    assertJson(a, 201);
    assert.match(a.text, /"spendLimit":0\.1[,}]/);
    // JSON.stringify(0.0000001) is "1e-7"
    const b = await api('POST', '/api/keys', billingA, { name: 'm', spend_limit: 0.0000001 });
    assertJson(b, 201);
    assert.match(b.text, /"spendLimit":0\.0000001[,}]/);
    const c = await api('POST', '/api/keys', billingA, '{"name":"m","spend_limit":1.5E2}');
    assert.match(c.text, /"spendLimit":150[,}]/);
    // finer than a nano-dollar
    const d = await api('POST', '/api/keys', billingA, '{"name":"m","spend_limit":0.0000000001}');
    h.assertError(assert, d, 400, 'invalid_request_error', 'invalid_parameter', 'spend_limit');
    // trailing zeros beyond 9 places are still exact
    const e = await api('POST', '/api/keys', billingA, '{"name":"m","spend_limit":2.50000000000}');
    assert.match(e.text, /"spendLimit":2\.5[,}]/);
});

test('PUT /api/keys/{id}: name, active (reversible, at once on /v1/), spend_limit, rpm', T, async () => {
    const k = assertJson(await api('POST', '/api/keys', billingA, { name: 'toggle' }), 201);
    assert.equal((await chat(k.key)).status, 200);

    let u = assertJson(await api('PUT', `/api/keys/${k.id}`, billingA, { name: 'renamed' }), 200);
    assertKeyShape(u);
    assert.equal(u.name, 'renamed');
    assert.equal(u.id, k.id);
    assert.ok(!('key' in u));

    u = assertJson(await api('PUT', `/api/keys/${k.id}`, billingA, { active: false }), 200);
    assert.equal(u.active, false);
    h.assertError(assert, await chat(k.key), 403, 'permission_error', 'key_deactivated');
    u = assertJson(await api('PUT', `/api/keys/${k.id}`, billingA, { active: true }), 200);
    assert.equal(u.active, true);
    assert.equal((await chat(k.key)).status, 200);

    u = assertJson(await api('PUT', `/api/keys/${k.id}`, billingA, { spend_limit: 3.25, rpm: 10, tpm: 500 }), 200);
    assert.equal(u.spendLimit, 3.25);
    assert.equal(u.rpm, 10);
    assert.equal(u.tpm, 500);
    assert.equal(u.name, 'renamed', 'fields not sent stay as they were');
    u = assertJson(await api('PUT', `/api/keys/${k.id}`, billingA, { spend_limit: null, rpm: null }), 200);
    assert.equal(u.spendLimit, null);
    assert.equal(u.rpm, null);
    assert.equal(u.tpm, 500);

    // an empty object changes nothing and returns the key
    const same = assertJson(await api('PUT', `/api/keys/${k.id}`, billingA, {}), 200);
    assert.deepEqual(same, assertJson(await api('GET', `/api/keys/${k.id}`, billingA), 200));
});

test('POST /api/keys, /api/billing-keys, admin billing-keys: name required, not blank', T, async () => {
    const adminPath = `/admin/accounts/${acctA}/billing-keys`;
    const before = {
        keys: assertJson(await api('GET', '/api/keys', billingA), 200).keys.length,
        billing: assertJson(await api('GET', '/api/billing-keys', billingA), 200).keys.length,
    };
    for (const [post, p] of [[api, '/api/keys'], [api, '/api/billing-keys'], [admin, adminPath]]) {
        const call = (body) => (post === api ? api('POST', p, billingA, body) : admin('POST', p, body));
        for (const body of [{}, { expires_at: null }]) {
            h.assertError(assert, await call(body), 400, 'invalid_request_error',
                'missing_required_parameter', 'name');
        }
        for (const name of ['', ' ', '  \t\n', 5, null, true, ['a'], { a: 1 }]) {
            const res = await call({ name });
            h.assertError(assert, res, 400, 'invalid_request_error', 'invalid_parameter', 'name');
            assert.match(res.json.error.message, /name/, res.text);
        }
        // a name with blanks around it is still a name
        const ok = assertJson(await call({ name: ' spaced ' }), 201);
        assert.equal(ok.name, ' spaced ');
    }
    // nothing but the three good keys was made
    assert.equal(assertJson(await api('GET', '/api/keys', billingA), 200).keys.length, before.keys + 1);
    assert.equal(assertJson(await api('GET', '/api/billing-keys', billingA), 200).keys.length,
        before.billing + 2);
});

test('PUT: renaming a key to an empty or blank name is refused; the name stays', T, async () => {
    const pk = assertJson(await api('POST', '/api/keys', billingA, { name: 'keep-me' }), 201);
    const bk = assertJson(await api('POST', '/api/billing-keys', billingA, { name: 'keep-me-too' }), 201);
    for (const [p, k] of [['/api/keys', pk], ['/api/billing-keys', bk]]) {
        for (const name of ['', '   ', '\t', null, 7]) {
            const res = await api('PUT', `${p}/${k.id}`, billingA, { name, active: true });
            h.assertError(assert, res, 400, 'invalid_request_error', 'invalid_parameter', 'name');
        }
        assert.equal(assertJson(await api('GET', `${p}/${k.id}`, billingA), 200).name, k.name);
    }
});

test('a spend limit set through the API is enforced at once', T, async () => {
    const k = assertJson(await api('POST', '/api/keys', billingA, { name: 'capped', spend_limit: 0 }), 201);
    h.assertError(assert, await chat(k.key), 403, 'permission_error', 'spend_limit_reached');
    assertJson(await api('PUT', `/api/keys/${k.id}`, billingA, { spend_limit: 1 }), 200);
    assert.equal((await chat(k.key)).status, 200);
});

test('DELETE /api/keys/{id}: 204, then 401 on /v1/ at once, and gone for good', T, async () => {
    const k = assertJson(await api('POST', '/api/keys', billingA, { name: 'doomed' }), 201);
    assert.equal((await chat(k.key)).status, 200);
    const res = await api('DELETE', `/api/keys/${k.id}`, billingA);
    assert.equal(res.status, 204, res.text);
    assert.equal(res.text, '');
    h.assertError(assert, await chat(k.key), 401, 'invalid_request_error', 'invalid_api_key');
    h.assertError(assert, await api('GET', `/api/keys/${k.id}`, billingA), 404, 'not_found_error', 'not_found');
    h.assertError(assert, await api('PUT', `/api/keys/${k.id}`, billingA, { active: true }), 404,
        'not_found_error', 'not_found');
    h.assertError(assert, await api('DELETE', `/api/keys/${k.id}`, billingA), 404, 'not_found_error', 'not_found');
    const list = assertJson(await api('GET', '/api/keys', billingA), 200);
    assert.ok(!list.keys.some((x) => x.id === k.id), 'a deleted key is not listed');
    // still refused after the refresher has seen the deletion too
    await h.sleep(400);
    h.assertError(assert, await chat(k.key), 401, 'invalid_request_error', 'invalid_api_key');
});

// --- billing keys --------------------------------------------------------------------------------

test('billing keys: create, list, update, deactivate, delete; the key in use cannot delete itself', T, async () => {
    const k = assertJson(await api('POST', '/api/billing-keys', billingA, { name: 'second' }), 201);
    assertKeyShape(k);
    assert.match(k.key, /^mk-[A-Za-z0-9]{40}$/);
    assert.equal(k.prefix, k.key.slice(0, 8));
    // usable at once, on /api/ only
    assert.deepEqual(assertJson(await api('GET', '/api/balance', k.key), 200).balance !== undefined, true);
    h.assertError(assert, await chat(k.key), 403, 'permission_error', 'wrong_key_type');

    const list = assertJson(await api('GET', '/api/billing-keys', k.key), 200);
    assert.ok(list.keys.some((x) => x.id === k.id));
    assert.ok(list.keys.some((x) => x.prefix === billingA.slice(0, 8)));
    assert.ok(list.keys.every((x) => x.prefix.startsWith('mk-')));
    assert.ok(!list.keys.some((x) => 'key' in x));

    const u = assertJson(await api('PUT', `/api/billing-keys/${k.id}`, billingA, { name: 'renamed' }), 200);
    assert.equal(u.name, 'renamed');
    assertJson(await api('PUT', `/api/billing-keys/${k.id}`, billingA, { active: false }), 200);
    h.assertError(assert, await api('GET', '/api/balance', k.key), 403, 'permission_error', 'key_deactivated');
    assertJson(await api('PUT', `/api/billing-keys/${k.id}`, billingA, { active: true }), 200);
    assert.equal((await api('GET', '/api/balance', k.key)).status, 200);

    // the key in use cannot delete or deactivate itself
    const self = await api('DELETE', `/api/billing-keys/${k.id}`, k.key);
    h.assertError(assert, self, 400, 'invalid_request_error', 'invalid_parameter', 'id');
    assert.match(self.json.error.message, /itself/);
    const selfOff = await api('PUT', `/api/billing-keys/${k.id}`, k.key, { active: false });
    h.assertError(assert, selfOff, 400, 'invalid_request_error', 'invalid_parameter', 'active');
    assert.equal((await api('GET', '/api/balance', k.key)).status, 200);

    // fields that do not apply to billing keys
    for (const f of ['spend_limit', 'rpm', 'tpm']) {
        const r = await api('POST', '/api/billing-keys', billingA, { [f]: 1 });
        h.assertError(assert, r, 400, 'invalid_request_error', 'invalid_parameter', f);
    }

    // another billing key deletes it: 204, then 401 at once
    const del = await api('DELETE', `/api/billing-keys/${k.id}`, billingA);
    assert.equal(del.status, 204, del.text);
    h.assertError(assert, await api('GET', '/api/balance', k.key), 401, 'invalid_request_error', 'invalid_api_key');
});

test('key ids are typed: a billing key id on /api/keys/{id} and the reverse are 404', T, async () => {
    const pk = assertJson(await api('POST', '/api/keys', billingA, { name: 'typed' }), 201);
    const bk = assertJson(await api('POST', '/api/billing-keys', billingA, { name: 'typed' }), 201);
    for (const [method, body] of [['GET'], ['PUT', {}], ['DELETE']]) {
        h.assertError(assert, await api(method, `/api/keys/${bk.id}`, billingA, body), 404, 'not_found_error', 'not_found');
        h.assertError(assert, await api(method, `/api/billing-keys/${pk.id}`, billingA, body), 404, 'not_found_error', 'not_found');
    }
    assert.equal((await chat(pk.key)).status, 200);
    assert.equal((await api('GET', '/api/balance', bk.key)).status, 200);
});

// --- isolation -----------------------------------------------------------------------------------

test("another account's key ids: 404 on GET, PUT and DELETE, nothing changes", T, async () => {
    const pk = assertJson(await api('POST', '/api/keys', billingA, { name: 'mine' }), 201);
    const bk = assertJson(await api('POST', '/api/billing-keys', billingA, { name: 'mine-too' }), 201);
    const strip = (res) => ({ ...res.json.error, message: res.json.error.message.replace(/\d+/g, 'N') });
    for (const [p, id] of [['/api/keys', pk.id], ['/api/billing-keys', bk.id]]) {
        const missing = await api('GET', `${p}/987654321`, billingB);
        const g = await api('GET', `${p}/${id}`, billingB);
        h.assertError(assert, g, 404, 'not_found_error', 'not_found');
        // indistinguishable from an id that does not exist (apart from the id in the message)
        assert.deepEqual(strip(g), strip(missing));
        h.assertError(assert, await api('PUT', `${p}/${id}`, billingB, { active: false, name: 'pwned' }), 404,
            'not_found_error', 'not_found');
        h.assertError(assert, await api('DELETE', `${p}/${id}`, billingB), 404, 'not_found_error', 'not_found');
    }
    // untouched
    const still = assertJson(await api('GET', `/api/keys/${pk.id}`, billingA), 200);
    assert.equal(still.name, 'mine');
    assert.equal(still.active, true);
    assert.equal((await chat(pk.key)).status, 200);
    assert.equal((await api('GET', '/api/balance', bk.key)).status, 200);
    // and B's lists never show A's keys
    const listB = assertJson(await api('GET', '/api/keys', billingB), 200);
    assert.ok(!listB.keys.some((x) => x.id === pk.id));
    const blistB = assertJson(await api('GET', '/api/billing-keys', billingB), 200);
    assert.ok(!blistB.keys.some((x) => x.id === bk.id));
    assert.deepEqual(assertJson(await api('GET', '/api/balance', billingB), 200), { balance: 50 });
});

// --- bad bodies ----------------------------------------------------------------------------------

test('bad bodies: 400 invalid_json, invalid_parameter with param, unknown fields', T, async () => {
    const target = assertJson(await api('POST', '/api/keys', billingA, { name: 'target' }), 201);
    for (const body of ['{"name":', 'not json', '', '[]', '"x"', '{"name":"a",}']) {
        for (const [method, p] of [['POST', '/api/keys'], ['PUT', `/api/keys/${target.id}`],
            ['POST', '/api/billing-keys']]) {
            h.assertError(assert, await api(method, p, billingA, body), 400, 'invalid_request_error', 'invalid_json');
        }
    }
    const past = new Date(Date.now() - 60000).toISOString();
    const cases = [
        [{ name: 5 }, 'name'],
        [{ name: null }, 'name'],
        [{ name: 'x'.repeat(128) }, 'name'],
        [{ expires_at: 'tomorrow' }, 'expires_at'],
        [{ expires_at: 1893456000 }, 'expires_at'],
        [{ expires_at: past }, 'expires_at'],
        [{ spend_limit: '5' }, 'spend_limit'],
        [{ spend_limit: -1 }, 'spend_limit'],
        [{ spend_limit: true }, 'spend_limit'],
        [{ rpm: 0 }, 'rpm'],
        [{ rpm: 1.5 }, 'rpm'],
        [{ rpm: '10' }, 'rpm'],
        [{ tpm: -5 }, 'tpm'],
        [{ tpm: {} }, 'tpm'],
        [{ foo: 1 }, 'foo'],
        [{ name: 'ok', Name: 'x' }, 'Name'],
        [{ active: false }, 'active'], // only on an existing key
    ];
    for (const [body, param] of cases) {
        const res = await api('POST', '/api/keys', billingA, body);
        h.assertError(assert, res, 400, 'invalid_request_error', 'invalid_parameter', param);
    }
    for (const [body, param] of [[{ active: 'yes' }, 'active'], [{ active: null }, 'active'],
        [{ spend_limit: 'x' }, 'spend_limit'], [{ bogus: true }, 'bogus'], [{ rpm: 0 }, 'rpm']]) {
        const res = await api('PUT', `/api/keys/${target.id}`, billingA, body);
        h.assertError(assert, res, 400, 'invalid_request_error', 'invalid_parameter', param);
    }
    // nothing was created by the refused requests, nothing changed by the refused updates
    const after = assertJson(await api('GET', `/api/keys/${target.id}`, billingA), 200);
    assert.deepEqual(after, assertJson(await api('GET', `/api/keys/${target.id}`, billingA), 200));
    assert.equal(after.active, true);
    assert.equal(after.rpm, null);
});

// --- usage, stats, transactions ------------------------------------------------------------------

test('usage paging, statistics, transactions and the balance agree with the requests made', T, async () => {
    const acct = await adminAccount('ledger', 10);
    const pk = assertJson(await api('POST', '/api/keys', acct.billing, { name: 'spender' }), 201);
    const made = [];
    for (const content of ['one', 'two two', 'three three three']) {
        const r = await chat(pk.key, { model: 'echo-1', messages: [{ role: 'user', content }] });
        assert.equal(r.status, 200, r.text);
        made.push(r.json.usage);
    }
    // echo-1 costs 0.1 USD per 1M prompt tokens and 0.2 per 1M completion tokens
    const cost = (u) => u.prompt_tokens * 100 + u.completion_tokens * 200;

    // paging: newest first; the reads see the requests just finished (read-your-writes)
    const page1 = assertJson(await api('GET', '/api/usage?limit=2', acct.billing), 200).usage;
    assert.equal(page1.length, 2, JSON.stringify(page1));
    const page2 = assertJson(await api('GET', '/api/usage?limit=2&offset=2', acct.billing), 200).usage;
    assert.equal(page2.length, 1, JSON.stringify(page2));
    const rows = [...page1, ...page2];
    assert.ok(rows[0].id > rows[1].id && rows[1].id > rows[2].id, 'newest first');
    const oldestFirst = [...rows].reverse();
    for (let i = 0; i < 3; i++) {
        const row = oldestFirst[i];
        for (const f of ['id', 'model', 'keyId', 'promptTokens', 'completionTokens', 'chargedAmount', 'createdAt']) {
            assert.ok(f in row, `usage field ${f}: ${JSON.stringify(row)}`);
        }
        assert.equal(row.model, 'echo-1');
        assert.equal(row.keyId, pk.id);
        assert.equal(row.promptTokens, made[i].prompt_tokens);
        assert.equal(row.completionTokens, made[i].completion_tokens);
        assert.equal(nano(row.chargedAmount), cost(made[i]));
        assert.match(row.createdAt, ISO);
    }
    const all = assertJson(await api('GET', '/api/usage', acct.billing), 200).usage;
    assert.equal(all.length, 3, 'default limit covers all three');
    assert.deepEqual(assertJson(await api('GET', '/api/usage?offset=3', acct.billing), 200).usage, []);
    // another account sees none of it
    const other = assertJson(await api('GET', '/api/usage?limit=50', billingB), 200).usage;
    assert.ok(!other.some((r) => r.keyId === pk.id));

    for (const q of ['limit=51', 'limit=0', 'limit=-1', 'limit=abc', 'limit=']) {
        h.assertError(assert, await api('GET', `/api/usage?${q}`, acct.billing), 400,
            'invalid_request_error', 'invalid_parameter', 'limit');
    }
    for (const q of ['offset=-1', 'offset=x']) {
        h.assertError(assert, await api('GET', `/api/usage?${q}`, acct.billing), 400,
            'invalid_request_error', 'invalid_parameter', 'offset');
    }
    h.assertError(assert, await api('GET', '/api/transactions?limit=51', acct.billing), 400,
        'invalid_request_error', 'invalid_parameter', 'limit');

    // statistics
    const spend = made.reduce((s, u) => s + cost(u), 0);
    const stats = assertJson(await api('GET', '/api/usage/stats', acct.billing), 200);
    assert.equal(stats.overall.requests, 3);
    assert.equal(stats.overall.promptTokens, made.reduce((s, u) => s + u.prompt_tokens, 0));
    assert.equal(stats.overall.completionTokens, made.reduce((s, u) => s + u.completion_tokens, 0));
    assert.equal(nano(stats.overall.spend), spend);
    assert.equal(stats.byModel.length, 1);
    assert.deepEqual(stats.byModel[0], { model: 'echo-1', ...stats.overall });

    // the key's spend and the balance
    const key = assertJson(await api('GET', `/api/keys/${pk.id}`, acct.billing), 200);
    assert.equal(nano(key.spent), spend);
    const bal = assertJson(await api('GET', '/api/balance', acct.billing), 200);
    assert.equal(nano(bal.balance), nano(10) - spend);

    // transactions: the opening payment, then one negative usage row per request, newest first
    const txns = assertJson(await api('GET', '/api/transactions?limit=50', acct.billing), 200).transactions;
    assert.equal(txns.length, 4, JSON.stringify(txns));
    for (const t of txns) {
        for (const f of ['id', 'amount', 'type', 'description', 'createdAt']) assert.ok(f in t, f);
        assert.match(t.createdAt, ISO);
    }
    assert.ok(txns.every((t, i) => i === 0 || txns[i - 1].id > t.id), 'newest first');
    const payment = txns[txns.length - 1];
    assert.equal(payment.type, 'payment');
    assert.equal(payment.amount, 10);
    const usage = txns.filter((t) => t.type === 'usage');
    assert.equal(usage.length, 3);
    assert.ok(usage.every((t) => t.amount < 0), 'usage transactions are negative');
    assert.equal(-usage.reduce((s, t) => s + nano(t.amount), 0), spend);
    // the sum of the transactions is the balance
    assert.equal(txns.reduce((s, t) => s + nano(t.amount), 0), nano(bal.balance));
    const t1 = assertJson(await api('GET', '/api/transactions?limit=1&offset=3', acct.billing), 200).transactions;
    assert.deepEqual(t1, [payment]);

    // a top-up shows as a payment and in the balance at once
    assertJson(await admin('POST', `/admin/accounts/${acct.id}/topup`, { amount: 2.5, description: 'wire 42' }), 200);
    const newest = assertJson(await api('GET', '/api/transactions?limit=1', acct.billing), 200).transactions[0];
    assert.equal(newest.type, 'payment');
    assert.equal(newest.amount, 2.5);
    assert.equal(newest.description, 'wire 42');
    // the in-memory balance takes the top-up in when billing re-reads the account (poked at once)
    const want = nano(12.5) - spend;
    const bal2 = await h.eventually(async () => {
        const b = assertJson(await api('GET', '/api/balance', acct.billing), 200);
        return nano(b.balance) === want ? b : null;
    }, h.scaled(1000));
    assert.ok(bal2.value, `balance after the top-up, want ${want / 1e9}`);
});

test('usage and stats of an account without requests are empty', T, async () => {
    const acct = await adminAccount('quiet', 0);
    assert.deepEqual(assertJson(await api('GET', '/api/usage', acct.billing), 200), { usage: [] });
    const stats = assertJson(await api('GET', '/api/usage/stats', acct.billing), 200);
    assert.deepEqual(stats, {
        overall: {
            requests: 0, promptTokens: 0, cachedTokens: 0, cacheWriteTokens: 0, cacheWrite1hTokens: 0,
            completionTokens: 0, reasoningTokens: 0, spend: 0,
        },
        byModel: [],
    });
    assert.deepEqual(assertJson(await api('GET', '/api/usage/stats?group_by=key', acct.billing), 200).byKey, []);
    assert.deepEqual(assertJson(await api('GET', '/api/usage/stats?group_by=day', acct.billing), 200).byDay, []);
    assert.deepEqual(assertJson(await api('GET', '/api/transactions', acct.billing), 200), { transactions: [] });
    assert.deepEqual(assertJson(await api('GET', '/api/balance', acct.billing), 200), { balance: 0 });
});

test('usage filters (model, key_id, from, to) and statistics by model, key and day', T, async () => {
    const acct = await adminAccount('filters', 10);
    const k1 = assertJson(await api('POST', '/api/keys', acct.billing, { name: 'k1' }), 201);
    const k2 = assertJson(await api('POST', '/api/keys', acct.billing, { name: 'k2' }), 201);
    const embed = (key, input) => h.post(gw, '/v1/embeddings', key, { model: 'echo-embed-1', input });
    // oldest first: k1 chat, k2 chat, k1 embeddings, k2 embeddings
    for (const r of [await chat(k1.key), await chat(k2.key), await embed(k1.key, 'a b c'),
        await embed(k2.key, 'd e')]) {
        assert.equal(r.status, 200, r.text);
    }
    const all = assertJson(await api('GET', '/api/usage', acct.billing), 200).usage;
    assert.equal(all.length, 4);
    for (const row of all) {
        for (const f of ['id', 'requestId', 'model', 'provider', 'keyId', 'promptTokens', 'cachedTokens',
            'cacheWriteTokens', 'cacheWrite1hTokens', 'completionTokens', 'reasoningTokens', 'chargedAmount',
            'status', 'latencyMs', 'createdAt']) {
            assert.ok(f in row, `usage field ${f}: ${JSON.stringify(row)}`);
        }
        assert.equal(row.provider, 'local');
        assert.equal(row.status, 200);
        assert.match(row.requestId, /\S/);
        assert.equal(row.cachedTokens + row.cacheWriteTokens + row.reasoningTokens, 0, 'echo reports none');
    }
    const ids = (rows) => rows.map((r) => r.id);
    const q = async (query) => assertJson(await api('GET', `/api/usage?${query}`, acct.billing), 200).usage;
    const byModel = (m) => all.filter((r) => r.model === m);
    const byKey = (k) => all.filter((r) => r.keyId === k);

    assert.deepEqual(ids(await q('model=echo-1')), ids(byModel('echo-1')));
    assert.equal(byModel('echo-1').length, 2);
    assert.deepEqual(ids(await q('model=echo%2Dembed%2D1')), ids(byModel('echo-embed-1')), 'percent-decoded');
    assert.deepEqual(await q('model=no-such-model'), []);
    assert.deepEqual(ids(await q(`key_id=${k2.id}`)), ids(byKey(k2.id)));
    assert.deepEqual(ids(await q(`key_id=${k1.id}&model=echo-embed-1`)), [all[1].id]);
    assert.deepEqual(ids(await q(`key_id=${k1.id}&limit=1&offset=1`)), [all[3].id], 'filters page too');
    // a key of another account: nothing (and nothing revealed)
    assert.deepEqual(await q("key_id=1"), []); // the first key made: cli-proxy of account alpha
    // from and to are inclusive; a date as `to` covers that whole day
    const [newest, , , oldest] = all;
    assert.deepEqual(ids(await q(`from=${encodeURIComponent(newest.createdAt)}`)).includes(newest.id), true);
    assert.deepEqual(ids(await q(`to=${encodeURIComponent(oldest.createdAt)}`)).includes(oldest.id), true);
    assert.deepEqual(ids(await q(`from=${oldest.createdAt}&to=${newest.createdAt}`)), ids(all));
    const today = newest.createdAt.slice(0, 10);
    assert.deepEqual(ids(await q(`from=${today}&to=${today}`)), ids(all));
    assert.deepEqual(await q('to=2000-01-01'), []);
    assert.deepEqual(await q('from=2999-01-01T00:00:00Z'), []);
    assert.deepEqual(ids(await q('from=2000-01-01T00:00:00%2B00:00')), ids(all), 'an encoded +00:00');

    for (const [query, param] of [['model=', 'model'], [`model=${'m'.repeat(128)}`, 'model'],
        ['model=%zz', 'model'], ['key_id=0', 'key_id'], ['key_id=abc', 'key_id'], ['from=yesterday', 'from'],
        ['to=2026-13-01', 'to'], ['from=2026-03-02&to=2026-03-01', 'to']]) {
        h.assertError(assert, await api('GET', `/api/usage?${query}`, acct.billing), 400,
            'invalid_request_error', 'invalid_parameter', param);
    }

    // statistics: the same filters; byModel always, byKey and byDay when asked
    const stats = async (query) => assertJson(await api('GET', `/api/usage/stats?${query}`, acct.billing), 200);
    const sum = (rows, f) => rows.reduce((s, r) => s + r[f], 0);
    const spend = (rows) => rows.reduce((s, r) => s + nano(r.chargedAmount), 0);
    const s0 = await stats('');
    assert.equal(s0.overall.requests, 4);
    assert.equal(s0.overall.promptTokens, sum(all, 'promptTokens'));
    assert.equal(s0.overall.cachedTokens, 0);
    assert.equal(nano(s0.overall.spend), spend(all));
    assert.equal(s0.byModel.length, 2);
    assert.ok(!('byKey' in s0) && !('byDay' in s0));
    const sk = await stats('group_by=key');
    assert.deepEqual(sk.byKey.map((r) => r.keyId).sort(), [k1.id, k2.id].sort());
    for (const r of sk.byKey) {
        const mine = byKey(r.keyId);
        assert.equal(r.requests, 2);
        assert.equal(r.promptTokens, sum(mine, 'promptTokens'));
        assert.equal(r.completionTokens, sum(mine, 'completionTokens'));
        assert.equal(nano(r.spend), spend(mine));
        assert.ok('cachedTokens' in r && 'reasoningTokens' in r);
    }
    const sd = await stats('group_by=day');
    assert.deepEqual(sd.byDay.map((r) => r.date), [today]);
    assert.deepEqual({ ...sd.byDay[0], date: undefined }, { ...sd.overall, date: undefined });
    const sm = await stats(`group_by=model&key_id=${k1.id}`);
    assert.equal(sm.overall.requests, 2);
    assert.deepEqual(sm.byModel.map((r) => r.requests), [1, 1]);
    const se = await stats('model=echo-embed-1&group_by=key');
    assert.equal(se.overall.requests, 2);
    assert.equal(se.overall.completionTokens, 0);
    assert.equal(nano(se.overall.spend), spend(byModel('echo-embed-1')));
    const none = await stats('to=2000-01-01&group_by=day');
    assert.equal(none.overall.requests, 0);
    assert.deepEqual(none.byDay, []);
    for (const [query, param] of [['group_by=week', 'group_by'], ['group_by=', 'group_by'],
        ['from=x', 'from'], ['key_id=-1', 'key_id']]) {
        h.assertError(assert, await api('GET', `/api/usage/stats?${query}`, acct.billing), 400,
            'invalid_request_error', 'invalid_parameter', param);
    }
});

// --- operator API --------------------------------------------------------------------------------

test('admin: missing or wrong token is 401; unknown paths 404; wrong methods 405', T, async () => {
    h.assertError(assert, await h.get(gw, '/admin/accounts'), 401, 'authentication_error', 'missing_api_key');
    for (const wrong of ['nope', ADMIN + 'x', ADMIN.slice(0, -1), billingA, proxyA]) {
        h.assertError(assert, await admin('GET', '/admin/accounts', undefined, wrong), 401,
            'invalid_request_error', 'invalid_api_key');
    }
    h.assertError(assert, await admin('GET', '/admin/nope'), 404, 'not_found_error', 'not_found');
    h.assertError(assert, await admin('GET', '/admin/nope', undefined, 'wrong'), 401,
        'invalid_request_error', 'invalid_api_key');
    // the admin token is not a billing key
    h.assertError(assert, await api('GET', '/api/balance', ADMIN), 401, 'invalid_request_error', 'invalid_api_key');
    for (const [method, p, allow] of [['DELETE', '/admin/accounts', 'GET, POST'],
        ['POST', `/admin/accounts/${acctA}`, 'GET'], ['GET', `/admin/accounts/${acctA}/topup`, 'POST'],
        ['GET', `/admin/accounts/${acctA}/billing-keys`, 'POST']]) {
        const res = await admin(method, p, method === 'GET' ? undefined : {});
        h.assertError(assert, res, 405, 'invalid_request_error', 'method_not_allowed');
        assert.equal(res.headers.get('allow'), allow);
    }
});

test('admin: create, list, show, top up, first billing key', T, async () => {
    const before = Date.now();
    const a = assertJson(await admin('POST', '/admin/accounts', { name: 'gamma', balance: 20.75 }), 201);
    assert.equal(typeof a.id, 'number');
    assert.equal(a.name, 'gamma');
    assert.equal(a.balance, 20.75);
    assert.match(a.createdAt, ISO);
    assert.ok(Date.parse(a.createdAt) >= before - 2000);

    const list = assertJson(await admin('GET', '/admin/accounts'), 200);
    assert.ok(Array.isArray(list.accounts));
    assert.deepEqual(list.accounts.find((x) => x.id === a.id), a);
    assert.ok(list.accounts.some((x) => String(x.id) === String(acctA) && x.name === 'alpha'));

    assert.deepEqual(assertJson(await admin('GET', `/admin/accounts/${a.id}`), 200), a);
    h.assertError(assert, await admin('GET', '/admin/accounts/999999'), 404, 'not_found_error', 'not_found');

    const t = assertJson(await admin('POST', `/admin/accounts/${a.id}/topup`, { amount: 0.25 }), 200);
    assert.deepEqual(t, { id: a.id, balance: 21 });
    const t2 = await admin('POST', `/admin/accounts/${a.id}/topup`, '{"amount":0.000000001,"description":null}');
    assert.match(t2.text, /"balance":21\.000000001[,}]/);
    h.assertError(assert, await admin('POST', '/admin/accounts/999999/topup', { amount: 1 }), 404,
        'not_found_error', 'not_found');

    const bk = assertJson(await admin('POST', `/admin/accounts/${a.id}/billing-keys`, { name: 'owner' }), 201);
    assertKeyShape(bk);
    assert.match(bk.key, /^mk-[A-Za-z0-9]{40}$/);
    assert.equal(bk.name, 'owner');
    // usable at once, and it sees the topped-up balance (billing is poked by each top-up)
    const bal = await h.eventually(async () => {
        const r = await api('GET', '/api/balance', bk.key);
        assert.equal(r.status, 200, r.text);
        return /^\{"balance":21\.000000001\}$/.test(r.text) ? r : null;
    }, h.scaled(1000));
    assert.ok(bal.value, 'the balance shows both top-ups');
    h.assertError(assert, await admin('POST', '/admin/accounts/999999/billing-keys', { name: 'x' }), 404,
        'not_found_error', 'not_found');

    // the account's own API shows the payments
    const txns = assertJson(await api('GET', '/api/transactions', bk.key), 200).transactions;
    assert.deepEqual(txns.map((x) => [x.type, x.amount]),
        [['payment', 0.000000001], ['payment', 0.25], ['payment', 20.75]]);
});

test('admin: bad bodies', T, async () => {
    const balanceBefore = assertJson(await api('GET', '/api/balance', billingA), 200);
    const cases = [
        ['POST', '/admin/accounts', 'nope', 'invalid_json', null],
        ['POST', '/admin/accounts', {}, 'missing_required_parameter', 'name'],
        ['POST', '/admin/accounts', { balance: 5 }, 'missing_required_parameter', 'name'],
        ['POST', '/admin/accounts', { name: '' }, 'invalid_parameter', 'name'],
        ['POST', '/admin/accounts', { name: 3 }, 'invalid_parameter', 'name'],
        ['POST', '/admin/accounts', { name: ' \t ' }, 'invalid_parameter', 'name'],
        ['POST', '/admin/accounts', { name: 'x', balance: -1 }, 'invalid_parameter', 'balance'],
        ['POST', '/admin/accounts', { name: 'x', balance: '5' }, 'invalid_parameter', 'balance'],
        ['POST', '/admin/accounts', { name: 'x', owner: 'y' }, 'invalid_parameter', 'owner'],
        ['POST', `/admin/accounts/${acctA}/topup`, {}, 'missing_required_parameter', 'amount'],
        ['POST', `/admin/accounts/${acctA}/topup`, { amount: 0 }, 'invalid_parameter', 'amount'],
        ['POST', `/admin/accounts/${acctA}/topup`, { amount: -5 }, 'invalid_parameter', 'amount'],
        ['POST', `/admin/accounts/${acctA}/topup`, { amount: '5' }, 'invalid_parameter', 'amount'],
        ['POST', `/admin/accounts/${acctA}/topup`, { amount: 1, description: 7 }, 'invalid_parameter', 'description'],
        ['POST', `/admin/accounts/${acctA}/topup`, { amount: 1, memo: 'x' }, 'invalid_parameter', 'memo'],
        ['POST', `/admin/accounts/${acctA}/billing-keys`, { name: 1 }, 'invalid_parameter', 'name'],
        ['POST', `/admin/accounts/${acctA}/billing-keys`, { spend_limit: 1 }, 'invalid_parameter', 'spend_limit'],
    ];
    for (const [method, p, body, code, param] of cases) {
        const res = await admin(method, p, body);
        h.assertError(assert, res, 400, 'invalid_request_error', code, param);
    }
    // account A's balance is untouched by the refused top-ups
    await h.sleep(100);
    assert.deepEqual(assertJson(await api('GET', '/api/balance', billingA), 200), balanceBefore);
});

test('admin: amounts get a clear 400 naming the field (zero, negative, text, NaN, decimals, huge)', T, async () => {
    const txnsBefore = assertJson(await api('GET', '/api/transactions', billingA), 200);
    const topup = `/admin/accounts/${acctA}/topup`;
    const cases = [
        // [body, message pattern]
        ['{"amount":0}', /> 0/],
        ['{"amount":-0}', /> 0/],
        ['{"amount":-5}', /> 0/],
        ['{"amount":-1e30}', /> 0/],
        ['{"amount":"5"}', /number/],
        ['{"amount":"NaN"}', /number/],
        ['{"amount":"Infinity"}', /number/],
        ['{"amount":null}', /number/],
        ['{"amount":true}', /number/],
        ['{"amount":1.0000000001}', /9 decimal places/],
        ['{"amount":1e-10}', /9 decimal places/],
        ['{"amount":1000000000.000000001}', /maximum/],
        ['{"amount":9223372036}', /maximum/], // fits int64 nano-dollars alone: was a 500
        ['{"amount":9223372037}', /maximum/],
        ['{"amount":1e30}', /maximum/],
        ['{"amount":123456789012345678901234567890}', /maximum/],
    ];
    for (const [body, msg] of cases) {
        const res = await admin('POST', topup, body);
        h.assertError(assert, res, 400, 'invalid_request_error', 'invalid_parameter', 'amount');
        assert.match(res.json.error.message, msg, `${body}: ${res.text}`);
    }
    // bare NaN or Infinity is not JSON at all
    for (const body of ['{"amount":NaN}', '{"amount":Infinity}']) {
        h.assertError(assert, await admin('POST', topup, body), 400, 'invalid_request_error', 'invalid_json');
    }
    // the same rules for an opening balance (zero allowed there)
    for (const [body, msg] of [['{"name":"x","balance":-1}', />= 0/], ['{"name":"x","balance":"1"}', /number/],
        ['{"name":"x","balance":0.0000000001}', /9 decimal places/],
        ['{"name":"x","balance":9223372036}', /maximum/], ['{"name":"x","balance":1e30}', /maximum/]]) {
        const res = await admin('POST', '/admin/accounts', body);
        h.assertError(assert, res, 400, 'invalid_request_error', 'invalid_parameter', 'balance');
        assert.match(res.json.error.message, msg, `${body}: ${res.text}`);
    }
    assert.deepEqual(assertJson(await api('GET', '/api/transactions', billingA), 200), txnsBefore);
});

test('admin: the maximum balance (USD 1000000000): opening balance and top-ups past it are 400', T, async () => {
    const max = assertJson(await admin('POST', '/admin/accounts', { name: 'max', balance: 1000000000 }), 201);
    assert.equal(max.balance, 1000000000);
    const over = await admin('POST', '/admin/accounts', '{"name":"over","balance":1000000000.000000001}');
    h.assertError(assert, over, 400, 'invalid_request_error', 'invalid_parameter', 'balance');
    assert.match(over.json.error.message, /maximum/);

    const a = await adminAccount('near-max', 999999999);
    // up to the maximum exactly is fine ...
    assert.deepEqual(assertJson(await admin('POST', `/admin/accounts/${a.id}/topup`, { amount: 0.5 }), 200),
        { id: a.id, balance: 999999999.5 });
    assert.deepEqual(assertJson(await admin('POST', `/admin/accounts/${a.id}/topup`, { amount: 0.5 }), 200),
        { id: a.id, balance: 1000000000 });
    // ... one nano-dollar more is refused, naming amount and saying why
    for (const body of ['{"amount":0.000000001}', '{"amount":1000000000}', '{"amount":9223372036}']) {
        const res = await admin('POST', `/admin/accounts/${a.id}/topup`, body);
        h.assertError(assert, res, 400, 'invalid_request_error', 'invalid_parameter', 'amount');
        assert.match(res.json.error.message, /maximum balance/, res.text);
    }
    const full = await admin('POST', `/admin/accounts/${a.id}/topup`, { amount: 1 });
    assert.match(full.json.error.message, /1000000000/, full.text);
    // nothing was booked, and the account still works
    const txns = assertJson(await api('GET', '/api/transactions', a.billing), 200).transactions;
    assert.deepEqual(txns.map((x) => x.amount), [0.5, 0.5, 999999999]);
    assert.deepEqual(assertJson(await api('GET', '/api/balance', a.billing), 200), { balance: 1000000000 });
    assert.deepEqual(assertJson(await admin('GET', `/admin/accounts/${a.id}`), 200).balance, 1000000000);
});

test('admin: disabled (404 everywhere) when no admin token is configured', T, async () => {
    const off = await h.startGateway({ mock: false, config: { server: { admin_token: '' } } });
    try {
        for (const [method, p] of [['GET', '/admin/accounts'], ['POST', '/admin/accounts'],
            ['GET', '/admin/accounts/1'], ['POST', '/admin/accounts/1/topup'], ['GET', '/admin/x']]) {
            for (const token of [undefined, '', ADMIN]) {
                const res = await h.request(off, method, p, { key: token, body: method === 'POST' ? { name: 'x' } : undefined });
                h.assertError(assert, res, 404, 'not_found_error', 'not_found');
            }
        }
    } finally {
        await off.stop();
    }
});
