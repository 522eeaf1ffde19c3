// The gateway and its command line on PostgreSQL (store: {postgres: URL}): accounts and keys made
// with the CLI, a chat request to the echo model billed in the ledger and seen through the account
// API, `audit`, `migrate`, a store moved from SQLite with `export` / `import`, the serving lock
// (a second serve without redis refuses to start), and instances starting at the same moment on
// an empty database (both migrate commands and both serves succeed, each migration applied once).
//
// Each test uses a fresh database on the server tests/run.sh started (MS_TEST_PG_URL); run alone,
// this file starts its own with tests/pg.sh and stops it at the end.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT * 2 };
const PG_SH = path.join(h.ROOT, 'tests', 'pg.sh');
let baseUrl = process.env.MS_TEST_PG_URL || '';
let ownServer = null; // the directory of the server this file started, if it did
let dbSeq = 0;
const started = [];

/** psql from the newest installed server version (not a /usr/local/bin symlink). */
function psqlBin() {
    const root = '/usr/lib/postgresql';
    const versions = fs.readdirSync(root).filter((v) => fs.existsSync(path.join(root, v, 'bin', 'psql')));
    versions.sort((a, b) => Number(a) - Number(b));
    return path.join(root, versions[versions.length - 1], 'bin', 'psql');
}

function urlFor(db) {
    const u = new URL(baseUrl);
    u.pathname = `/${db}`;
    return u.toString();
}

/** Runs sql on database db (default: the server's own) and returns its unaligned output. */
async function psql(sql, db = null) {
    const r = await h.run(psqlBin(), ['-X', '-q', '-t', '-A', '-v', 'ON_ERROR_STOP=1',
        db ? urlFor(db) : baseUrl, '-c', sql]);
    if (r.code !== 0) throw new Error(`psql ${sql}: ${r.stderr}`);
    return r.stdout.trim();
}

async function freshDb() {
    const name = `ms_it${process.pid}_${++dbSeq}`;
    await psql(`CREATE DATABASE ${name}`);
    return name;
}

/** Retries fn (which asserts) until it passes or ms pass; the last failure is thrown. */
async function until(fn, ms) {
    const deadline = Date.now() + ms;
    for (;;) {
        try {
            return await fn();
        } catch (e) {
            if (Date.now() > deadline) throw e;
            await h.sleep(50);
        }
    }
}

/** A prepared (not started) gateway whose store is database db. */
async function pgGateway(db, extra = {}) {
    const gw = await h.prepareGateway({ config: extra.config ?? {} });
    gw.config.store = { postgres: urlFor(db) };
    if (extra.redis) gw.config.redis = extra.redis;
    await fsp.writeFile(gw.configPath, h.toYaml(gw.config));
    return gw;
}

before(async () => {
    if (baseUrl) return;
    ownServer = await fsp.mkdtemp(path.join(os.tmpdir(), 'ms-pg-'));
    const r = await h.run('bash', [PG_SH, 'start', ownServer], { timeout: 60000 });
    if (r.code !== 0) throw new Error(`tests/pg.sh start: ${r.stderr}`);
    baseUrl = r.stdout.trim();
});

after(async () => {
    for (const gw of started) await gw.stop().catch(() => {});
    if (ownServer) await h.run('bash', [PG_SH, 'stop', ownServer], { timeout: 60000 });
});

test('CLI and gateway on PostgreSQL: a chat request billed in the ledger, the account API, audit', T, async () => {
    const db = await freshDb();
    const gw = await pgGateway(db);
    const { account, key } = await gw.newProxyKey(5, 'pg-acct');
    const billing = await gw.createKey(account, { type: 'billing' });
    await gw.start();
    started.push(gw);
    await gw.waitKeyKnown(key);
    await gw.waitKeyKnown(billing);
    const body = { model: 'echo-1', messages: [{ role: 'user', content: 'hello postgres' }] };
    const res = await h.post(gw, '/v1/chat/completions', key, body);
    assert.equal(res.status, 200, res.text);
    const cost = h.costNano(gw, 'echo-1', res.json.usage.prompt_tokens, res.json.usage.completion_tokens);
    assert.ok(cost > 0n);
    // the ledger thread commits it to PostgreSQL; the account API reads it back from there
    await until(async () => {
        const n = Number(await psql('SELECT count(*) FROM usage', db));
        assert.equal(n, 1);
    }, h.scaled(5000));
    assert.equal(await psql('SELECT charged_nusd FROM usage', db), String(cost));
    assert.equal(await psql(`SELECT balance_nusd FROM accounts WHERE id = ${account}`, db),
        String(5000000000n - cost));
    assert.equal(await h.balanceNano(gw, billing), 5000000000n - cost);
    const rows = await h.usageRows(gw, billing);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].model, 'echo-1');
    const tx = await h.transactionRows(gw, billing);
    assert.equal(tx.length, 2); // the opening balance and the charge
    // a CLI top-up made meanwhile reaches the running gateway
    await gw.cli(['account', 'topup', account, '1.5']);
    await until(async () => {
        assert.equal(await h.balanceNano(gw, billing), 6500000000n - cost);
    }, h.scaled(5000));
    const audit = await gw.cli(['audit']);
    assert.match(audit.stdout, /ok: 1 accounts, 3 transactions consistent/);
    const show = await gw.cli(['account', 'show', account]);
    assert.match(show.stdout, /pg-acct/);
    // a deactivated key is refused within a second, as on SQLite
    const keyId = await gw.keyId(account, key);
    await gw.cli(['key', 'deactivate', keyId]);
    await until(async () => {
        const r = await h.post(gw, '/v1/chat/completions', key, body);
        assert.equal(r.status, 403);
    }, h.scaled(5000));
    await gw.stop();
    started.pop();
});

test('migrate applies the schema and prints its version; a second run changes nothing', T, async () => {
    const db = await freshDb();
    const gw = await pgGateway(db);
    const a = await gw.cli(['migrate']);
    assert.equal(a.code, 0);
    assert.equal(a.stdout.trim(), 'schema version 13');
    const b = await gw.cli(['migrate']);
    assert.equal(b.stdout.trim(), 'schema version 13');
    assert.equal(await psql('SELECT count(*) FROM schema_migrations', db), '13');
    await h.discardGateway(gw);
});

test('a URL with a password never appears whole in an error', T, async () => {
    const gw = await h.prepareGateway();
    gw.config.store = { postgres: 'postgres://ms:hunter2-secret@127.0.0.1:1/ms' };
    await fsp.writeFile(gw.configPath, h.toYaml(gw.config));
    const r = await gw.cli(['account', 'list'], { allowFail: true });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /127\.0\.0\.1/);
    assert.doesNotMatch(r.stderr + r.stdout, /hunter2/);
    await h.discardGateway(gw);
});

test('export from SQLite, import into PostgreSQL, audit, and the same key works there', T, async () => {
    // a SQLite store with history: a charged request, a top-up, notification settings
    const sq = await h.prepareGateway();
    const { account, key } = await sq.newProxyKey(3, 'moving');
    const billing = await sq.createKey(account, { type: 'billing' });
    await sq.start();
    await sq.waitKeyKnown(key);
    const body = { model: 'echo-1', messages: [{ role: 'user', content: 'before the move' }] };
    assert.equal((await h.post(sq, '/v1/chat/completions', key, body)).status, 200);
    await until(async () => {
        assert.equal((await h.usageRows(sq, billing)).length, 1);
    }, h.scaled(5000));
    const before = await h.balanceNano(sq, billing);
    // the gateway stops before the export (docs/OPERATIONS.md)
    assert.equal((await sq.signalAndWait('SIGTERM')).code, 0);
    sq.child = null;
    await sq.cli(['account', 'topup', account, '2', '--description', 'moved']);
    const exp = await sq.cli(['export']);
    const lines = exp.stdout.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines[0].format, 'modelswitch-export');
    assert.equal(lines[0].schema, 13);
    assert.deepEqual(lines[lines.length - 1], { end: true, rows: lines.filter((l) => l.t).length });
    assert.ok(!exp.stdout.includes(key), 'the export holds key hashes, never keys');
    const file = path.join(sq.dir, 'export.jsonl');
    await fsp.writeFile(file, exp.stdout);

    const db = await freshDb();
    const pg = await pgGateway(db);
    const imp = await pg.cli(['import', file]);
    assert.match(imp.stdout, /imported \d+ rows into the postgres store/);
    const audit = await pg.cli(['audit']);
    assert.match(audit.stdout, /ok: 1 accounts, 3 transactions consistent/);
    // importing again is refused: the store is no longer empty
    const again = await pg.cli(['import', file], { allowFail: true });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /not empty/);
    // the same rows either side
    const back = await pg.cli(['export']);
    assert.equal(back.stdout.split('\n').slice(1).join('\n'), exp.stdout.split('\n').slice(1).join('\n'));
    // `modelswitch sql` reads the usage table on either backend alike (SQLite's rows are blocks)
    const q = 'SELECT id, request_id, charged_nusd, prompt_tokens FROM usage ORDER BY id';
    const onPg = JSON.parse((await pg.cli(['sql', q])).stdout);
    assert.equal(onPg.length, 1);
    assert.deepEqual(onPg, JSON.parse((await sq.cli(['sql', q])).stdout));
    const refused = await pg.cli(['sql', 'DELETE FROM usage'], { allowFail: true });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /read-only/);
    // and back into a new SQLite store: the same rows, the ledger consistent
    const sq2 = await h.prepareGateway();
    const file2 = path.join(sq.dir, 'export-pg.jsonl');
    await fsp.writeFile(file2, back.stdout);
    assert.match((await sq2.cli(['import', file2])).stdout, /imported \d+ rows into the sqlite store/);
    assert.match((await sq2.cli(['audit'])).stdout, /ok: 1 accounts, 3 transactions consistent/);
    assert.equal((await sq2.cli(['export'])).stdout.split('\n').slice(1).join('\n'),
        exp.stdout.split('\n').slice(1).join('\n'));
    assert.deepEqual(JSON.parse((await sq2.cli(['sql', q])).stdout), onPg);
    await h.discardGateway(sq2);
    // the gateway on PostgreSQL takes the same keys and balance; new rows get fresh ids
    await pg.start();
    started.push(pg);
    await pg.waitKeyKnown(key);
    assert.equal(await h.balanceNano(pg, billing), before + 2000000000n);
    assert.equal((await h.post(pg, '/v1/chat/completions', key, body)).status, 200);
    await until(async () => {
        assert.equal((await h.usageRows(pg, billing)).length, 2);
    }, h.scaled(5000));
    const acct2 = await pg.createAccount('after-import', 1);
    assert.equal(acct2, '2');
    assert.match((await pg.cli(['audit'])).stdout, /ok: 2 accounts, 5 transactions consistent/);
    await pg.stop();
    started.pop();
    await h.discardGateway(sq);
});

test('a second serve on the same database without redis refuses to start', T, async () => {
    const db = await freshDb();
    const a = await pgGateway(db);
    const b = await pgGateway(db);
    await a.start();
    started.push(a);
    const r = await h.run(h.GATEWAY_BIN, ['serve', '--config', b.configPath], { timeout: h.scaled(15000) });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /in use by another modelswitch serve/);
    await a.stop();
    started.pop();
    // once the first has stopped, the lock is free
    await b.start();
    started.push(b);
    await b.stop();
    started.pop();
});

test('instances starting at the same moment on an empty database migrate exactly once', T, async () => {
    // two migrate commands at once
    const db1 = await freshDb();
    const m = await pgGateway(db1);
    const [x, y] = await Promise.all([m.cli(['migrate']), m.cli(['migrate'])]);
    assert.equal(x.stdout.trim(), 'schema version 13');
    assert.equal(y.stdout.trim(), 'schema version 13');
    assert.equal(await psql('SELECT count(*) || \' \' || count(DISTINCT version) FROM schema_migrations', db1), '13 13');
    await h.discardGateway(m);

    // two serves at once (with redis: configured, several instances may serve one database)
    const db2 = await freshDb();
    const a = await pgGateway(db2, { redis: 'redis://127.0.0.1:1/0' });
    const b = await pgGateway(db2, { redis: 'redis://127.0.0.1:1/0' });
    await Promise.all([a.start(), b.start()]);
    started.push(a, b);
    assert.equal(await psql('SELECT count(*) || \' \' || count(DISTINCT version) FROM schema_migrations', db2), '13 13');
    // both serve the same accounts
    const { key } = await a.newProxyKey(1, 'shared');
    await a.waitKeyKnown(key);
    await b.waitKeyKnown(key);
    await Promise.all([a.stop(), b.stop()]);
    started.length = 0;
});
