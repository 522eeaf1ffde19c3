// A store outage (issue 13): requests that can be billed keep being served; settled usage waits in
// a bounded memory queue and, past it, in the local journal (docs/BILLING.md, "Store outages");
// once the store works again every settled request is in the ledger exactly once. And a gateway
// killed with SIGKILL while events are journaled commits them at its next start.
//
// The memory cap is made small for the test (MODELSWITCH_TEST_LEDGER_MEMORY_CAP, read by billing
// at start). The outage is real: another process holds the store's write lock, so every ledger
// commit fails after the store's busy timeout. It is made and ended by `outage()` alone, so a
// PostgreSQL variant of this file only needs another `outage()`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.scaled(60000) };
const ADMIN = 'outage-admin-token';
const CAP = 20;
const TOPUP = 10000000000n; // 10 USD
const HAVE_SQLITE3 = !spawnSync('sqlite3', ['-version']).error;

process.env.MODELSWITCH_TEST_LEDGER_MEMORY_CAP = String(CAP);

let gw, a;

before(async () => {
    if (!HAVE_SQLITE3) return;
    gw = await h.startGateway({
        config: { server: { workers: 2, admin_token: ADMIN } },
        setup: async (g) => {
            const account = await g.createAccount('outage', h.nanoToUsd(TOPUP));
            a = { account, key: await g.createKey(account) };
            a.billing = await g.createKey(account, { type: 'billing' });
        },
    });
});
after(async () => {
    if (gw && !gw.child) {
        await gw.mock?.stop();
        await h.discardGateway(gw);
    } else {
        await gw?.stop();
    }
});

/**
 * Makes the store refuse the ledger's writes until end() is awaited: another process takes
 * SQLite's write lock and keeps it (reads still work, as they would on a PostgreSQL replica; the
 * ledger's commits fail after the busy timeout).
 */
async function outage(g) {
    const holder = spawn('sqlite3', [g.config.store.sqlite], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    holder.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
    holder.stderr.setEncoding('utf8').on('data', (d) => { out += d; });
    const ended = new Promise((resolve) => holder.on('exit', resolve));
    holder.stdin.write('.timeout 5000\nBEGIN IMMEDIATE;\nSELECT \'lock\' || \'ed\';\n');
    const { value: locked } = await h.eventually(() => out.includes('locked'), h.scaled(10000));
    if (!locked || /error/i.test(out)) {
        holder.kill('SIGKILL');
        throw new Error(`the store's write lock was not taken: ${out}`);
    }
    return {
        async end() {
            holder.stdin.end('COMMIT;\n.quit\n');
            await ended;
        },
    };
}

const journalPath = (g) => g.config.store.sqlite + '.journal';
const fileSize = (p) => { try { return fs.statSync(p).size; } catch { return -1; } };

async function chat(g, i) {
    const res = await h.post(g, '/v1/chat/completions', a.key,
        { model: 'echo-1', messages: [{ role: 'user', content: `settled during the outage ${i}` }] });
    assert.equal(res.status, 200, res.text);
    return res.headers.get('x-request-id');
}

/** n requests, 4 at a time; their request ids. */
async function load(g, n, from = 0) {
    const ids = [];
    for (let i = 0; i < n; i += 4) {
        const batch = [];
        for (let k = i; k < Math.min(n, i + 4); k++) batch.push(chat(g, from + k));
        ids.push(...await Promise.all(batch));
    }
    return ids;
}

async function gauges(g) {
    const m = await h.scrapeMetrics(g, ADMIN);
    return {
        depth: m.get('modelswitch_ledger_queue_depth'),
        journal: m.get('modelswitch_ledger_journal_events'),
        up: m.get('modelswitch_store_up'),
    };
}

/** The ledger as the store has it: request id -> number of usage rows and of transactions. */
async function ledger(g) {
    const rows = await h.sqliteRows(g, 'SELECT request_id, count(*) AS n FROM usage GROUP BY request_id');
    const tx = await h.sqliteRows(g, 'SELECT request_id, count(*) AS n FROM ledger_transactions ' +
        'WHERE request_id IS NOT NULL GROUP BY request_id');
    return { rows: new Map(rows.map((r) => [r.request_id, r.n])), tx: new Map(tx.map((r) => [r.request_id, r.n])) };
}

async function checkConsistent(g, ids) {
    const au = await h.audit(g);
    assert.equal(au.code, 0, `audit: ${au.stdout}${au.stderr}`);
    const l = await ledger(g);
    for (const id of ids) assert.equal(l.rows.get(id), 1, `usage rows of ${id}`);
    assert.deepEqual([...l.rows].filter(([, n]) => n !== 1), [], 'request ids with several usage rows');
    assert.deepEqual([...l.tx].filter(([, n]) => n !== 1), [], 'request ids with several transactions');
    const rows = await h.usageRows(g, a.billing);
    const charged = rows.reduce((s, u) => s + h.usdToNano(u.chargedAmount), 0n);
    assert.equal(await h.balanceNano(g, a.billing), TOPUP - charged, 'balance = top-up - the ledger\'s charges');
    return rows;
}

test('an outage longer than the memory queue: served, journaled, then committed exactly once', T, async (t) => {
    if (!HAVE_SQLITE3) { t.skip('the sqlite3 shell is not installed: nothing here can make the outage'); return; }
    const before = (await h.usageRows(gw, a.billing)).length;
    const o = await outage(gw);
    let ids;
    try {
        // the first request's batch is taken alone and waits on the lock; the rest overflow
        ids = [await chat(gw, 0)];
        await h.sleep(200);
        ids.push(...await load(gw, 10 * CAP, 1));
        const { value: g } = await h.eventually(async () => {
            const x = await gauges(gw);
            return x.journal >= ids.length - 3 * CAP ? x : null;
        }, h.scaled(10000), 100);
        assert.ok(g, `the overflow did not reach the journal: ${JSON.stringify(await gauges(gw))}`);
        t.diagnostic(`${ids.length} settled during the outage, ${g.journal} of them in the journal`);
        assert.equal(g.depth, ids.length, 'every settled request waits');
        assert.ok(fileSize(journalPath(gw)) > 0, 'the journal file holds them');
        assert.equal((await ledger(gw)).rows.size, before, 'nothing reached the store meanwhile');
        // a commit fails for real (after the store's busy timeout), and serving goes on
        const { value: down } = await h.eventually(async () => (await gauges(gw)).up === 0,
            h.scaled(15000), 200);
        assert.ok(down, 'the ledger\'s commits did not fail: no outage');
        ids.push(...await load(gw, 4, 500));
    } finally {
        await o.end();
    }
    const { value: done } = await h.eventually(async () => {
        const x = await gauges(gw);
        return x.depth === 0 && x.journal === 0 && x.up === 1 ? x : null;
    }, h.scaled(20000), 100);
    assert.ok(done, `the ledger did not catch up: ${JSON.stringify(await gauges(gw))}`);
    assert.equal(fileSize(journalPath(gw)), 0, 'the journal is emptied once committed');
    const rows = await checkConsistent(gw, ids);
    assert.equal(rows.length, before + ids.length);
});

test('SIGKILL while events are journaled: the next start commits them, once', T, async (t) => {
    if (!HAVE_SQLITE3) { t.skip('the sqlite3 shell is not installed: nothing here can make the outage'); return; }
    const before = (await h.usageRows(gw, a.billing)).length;
    const o = await outage(gw);
    let ids, journaled;
    try {
        ids = [await chat(gw, 1000)];
        await h.sleep(200);
        ids.push(...await load(gw, 10 * CAP, 1001));
        const { value: g } = await h.eventually(async () => {
            const x = await gauges(gw);
            return x.journal >= ids.length - 3 * CAP ? x : null;
        }, h.scaled(10000), 100);
        assert.ok(g, 'the overflow did not reach the journal');
        journaled = g.journal;
        const killed = await gw.kill9();
        assert.equal(killed.signal, 'SIGKILL');
    } finally {
        await o.end();
    }
    await gw.restart();
    // the journal thread may have moved more between the gauge read and the kill
    const m = /holds (\d+) usage events an earlier run could not write/.exec(gw.stderr);
    assert.ok(m, gw.stderr);
    assert.ok(Number(m[1]) >= journaled && Number(m[1]) <= ids.length,
        `${m[1]} journaled at the kill, ${journaled} seen before it, ${ids.length} settled`);
    journaled = Number(m[1]);
    assert.equal(fileSize(journalPath(gw)), 0, 'committed at start');
    const l = await ledger(gw);
    const kept = ids.filter((id) => l.rows.has(id));
    t.diagnostic(`${ids.length} settled, ${journaled} journaled before the kill, ${kept.length} in the ledger after the restart`);
    // what was journaled is all there; what was only in memory (at most the cap and the batch
    // being written) died with the process, unbilled
    assert.ok(kept.length >= journaled, `${kept.length} in the ledger, ${journaled} were journaled`);
    assert.ok(ids.length - kept.length <= 2 * CAP + 1, `${ids.length - kept.length} lost: more than memory held`);
    const rows = await checkConsistent(gw, kept);
    assert.equal(rows.length, before + kept.length);
    const g = await gauges(gw);
    assert.deepEqual([g.depth, g.journal], [0, 0]);
});
