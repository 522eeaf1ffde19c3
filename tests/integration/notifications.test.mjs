// The account API's additions for the dashboard, end to end: notification settings
// (GET/PUT /api/settings/notifications: validation, both spellings of the contract's fields, the
// webhook secret shown once and rotated, isolation between accounts); the low-balance webhook,
// received by an HTTP server of this file on loopback, its HMAC signature verified: one POST when
// the balance falls below the threshold, none while it stays below, one again after a top-up
// lifts it back, none again after a restart; a failing webhook retried with the same event id
// and a hanging one, neither in the way of requests or of shutdown; loopback refused unless
// notifications.allow_private_networks; the running balance of GET /api/transactions
// (balanceAfter); and the operator's account fields (keys, spent).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const ADMIN = 'adm-notify-test-5c2a';
const HELLO = { model: 'echo-1', messages: [{ role: 'user', content: 'hi' }] };
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$/;
const SECRET = /^whsec_[0-9A-Za-z]{40}$/;

// ---- money as exact nano-dollars (BigInt), never floats ----------------------------------------

/** The exact nano-dollars of a decimal text ("0.000001", "1500.5", "-3"). */
function nano(text) {
    const m = /^(-?)(\d+)(?:\.(\d{1,9}))?$/.exec(String(text));
    if (!m) throw new Error(`not an exact decimal: ${text}`);
    const v = BigInt(m[2]) * 1000000000n + BigInt((m[3] ?? '').padEnd(9, '0'));
    return m[1] ? -v : v;
}
/** The decimal text of nano-dollars, as the gateway writes it. */
function usd(n) {
    const neg = n < 0n;
    const a = neg ? -n : n;
    const frac = (a % 1000000000n).toString().padStart(9, '0').replace(/0+$/, '');
    return `${neg ? '-' : ''}${a / 1000000000n}${frac ? '.' + frac : ''}`;
}
/** JSON numbers of a body, by name, as their exact text (JSON.parse would make them floats). */
function rawNumber(text, name) {
    const m = new RegExp(`"${name}":(-?[0-9.eE+-]+)`).exec(text);
    if (!m) throw new Error(`no number ${name} in ${text}`);
    return nano(m[1]);
}

// ---- the receiving end ------------------------------------------------------------------------

/**
 * An HTTP server on loopback that records every request. Paths: /ok answers 204, /fail 500,
 * /hang never answers (until close).
 */
async function startReceiver() {
    const got = [];
    const hanging = [];
    const server = http.createServer((req, res) => {
        let body = '';
        req.setEncoding('utf8');
        req.on('data', (d) => { body += d; });
        req.on('end', () => {
            const path = req.url.split('?')[0];
            got.push({ method: req.method, url: req.url, path, headers: req.headers, body });
            if (path === '/hang') { hanging.push(res); return; }
            res.writeHead(path === '/fail' ? 500 : 204);
            res.end();
        });
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${server.address().port}`;
    return {
        base,
        got,
        to: (path) => got.filter((r) => r.path === path),
        async waitFor(path, n, ms = h.scaled(15000)) {
            const deadline = Date.now() + ms;
            while (got.filter((r) => r.path === path).length < n) {
                if (Date.now() > deadline) {
                    throw new Error(`${path}: ${got.filter((r) => r.path === path).length} of ${n} ` +
                        `webhooks within ${ms} ms`);
                }
                await h.sleep(25);
            }
            return got.filter((r) => r.path === path);
        },
        async close() {
            for (const r of hanging) r.destroy();
            server.closeAllConnections?.();
            await new Promise((resolve) => server.close(resolve));
        },
    };
}

/** Checks a webhook's signature header against its raw body with secret; returns the body. */
function verified(r, secret) {
    assert.equal(r.method, 'POST');
    assert.match(r.headers['content-type'] ?? '', /^application\/json/);
    const sig = r.headers['x-modelswitch-signature'] ?? '';
    const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(sig);
    assert.ok(m, `signature header: ${sig}`);
    const want = crypto.createHmac('sha256', secret).update(`${m[1]}.${r.body}`).digest('hex');
    assert.ok(crypto.timingSafeEqual(Buffer.from(m[2], 'hex'), Buffer.from(want, 'hex')),
        'the HMAC of "t.body" with the secret');
    assert.ok(Math.abs(Number(m[1]) - Date.now() / 1000) < 600, `timestamp ${m[1]}`);
    const body = JSON.parse(r.body);
    assert.equal(r.headers['x-modelswitch-event-id'], body.id);
    assert.deepEqual(Object.keys(body), ['id', 'type', 'createdAt', 'accountId', 'balance', 'threshold']);
    assert.match(body.id, /^evt_[0-9A-Za-z_-]+$/);
    assert.equal(body.type, 'balance.low');
    assert.match(body.createdAt, ISO);
    return body;
}

// ---- the gateway --------------------------------------------------------------------------------

let gw, rx;

before(async () => {
    rx = await startReceiver();
    gw = await h.startGateway({
        mock: false,
        config: { server: { admin_token: ADMIN }, notifications: { allow_private_networks: true } },
    });
});
after(async () => {
    await gw?.stop();
    await rx?.close();
});

const api = (method, p, key, body) => h.request(gw, method, p, { key, body });
const admin = (method, p, body) => h.request(gw, method, p, { key: ADMIN, body });
const SETTINGS = '/api/settings/notifications';

function ok(res, status = 200) {
    assert.equal(res.status, status, res.text);
    assert.ok(res.json && typeof res.json === 'object', res.text);
    return res.json;
}

/** An account made through the operator API with a billing key and a proxy key. */
async function account(name, balance) {
    const a = ok(await admin('POST', '/admin/accounts', { name, balance }), 201);
    const billing = ok(await admin('POST', `/admin/accounts/${a.id}/billing-keys`, { name: 'owner' }), 201).key;
    const proxy = ok(await api('POST', '/api/keys', billing, { name: 'app' }), 201);
    return { id: a.id, billing, proxy: proxy.key, proxyId: proxy.id };
}

/** One chat request; returns its cost in nano-dollars. */
async function spend(gateway, key) {
    const res = await h.post(gateway, '/v1/chat/completions', key, HELLO);
    assert.equal(res.status, 200, res.text);
    return nano(res.headers.get('x-modelswitch-cost'));
}

async function balanceOf(gateway, billing) {
    const res = await h.get(gateway, '/api/balance', billing);
    assert.equal(res.status, 200, res.text);
    return rawNumber(res.text, 'balance');
}

/** A top-up of exactly n nano-dollars (the body written by hand: no float in between). */
async function topup(gateway, id, n) {
    const res = await h.request(gateway, 'POST', `/admin/accounts/${id}/topup`,
        { key: ADMIN, body: `{"amount":${usd(n)}}` });
    assert.equal(res.status, 200, res.text);
}

// ---- settings ---------------------------------------------------------------------------------

test('settings: defaults, a threshold, a webhook with its secret shown once, rotation, clearing', T, async () => {
    const a = await account('settings', 10);
    const none = { lowBalanceThreshold: null, webhookUrl: null, webhookSecretPrefix: null, updatedAt: null };
    assert.deepEqual(ok(await api('GET', SETTINGS, a.billing)), none);
    assert.deepEqual(ok(await api('PUT', SETTINGS, a.billing, {})), none, '{} changes nothing');

    let s = ok(await api('PUT', SETTINGS, a.billing, { low_balance_threshold: 5 }));
    assert.equal(s.lowBalanceThreshold, 5);
    assert.equal(s.webhookUrl, null);
    assert.ok(!('webhookSecret' in s), 'no webhook, no secret');
    assert.match(s.updatedAt, ISO);

    const url = `${rx.base}/ok?token=abc`;
    s = ok(await api('PUT', SETTINGS, a.billing, { webhook_url: url }));
    assert.equal(s.lowBalanceThreshold, 5);
    assert.equal(s.webhookUrl, url);
    assert.match(s.webhookSecret, SECRET);
    assert.equal(s.webhookSecretPrefix, s.webhookSecret.slice(0, 8));
    assert.deepEqual(Object.keys(s), ['lowBalanceThreshold', 'webhookUrl', 'webhookSecret',
        'webhookSecretPrefix', 'updatedAt']);
    const secret = s.webhookSecret;

    // read back: never the secret itself
    s = ok(await api('GET', SETTINGS, a.billing));
    assert.ok(!('webhookSecret' in s));
    assert.equal(s.webhookSecretPrefix, secret.slice(0, 8));
    assert.ok(!JSON.stringify(s).includes(secret.slice(8)));

    // the contract's spellings; a changed threshold or URL keeps the secret
    s = ok(await api('PUT', SETTINGS, a.billing, { lowBalanceThreshold: 2.5, webhookUrl: `${rx.base}/ok` }));
    assert.equal(s.lowBalanceThreshold, 2.5);
    assert.equal(s.webhookUrl, `${rx.base}/ok`);
    assert.ok(!('webhookSecret' in s));
    // exact money: 1e-9 and JavaScript's exponent form
    s = ok(await api('PUT', SETTINGS, a.billing, { low_balance_threshold: 1e-7 }));
    assert.equal(s.lowBalanceThreshold, 1e-7);

    s = ok(await api('PUT', SETTINGS, a.billing, { rotate_secret: true }));
    assert.match(s.webhookSecret, SECRET);
    assert.notEqual(s.webhookSecret, secret);
    s = ok(await api('PUT', SETTINGS, a.billing, { rotate_secret: false }));
    assert.ok(!('webhookSecret' in s));

    // clearing: the secret goes with the webhook; a new webhook gets a new one
    s = ok(await api('PUT', SETTINGS, a.billing, { webhook_url: null, low_balance_threshold: null }));
    assert.equal(s.webhookUrl, null);
    assert.equal(s.lowBalanceThreshold, null);
    assert.equal(s.webhookSecretPrefix, null);
    s = ok(await api('PUT', SETTINGS, a.billing, { webhook_url: `${rx.base}/ok` }));
    assert.match(s.webhookSecret, SECRET);
});

test('settings: bad bodies are 400 with param, and nothing changes', T, async () => {
    const a = await account('settings-bad', 10);
    const before = ok(await api('PUT', SETTINGS, a.billing,
        { low_balance_threshold: 3, webhook_url: `${rx.base}/ok` }));
    delete before.webhookSecret;
    const bad = async (body, param, code = 'invalid_parameter') => {
        h.assertError(assert, await api('PUT', SETTINGS, a.billing, body), 400,
            'invalid_request_error', code, param);
    };
    await bad({ low_balance_threshold: 0 }, 'low_balance_threshold');
    await bad({ low_balance_threshold: -1 }, 'low_balance_threshold');
    await bad({ low_balance_threshold: '5' }, 'low_balance_threshold');
    await bad({ low_balance_threshold: 0.0000000001 }, 'low_balance_threshold');
    await bad({ low_balance_threshold: 1000000000.5 }, 'low_balance_threshold');
    await bad({ lowBalanceThreshold: true }, 'lowBalanceThreshold');
    await bad({ webhook_url: 'ftp://example.com/x' }, 'webhook_url');
    await bad({ webhook_url: 'example.com/x' }, 'webhook_url');
    await bad({ webhook_url: 'https://' }, 'webhook_url');
    await bad({ webhook_url: 'https://user:pw@example.com/' }, 'webhook_url');
    await bad({ webhook_url: 'https://exa mple.com/' }, 'webhook_url');
    await bad({ webhook_url: `https://example.com/${'a'.repeat(2029)}` }, 'webhook_url');
    await bad({ webhook_url: 7 }, 'webhook_url');
    await bad({ webhookUrl: '' }, 'webhookUrl');
    await bad({ rotate_secret: 'yes' }, 'rotate_secret');
    await bad({ rotate_secret: true, webhook_url: null }, 'rotate_secret');
    await bad({ threshold: 5 }, 'threshold');
    await bad({ low_balance_threshold: 4, lowBalanceThreshold: 4 }, 'lowBalanceThreshold');
    await bad({ webhook_url: `${rx.base}/a`, webhook_url2: 1 }, 'webhook_url2');
    h.assertError(assert, await api('PUT', SETTINGS, a.billing, '{"low_balance_threshold":'), 400,
        'invalid_request_error', 'invalid_json');
    h.assertError(assert, await api('PUT', SETTINGS, a.billing, '[1]'), 400,
        'invalid_request_error', 'invalid_json');
    // the longest URL that passes: 2048 bytes
    const longest = `https://example.com/${'a'.repeat(2028)}`;
    assert.equal(longest.length, 2048);
    const s = ok(await api('PUT', SETTINGS, a.billing, { webhook_url: longest }));
    assert.equal(s.webhookUrl, longest);
    ok(await api('PUT', SETTINGS, a.billing, { webhook_url: before.webhookUrl }));
    const after = ok(await api('GET', SETTINGS, a.billing));
    assert.equal(after.lowBalanceThreshold, 3);
    assert.equal(after.webhookSecretPrefix, before.webhookSecretPrefix);

    // rotation needs a webhook
    const b = await account('no-webhook', 1);
    h.assertError(assert, await api('PUT', SETTINGS, b.billing, { rotate_secret: true }), 400,
        'invalid_request_error', 'invalid_parameter', 'rotate_secret');
});

test('settings: per account; proxy keys refused; other methods 405', T, async () => {
    const a = await account('iso-a', 1);
    const b = await account('iso-b', 1);
    ok(await api('PUT', SETTINGS, a.billing, { low_balance_threshold: 0.5, webhook_url: `${rx.base}/ok` }));
    const sb = ok(await api('GET', SETTINGS, b.billing));
    assert.equal(sb.lowBalanceThreshold, null);
    assert.equal(sb.webhookUrl, null);
    ok(await api('PUT', SETTINGS, b.billing, { low_balance_threshold: 0.25 }));
    assert.equal(ok(await api('GET', SETTINGS, a.billing)).lowBalanceThreshold, 0.5);
    h.assertError(assert, await api('GET', SETTINGS, a.proxy), 403, 'permission_error', 'wrong_key_type');
    h.assertError(assert, await h.get(gw, SETTINGS), 401, 'authentication_error', 'missing_api_key');
    const res = await api('DELETE', SETTINGS, a.billing);
    h.assertError(assert, res, 405, 'invalid_request_error', 'method_not_allowed');
    assert.equal(res.headers.get('allow'), 'GET, PUT');
});

// ---- the webhook --------------------------------------------------------------------------------

test('webhook: one signed POST per fall below the threshold, again after a top-up, not after a restart', T, async () => {
    const a = await account('low', 0.001);
    const threshold = nano('0.001');
    const url = `${rx.base}/low?token=abc`;
    const s = ok(await api('PUT', SETTINGS, a.billing, { low_balance_threshold: 0.001, webhook_url: url }));
    const secret = s.webhookSecret;

    // the first charge takes the balance from the threshold to below it
    const c1 = await spend(gw, a.proxy);
    let got = await rx.waitFor('/low', 1);
    let b1 = verified(got[0], secret);
    assert.equal(b1.accountId, a.id);
    assert.equal(rawNumber(got[0].body, 'threshold'), threshold);
    assert.equal(rawNumber(got[0].body, 'balance'), threshold - c1);
    assert.equal(got[0].url, '/low?token=abc');

    // still below: nothing; a top-up back to the threshold re-arms; the next charge is news again
    const c2 = await spend(gw, a.proxy);
    await topup(gw, a.id, c1 + c2);
    assert.equal(await balanceOf(gw, a.billing), threshold);
    const c3 = await spend(gw, a.proxy);
    got = await rx.waitFor('/low', 2);
    const b2 = verified(got[1], secret);
    // the second notice is the third request's: none came for the second
    assert.equal(rawNumber(got[1].body, 'balance'), threshold - c3);
    assert.notEqual(b2.id, b1.id);

    // a restart below the threshold sends nothing again, and a request there none either
    const firstRun = gw.stderr;
    const r = await gw.signalAndWait('SIGTERM');
    h.checkSanitizerReports(firstRun, 'gateway');
    assert.equal(r.code, 0, firstRun.slice(-2000));
    await gw.restart();
    const c4 = await spend(gw, a.proxy);
    await topup(gw, a.id, c3 + c4);
    const c5 = await spend(gw, a.proxy);
    got = await rx.waitFor('/low', 3);
    const b3 = verified(got[2], secret);
    assert.equal(rawNumber(got[2].body, 'balance'), threshold - c5);
    assert.equal(new Set([b1.id, b2.id, b3.id]).size, 3);
    assert.equal(rx.to('/low').length, 3);

    // the log names where a webhook went, but never its path, query or secret
    const logs = firstRun + gw.stderr;
    assert.match(logs, /webhook: evt_\S+ \(balance\.low, account \d+\) delivered to http:\/\/127\.0\.0\.1:\d+ \(HTTP 204/);
    assert.ok(!logs.includes('token=abc'), 'the query of a webhook URL is not logged');
    assert.ok(!logs.includes(secret.slice(6)), 'the secret is not logged');
});

test('webhook: a failing receiver is retried with the same event id; requests are not held up', T, async () => {
    const a = await account('failing', 0.001);
    ok(await api('PUT', SETTINGS, a.billing, { low_balance_threshold: 0.001, webhook_url: `${rx.base}/fail` }));
    await spend(gw, a.proxy);
    // requests go on while the receiver fails
    for (let i = 0; i < 3; i++) await spend(gw, a.proxy);
    const got = await rx.waitFor('/fail', 2);
    const ids = got.map((r) => JSON.parse(r.body).id);
    assert.equal(ids[0], ids[1], 'a retry carries the same event id');
    for (const r of got) assert.match(r.headers['x-modelswitch-signature'], /^t=\d+,v1=[0-9a-f]{64}$/);
    const deadline = Date.now() + h.scaled(5000);
    while (!/failed: HTTP 500 \(attempt 1 of 8; next in 1 s\)/.test(gw.stderr)) {
        assert.ok(Date.now() < deadline, 'the failed attempt is logged');
        await h.sleep(25);
    }
});

test('transactions: balanceAfter is the running sum, the newest equals the balance, on every page', T, async () => {
    const a = await account('running', 1);
    for (let i = 0; i < 3; i++) await spend(gw, a.proxy);
    await topup(gw, a.id, nano('0.5'));
    for (let i = 0; i < 2; i++) await spend(gw, a.proxy);

    const all = await api('GET', '/api/transactions?limit=50', a.billing);
    const rows = ok(all).transactions;
    assert.equal(rows.length, 7); // opening balance, 3 + 2 usage, 1 payment
    // exact amounts from the raw text, oldest first
    const amounts = [...all.text.matchAll(/"amount":(-?[0-9.eE+-]+)/g)].map((m) => nano(m[1])).reverse();
    const after = [...all.text.matchAll(/"balanceAfter":(-?[0-9.eE+-]+)/g)].map((m) => nano(m[1])).reverse();
    let run = 0n;
    amounts.forEach((x, i) => {
        run += x;
        assert.equal(after[i], run, `row ${i}`);
    });
    assert.equal(after[after.length - 1], await balanceOf(gw, a.billing));
    for (const t of rows) assert.deepEqual(Object.keys(t), ['id', 'amount', 'type', 'description', 'createdAt', 'balanceAfter']);

    // pages of 2 agree with the whole list
    const paged = [];
    for (let off = 0; off < 8; off += 2) {
        const p = await api('GET', `/api/transactions?limit=2&offset=${off}`, a.billing);
        paged.push(...[...p.text.matchAll(/"balanceAfter":(-?[0-9.eE+-]+)/g)].map((m) => nano(m[1])));
    }
    assert.deepEqual(paged, [...after].reverse());
});

test('admin accounts: keys (live proxy keys) and spent (USD charged)', T, async () => {
    const created = ok(await admin('POST', '/admin/accounts', { name: 'ops', balance: 2 }), 201);
    assert.equal(created.keys, 0);
    assert.equal(created.spent, 0);
    const a = await account('ops-2', 2);
    const extra = ok(await api('POST', '/api/keys', a.billing, { name: 'extra' }), 201);
    const gone = ok(await api('POST', '/api/keys', a.billing, { name: 'gone' }), 201);
    assert.equal((await api('DELETE', `/api/keys/${gone.id}`, a.billing)).status, 204);
    await spend(gw, a.proxy);
    await spend(gw, extra.key);
    const stats = await api('GET', '/api/usage/stats', a.billing);
    const spent = rawNumber(stats.text, 'spend');
    assert.ok(spent > 0n);

    const one = await admin('GET', `/admin/accounts/${a.id}`);
    const acct = ok(one);
    assert.deepEqual(Object.keys(acct), ['id', 'name', 'balance', 'createdAt', 'keys', 'spent']);
    assert.equal(acct.keys, 2, 'two proxy keys left: the billing key and the deleted one do not count');
    assert.equal(rawNumber(one.text, 'spent'), spent);
    assert.equal(rawNumber(one.text, 'balance'), nano('2') - spent);
    const list = ok(await admin('GET', '/admin/accounts')).accounts;
    const row = list.find((x) => x.id === a.id);
    assert.equal(row.keys, 2);
    assert.equal(row.spent, acct.spent);
    assert.equal(list.find((x) => x.id === created.id).keys, 0);
    // the CLI's view of the same account
    const shown = (await gw.cli(['account', 'show', String(a.id)])).stdout;
    assert.match(shown, new RegExp(`^spent:\\s+${usd(spent).replace('.', '\\.')} USD$`, 'm'));
});

// ---- gateways of their own ----------------------------------------------------------------------

test('webhook: a receiver that never answers holds up neither requests nor shutdown', T, async () => {
    const g = await h.startGateway({
        mock: false,
        config: {
            server: { admin_token: ADMIN },
            notifications: { allow_private_networks: true, webhook_timeout_ms: 60000 },
        },
    });
    try {
        const res = await h.request(g, 'POST', '/admin/accounts', { key: ADMIN, body: { name: 'hang', balance: 0.001 } });
        const id = res.json.id;
        const billing = (await h.request(g, 'POST', `/admin/accounts/${id}/billing-keys`,
            { key: ADMIN, body: { name: 'o' } })).json.key;
        const proxy = (await h.request(g, 'POST', '/api/keys', { key: billing, body: { name: 'p' } })).json.key;
        ok(await h.request(g, 'PUT', SETTINGS,
            { key: billing, body: { low_balance_threshold: 0.001, webhook_url: `${rx.base}/hang` } }));
        await spend(g, proxy);
        await rx.waitFor('/hang', 1);
        // the sender is stuck in that POST: traffic is not
        for (let i = 0; i < 3; i++) await spend(g, proxy);
        assert.equal((await h.get(g, '/api/balance', billing)).status, 200);
    } finally {
        // exits 0 within the harness's deadline, long before the 60 s webhook timeout
        await g.stop();
    }
});

test('webhook: loopback and private addresses are refused unless allowed', T, async () => {
    const g = await h.startGateway({ mock: false, config: { server: { admin_token: ADMIN } } });
    try {
        const res = await h.request(g, 'POST', '/admin/accounts', { key: ADMIN, body: { name: 'p', balance: 0.001 } });
        const id = res.json.id;
        const billing = (await h.request(g, 'POST', `/admin/accounts/${id}/billing-keys`,
            { key: ADMIN, body: { name: 'o' } })).json.key;
        const proxy = (await h.request(g, 'POST', '/api/keys', { key: billing, body: { name: 'p' } })).json.key;
        ok(await h.request(g, 'PUT', SETTINGS,
            { key: billing, body: { low_balance_threshold: 0.001, webhook_url: `${rx.base}/private` } }));
        await spend(g, proxy);
        const deadline = Date.now() + h.scaled(10000);
        while (!/its address is on a private network/.test(g.stderr)) {
            assert.ok(Date.now() < deadline, `no refusal logged:\n${g.stderr.slice(-2000)}`);
            await h.sleep(25);
        }
        assert.match(g.stderr, /to http:\/\/127\.0\.0\.1:\d+ failed: its address is on a private network .*given up/);
        assert.equal(rx.to('/private').length, 0);
    } finally {
        await g.stop();
    }
});
