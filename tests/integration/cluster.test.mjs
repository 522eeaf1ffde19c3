// Several instances on one PostgreSQL store and one Redis (issue 13): balances, holds, rate limits
// and key revocation are exact across instances, and each part's crash costs what
// docs/OPERATIONS.md (*Several instances*) says. Every instance is a plain `modelswitch serve` on
// the same config (tests/lib/cluster.mjs); requests are spread over them round robin.
//
// Money is made exact on purpose: the models below price input at 0, so a request's hold is
// max_tokens x the output price, and the echo provider (or the mock, with as many chunks as
// max_tokens) answers exactly max_tokens completion tokens: every charge equals its hold. A
// balance of N holds then pays for exactly N requests whatever the timing (a charge below the
// hold would free room for more), and ends at exactly 0.
//
// A missing PostgreSQL or Redis fails these tests: scripts/install-deps.sh --test installs both.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import * as h from '../lib/harness.mjs';
import * as cl from '../lib/cluster.mjs';

const T = { timeout: h.scaled(120000) };
const PRICE_OUT = 1000; // USD per 1M output tokens: 1 000 000 nano-dollars per token
const PER_TOKEN = 1000000n;
const M = 10; // max_tokens of the ordinary request: its hold (and charge) is USD 0.01
const UNIT = BigInt(M) * PER_TOKEN;

const MODELS = {
    'echo-exact': { pricing: { input: 0, output: PRICE_OUT }, max_output_tokens: 1024,
        deployments: [{ provider: 'local', model: 'echo' }] },
    'mock-exact': { pricing: { input: 0, output: PRICE_OUT }, max_output_tokens: 1024,
        deployments: [{ provider: 'mock', model: 'exact-up' }] },
};
const CONFIG = { models: MODELS, server: { workers: 2, drain_timeout_ms: 5000 } };

/** An echo request answered with exactly mt tokens (the reply is cut there): charge = hold. */
function echoBody(tag, mt = M) {
    return JSON.stringify({
        model: 'echo-exact', max_tokens: mt,
        messages: [{ role: 'user', content: `${tag} ` + 'w '.repeat(mt + 5) }],
    });
}
/** A mock request of exactly mt completion tokens (one per chunk); mock options as given. */
function mockBody(tag, mock = {}, mt = M) {
    return JSON.stringify({
        model: 'mock-exact', max_tokens: mt, messages: [{ role: 'user', content: tag }],
        mock: { chunks: mt, prompt_tokens: 7, ...mock },
    });
}

let dir, pg;

before(async () => {
    dir = await cl.clusterTempDir();
    pg = await cl.PgServer.start(path.join(dir, 'pg'));
}, { timeout: h.scaled(120000) });

after(async () => {
    await pg?.stop();
    if (dir && process.env.MODELSWITCH_KEEP_TMP !== '1') await fsp.rm(dir, { recursive: true, force: true });
});

/** Runs fn with a started cluster and always stops it. */
async function withCluster(opts, fn) {
    const c = await cl.Cluster.start({ pg, config: CONFIG, ...opts });
    try {
        return await fn(c);
    } finally {
        await c.stop();
    }
}

/** count requests at once, request i on instance i mod n; results of cl.chatSettled. */
function burst(c, count, key, bodyOf, gws = c.running()) {
    return Promise.all(Array.from({ length: count }, (_, i) =>
        cl.chatSettled(gws[i % gws.length], key, typeof bodyOf === 'function' ? bodyOf(i) : bodyOf)));
}

const statuses = (rs) => JSON.stringify(rs.map((r) => r.status));
const cost = (r) => h.usdToNano(r.headers.get('x-modelswitch-cost'));

/**
 * The ledger invariant: each of oks' request ids is in the usage rows exactly once, charged its
 * x-modelswitch-cost; no row is for a request that got no 200; the balance is topups minus the
 * charges on every instance; `modelswitch audit` passes. mayMiss: request ids that may be absent
 * (answered by a killed instance just before it died, still in its memory).
 */
async function checkLedger(c, a, oks, { mayMiss = new Set(), balance } = {}) {
    const rows = await c.usage(a.billing);
    const byRid = new Map();
    for (const u of rows) byRid.set(u.requestId, (byRid.get(u.requestId) ?? 0) + 1);
    let charged = 0n;
    for (const u of rows) charged += h.usdToNano(u.chargedAmount);
    for (const r of oks) {
        const n = byRid.get(r.rid) ?? 0;
        if (n === 0 && mayMiss.has(r.rid)) continue;
        assert.equal(n, 1, `request ${r.rid} (instance ${r.instance}) is in the ledger ${n} times`);
    }
    const okIds = new Set(oks.map((r) => r.rid));
    const stray = rows.filter((u) => !okIds.has(u.requestId));
    assert.deepEqual(stray, [], 'usage rows of requests that got no 200');
    const want = balance ?? a.topups - charged;
    for (const g of c.running()) {
        const seen = await h.eventually(async () => (await h.balanceNano(g, a.billing)) === want, h.scaled(3000));
        assert.ok(seen.value, `instance ${g.index}: balance ${await h.balanceNano(g, a.billing)}, want ${want}`);
    }
    assert.ok(want >= 0n, `balance ${want} < 0`);
    const au = await c.audit();
    assert.equal(au.code, 0, `audit: ${au.stdout}${au.stderr}`);
    return rows;
}

/** N holds of balance, 10 x N requests at once over every instance: exactly N pass, balance 0. */
async function balanceCase(c, N) {
    const body = echoBody('balance');
    assert.equal(h.holdNano(c.gw[0], body), UNIT, 'the hold of the test request');
    const a = await c.account('balance', BigInt(N) * UNIT);
    const rs = await burst(c, 10 * N, a.key, body);
    const oks = rs.filter((r) => r.status === 200);
    assert.equal(oks.length, N, `statuses: ${statuses(rs)}`);
    for (const r of rs.filter((x) => x.status !== 200)) {
        h.assertError(assert, r, 403, 'permission_error', 'insufficient_balance');
    }
    for (const r of oks) assert.equal(cost(r), UNIT, 'each charge is its hold');
    const rows = await checkLedger(c, a, oks, { balance: 0n });
    assert.equal(rows.length, N, 'one usage row per 200, none for a refusal');
}

test('balance: N holds of balance, 10xN requests at once over three instances: exactly N pass', T, async (t) => {
    await withCluster({}, (c) => balanceCase(c, 5));
});

test('runs today: the balance case on one instance on SQLite', T, async () => {
    await withCluster({ sqlite: true, n: 1 }, (c) => balanceCase(c, 5));
});

/** A key of R rpm (key create --rpm) and one of 4 rpm set by PUT /api/keys/{id} on another instance. */
async function rpmCase(c) {
    const R = 10;
    const a = await c.account('rpm', 1000n * UNIT, { rpm: R });
    const check = (rs, r, what) => {
        const oks = rs.filter((x) => x.status === 200);
        assert.ok(Math.abs(oks.length - r) <= 1, `${what}: ${oks.length} answered, want ${r} +-1: ${statuses(rs)}`);
        for (const x of rs.filter((y) => y.status !== 200)) {
            h.assertError(assert, x, 429, 'rate_limit_error', 'rate_limit_exceeded');
            h.assertRetryAfter(assert, x, what);
        }
        return oks;
    };
    // The CLI's --rpm (set before any instance knew the key).
    check(await burst(c, 3 * R, a.key, (i) => echoBody(`rpm ${i}`)), R, 'key create --rpm');

    // The account API: PUT /api/keys/{id} on one instance, the limit holds on all of them.
    const g = c.gw[1 % c.gw.length];
    const k2 = await h.post(g, '/api/keys', a.billing, { name: 'second' });
    assert.equal(k2.status, 201, k2.text);
    const put = await h.request(g, 'PUT', `/api/keys/${k2.json.id}`, { key: a.billing, body: { rpm: 4 } });
    assert.equal(put.status, 200, put.text);
    assert.equal(put.json.rpm, 4);
    await h.sleep(h.scaled(1200)); // "other gateways on the same store see the change within a second"
    check(await burst(c, 15, k2.json.key, (i) => echoBody(`rpm2 ${i}`)), 4, 'PUT /api/keys/{id} rpm 4');
}

test('rate limits: a key of R rpm gets R (+-1) answers over three instances, then 429', T, async (t) => {
    await withCluster({}, rpmCase);
});

test('runs today: the rate-limit case on one instance on SQLite', T, async () => {
    await withCluster({ sqlite: true, n: 1 }, rpmCase);
});

/** A key deleted through instance 0 is refused by the others (by itself when alone) within 100 ms. */
async function revocationCase(c, t) {
    const a = await c.account('revoke', 1000n * UNIT);
    for (const g of c.gw) assert.equal((await cl.chat(g, a.key, echoBody('warm'))).status, 200, 'warm-up');
    const list = await h.get(c.gw[0], '/api/keys', a.billing);
    const id = list.json.keys.find((k) => a.key.startsWith(k.prefix)).id;
    const del = await h.request(c.gw[0], 'DELETE', `/api/keys/${id}`, { key: a.billing });
    assert.equal(del.status, 204, del.text);
    const t0 = Date.now();
    // Polls instance g every few ms until it refuses the key; ms since the DELETE's answer.
    const watch = async (g) => {
        const seen = [];
        for (;;) {
            const r = await cl.chat(g, a.key, echoBody('poll'));
            const at = Date.now() - t0;
            seen.push(r.status);
            if (r.status === 401) {
                h.assertError(assert, r, 401, 'invalid_request_error', 'invalid_api_key');
                return { at, seen };
            }
            assert.equal(r.status, 200, `instance ${g.index} before the 401: ${r.text}`);
            if (at > h.scaled(3000)) return { at: Infinity, seen };
            await h.sleep(3);
        }
    };
    const others = c.gw.length > 1 ? c.gw.slice(1) : c.gw;
    const [own, ...ws] = await Promise.all([cl.chat(c.gw[0], a.key, echoBody('own')), ...others.map(watch)]);
    h.assertError(assert, own, 401, 'invalid_request_error', 'invalid_api_key');
    t.diagnostic(`401 after ${ws.map((w, i) => `${w.at} ms (instance ${others[i].index})`).join(', ')}`);
    ws.forEach((w, i) => assert.ok(w.at <= h.scaled(100),
        `instance ${others[i].index} refused the deleted key only after ${w.at} ms: ${w.seen}`));
}

test('key revocation: deleted through one instance, refused (401) by the others within 100 ms', T, async (t) => {
    await withCluster({}, (c) => revocationCase(c, t));
});

test('runs today: the revocation case on one instance on SQLite', T, async (t) => {
    await withCluster({ sqlite: true, n: 1 }, (c) => revocationCase(c, t));
});

test('Redis killed: 503 with retry-after, never an overspend; back empty on its port: recovers, exact', T, async (t) => {
    const N = 10;
    await withCluster({}, async (c) => {
        const a = await c.account('redis', BigInt(N) * UNIT);
        const oks = [];
        const keep = (rs) => { for (const r of rs) if (r.status === 200) oks.push(r); return rs; };
        const pre = keep(await burst(c, 2, a.key, (i) => echoBody(`pre ${i}`)));
        assert.deepEqual(pre.map((r) => r.status), [200, 200]);

        await c.redis.kill9();
        const down = [];
        for (let i = 0; i < 6; i++) down.push(await cl.chatSettled(c.gw[i % 3], a.key, echoBody(`down ${i}`)));
        for (const r of down) {
            assert.equal(r.status, 503, `with Redis down: ${r.status} ${r.text ?? r.error}`);
            h.assertError(assert, r, 503, 'service_unavailable_error', 'service_unavailable');
            assert.match(r.headers.get('retry-after') ?? '(missing)', /^\d+$/, 'retry-after');
        }

        await c.redis.start(); // same port, empty (no persistence)
        const t0 = Date.now();
        for (const g of c.gw) {
            for (;;) {
                const r = await cl.chatSettled(g, a.key, echoBody(`recover ${g.index}`));
                if (r.status === 200) { oks.push(r); break; }
                assert.equal(r.status, 503, `instance ${g.index} while recovering: ${r.status} ${r.text ?? r.error}`);
                assert.ok(Date.now() - t0 < h.scaled(6000), `instance ${g.index} not recovered 6 s after Redis came back`);
                await h.sleep(100);
            }
        }
        t.diagnostic(`every instance answered 200 again ${Date.now() - t0} ms after Redis restarted`);

        // The recovery's charges settle first: committed, seen by every instance, and pushed
        // with their rows. Until then a charge may be counted both in Redis's balance and in a
        // reservation, refusing a little early for up to a poll (docs/BILLING.md, "Settlement":
        // early, never late), which a burst at once would read as a lost unit.
        const want = BigInt(N - oks.length) * UNIT;
        for (const g of c.running()) {
            const seen = await h.eventually(async () => (await h.balanceNano(g, a.billing)) === want, h.scaled(3000));
            assert.ok(seen.value, `instance ${g.index}: balance ${await h.balanceNano(g, a.billing)}, want ${want}`);
        }
        await h.sleep(h.scaled(300)); // the pushes after the next poll (every 100 ms)

        // The rest of the balance: exactly N - (answered so far) more, whatever Redis lost.
        const rs = keep(await burst(c, 10 * N, a.key, (i) => echoBody(`after ${i}`)));
        for (const r of rs.filter((x) => x.status !== 200)) {
            h.assertError(assert, r, 403, 'permission_error', 'insufficient_balance');
        }
        assert.equal(oks.length, N, `200s in all: ${oks.length}, want ${N} (burst: ${statuses(rs)})`);
        await checkLedger(c, a, oks, { balance: 0n });
    });
});

test('PostgreSQL stopped for a while: billed requests keep being served; afterwards the ledger is exact', T, async (t) => {
    // A PostgreSQL server of this cluster's own: stopping it must not touch the other tests.
    const c = await cl.Cluster.start({ config: CONFIG });
    try {
        const a = await c.account('pgdown', 1000n * UNIT);
        const oks = [];
        const pre = await burst(c, 3, a.key, (i) => echoBody(`pre ${i}`));
        assert.deepEqual(pre.map((r) => r.status), [200, 200, 200]);
        oks.push(...pre);

        await c.pg.pause();
        const during = [];
        const until = Date.now() + h.scaled(3000);
        for (let i = 0; Date.now() < until; i++) {
            during.push(await cl.chatSettled(c.gw[i % 3], a.key, echoBody(`during ${i}`)));
            await h.sleep(100);
        }
        for (const r of during) assert.equal(r.status, 200, `with PostgreSQL down: ${r.status} ${r.text ?? r.error}`);
        oks.push(...during);
        await c.pg.start(); // same DIR, same port

        // The ledger catches up by itself; /api/usage may fail or wait until it has.
        const rids = new Set(oks.map((r) => r.rid));
        const caught = await h.eventually(async () => {
            try {
                const rows = await c.usage(a.billing);
                return rows.filter((u) => rids.has(u.requestId)).length >= rids.size;
            } catch {
                return false;
            }
        }, h.scaled(30000), 250);
        assert.ok(caught.value, 'the ledger has not caught up 30 s after PostgreSQL came back:\n' +
            c.gw.map((g) => g.stderr.split('\n').filter((l) => !l.includes('"type":"access"')).slice(-8).join('\n')).join('\n--\n'));
        t.diagnostic(`${during.length} requests while PostgreSQL was down; ledger caught up in ${caught.elapsed} ms`);
        await checkLedger(c, a, oks, { balance: a.topups - BigInt(oks.length) * UNIT });
    } finally {
        await c.stop();
    }
});

test('kill -9 of an instance under load: the others serve, its holds come back within 10 s, ledger exact', T, async (t) => {
    await withCluster({ mock: true }, async (c) => {
        const load = await c.account('load', 100000n * UNIT);
        const held = await c.account('held', 4n * UNIT); // all of it held by the victim at the kill
        const victim = c.gw[2];
        const survivors = [c.gw[0], c.gw[1]];
        const oks = [];
        let stop = false;
        let killAt = Infinity;
        const loop = async (g, n) => {
            for (let i = 0; !stop; i++) {
                const r = await cl.chatSettled(g, load.key, mockBody(`load ${g.index}.${n}.${i}`));
                if (r.status === 200) oks.push(r);
                else if (g === victim && r.at >= killAt) return; // the victim is gone
                else assert.fail(`instance ${g.index}: ${r.status} ${r.text ?? r.error}`);
            }
        };
        const loops = c.gw.flatMap((g) => [loop(g, 0), loop(g, 1)]);
        // Slow requests (3 s upstream): the victim's four hold all of `held`; the survivors' two
        // must still finish after the kill.
        const slow = Array.from({ length: 4 }, (_, i) =>
            cl.chatSettled(victim, held.key, mockBody(`slow victim ${i}`, { delay_ms: 3000 })));
        const slowOk = survivors.map((g) =>
            cl.chatSettled(g, load.key, mockBody(`slow ${g.index}`, { delay_ms: 3000 })));
        await h.sleep(h.scaled(800));
        // The victim's holds are visible to the others before the kill: nothing is left to spend.
        const pre = await cl.chat(c.gw[0], held.key, echoBody('before kill'));
        h.assertError(assert, pre, 403, 'permission_error', 'insufficient_balance');

        killAt = Date.now();
        await c.kill9(2);
        await h.sleep(h.scaled(1000));
        const servedAfter = oks.filter((r) => r.at > killAt + 100 && r.instance !== 2).length;
        stop = true;
        await Promise.all(loops);
        assert.ok(servedAfter > 0, 'the survivors answered nothing after the kill');
        for (const r of await Promise.all(slow)) assert.equal(r.status, 0, `a victim's slow request: ${r.status}`);
        for (const r of await Promise.all(slowOk)) {
            assert.equal(r.status, 200, `a survivor's request in flight at the kill: ${r.status} ${r.text ?? r.error}`);
            oks.push(r);
        }

        // The whole of `held` becomes usable again: one request holding all four units.
        const whole = echoBody('whole balance', 4 * M);
        assert.equal(h.holdNano(c.gw[0], whole), 4n * UNIT);
        const released = await h.eventually(async () => {
            const r = await cl.chat(survivors[0], held.key, whole);
            if (r.status !== 200) h.assertError(assert, r, 403, 'permission_error', 'insufficient_balance');
            return r.status === 200 ? r : null;
        }, h.scaled(10000) + 1000, 200);
        assert.ok(released.value, "the killed instance's holds were not released within 10 s");
        t.diagnostic(`holds released ${Date.now() - killAt} ms after the kill; ${oks.length} answers`);
        await checkLedger(c, held, [{ ...released.value, rid: released.value.headers.get('x-request-id'), instance: 0 }],
            { balance: 0n });

        // Answers of the victim read less than 1 s before the kill may still have been in its
        // memory (the ledger writes ~10 ms after a settle); every other 200 is in the ledger once.
        const mayMiss = new Set(oks.filter((r) => r.instance === 2 && r.at > killAt - 1000).map((r) => r.rid));
        await checkLedger(c, load, oks, { mayMiss });

        // The victim comes back on the same store and serves.
        await c.restart(2);
        assert.equal((await cl.chat(victim, load.key, mockBody('back'))).status, 200);
    });
});

test('modelswitch reload reaches every instance of the config on this machine (their journal slots)', T, async () => {
    await withCluster({}, async (c) => {
        // one config file, three instances: each took its own journal slot
        const slots = c.gw.map((g) => g.stderr).join('\n');
        const r = await c.cli(['reload'], { allowFail: true });
        assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}\n${slots.slice(-2000)}`);
        assert.equal((r.stdout.match(/^reloaded /gm) ?? []).length, 3, r.stdout);
        for (const g of c.gw) assert.equal((await h.get(g, '/readyz')).status, 200);
    });
});

test('two instances started at once on an empty database: both come up, migrations ran once', T, async (t) => {
    // The schema version a fresh store reaches (a SQLite one, through the same binary).
    const ref = await h.prepareGateway({ config: CONFIG });
    let want;
    try {
        const m = /schema version (\d+)/.exec((await ref.cli(['migrate'])).stdout);
        want = Number(m[1]);
    } finally {
        await h.discardGateway(ref);
    }
    await withCluster({ n: 2, start: false }, async (c) => {
        await c.startAll();
        for (const g of c.gw) {
            const r = await h.get(g, '/readyz');
            assert.equal(r.status, 200, `instance ${g.index} /readyz: ${r.text}`);
        }
        const out = (await c.cli(['migrate'])).stdout;
        assert.match(out, new RegExp(`schema version ${want}\\b`), 'the schema version');
        const rows = await c.query('SELECT version, count(*)::int AS n FROM schema_migrations GROUP BY version ORDER BY version');
        assert.deepEqual(rows.map((r) => r.version), Array.from({ length: want }, (_, i) => i + 1));
        assert.ok(rows.every((r) => r.n === 1), `a migration recorded twice: ${JSON.stringify(rows)}`);
        const a = await c.account('twins', 10n * UNIT);
        const rs = await burst(c, 2, a.key, (i) => echoBody(`twin ${i}`));
        assert.deepEqual(rs.map((r) => r.status), [200, 200]);
        await checkLedger(c, a, rs);
    });
});
