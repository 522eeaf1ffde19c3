// The command line (shared/spec/CONFIG.md): check-config's strict validation with file:line and
// field in its errors, exit codes (0 ok, 1 error, 2 usage), accounts and top-ups (the maximum
// balance, amounts refused with their reason), key creation (printed once, alone on the last line;
// only a hash stored; --rpm/--tpm), key listing, the ledger audit, the command table of
// docs/CONFIG.md against --help, and scripts/serve.sh's first-run message.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
let gw;

before(async () => { gw = await h.prepareGateway(); });
after(async () => { await h.discardGateway(gw); });

const cli = (args, opts) => gw.cli(args, { allowFail: true, ...opts });

/** Writes text as a config next to the test config and runs check-config on it. */
async function checkConfig(name, text) {
    const file = path.join(gw.dir, name);
    await fsp.writeFile(file, text);
    const r = await h.run(h.GATEWAY_BIN, ['check-config', '--config', file]);
    h.checkSanitizerReports(r.stderr, 'check-config');
    return { ...r, file };
}

const GOOD = (dir) => `server:
  listen: 127.0.0.1:0
store:
  sqlite: ${dir}/other.db
providers:
  local:
    kind: echo
models:
  echo-1:
    pricing: {input: 0.1, output: 0.2}
    deployments:
      - {provider: local, model: echo}
`;

test('check-config accepts the test config and a minimal one', T, async () => {
    const r = await cli(['check-config']);
    assert.equal(r.code, 0, r.stderr);
    const m = await checkConfig('minimal.yaml', GOOD(gw.dir));
    assert.equal(m.code, 0, m.stderr);
});

test('check-config: an unknown field is an error naming file:line and the field', T, async () => {
    const text = GOOD(gw.dir).replace('  listen: 127.0.0.1:0\n', '  listen: 127.0.0.1:0\n  lisen: 1\n');
    const r = await checkConfig('typo.yaml', text);
    assert.equal(r.code, 1, `exit ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, /typo\.yaml:3\b/, `file:line in "${r.stderr.trim()}"`);
    assert.match(r.stderr, /lisen/, `field in "${r.stderr.trim()}"`);
});

test('check-config: a deployment naming an unknown provider is an error', T, async () => {
    const text = GOOD(gw.dir).replace('{provider: local, model: echo}', '{provider: nowhere, model: echo}');
    const r = await checkConfig('dangling.yaml', text);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /dangling\.yaml:12\b/, r.stderr);
    assert.match(r.stderr, /nowhere|provider/, r.stderr);
});

test('check-config: ${VAR} must be set unless it has a default', T, async () => {
    const unset = GOOD(gw.dir).replace('sqlite: ', 'sqlite: ${MODELSWITCH_TEST_UNSET_7Q1}');
    const r = await checkConfig('unset.yaml', unset);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /MODELSWITCH_TEST_UNSET_7Q1/, r.stderr);
    const dflt = GOOD(gw.dir).replace('sqlite: ', 'sqlite: ${MODELSWITCH_TEST_UNSET_7Q1:-}');
    const ok = await checkConfig('default.yaml', dflt);
    assert.equal(ok.code, 0, ok.stderr);
});

test('exit codes: --version and --help 0, unknown command or missing argument 2', T, async () => {
    const v = await h.run(h.GATEWAY_BIN, ['--version']);
    assert.equal(v.code, 0, v.stderr);
    assert.ok((v.stdout + v.stderr).trim().length > 0, '--version prints something');
    assert.equal((await h.run(h.GATEWAY_BIN, ['--help'])).code, 0);
    assert.equal((await cli(['key', '--help'])).code, 0);
    assert.equal((await cli(['no-such-command'])).code, 2);
    assert.equal((await cli(['account', 'create'])).code, 2, 'account create without --name');
    assert.equal((await cli(['key', 'create'])).code, 2, 'key create without --account');
});

test('accounts: create prints the id; show and list give the balance; topup adds', T, async () => {
    const id = await gw.createAccount('cli-acct', 12.5);
    assert.match(id, /^\d+$/);
    const show = await cli(['account', 'show', id]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /12\.5\b/);
    const top = await cli(['account', 'topup', id, '7.25', '--description', 'test payment']);
    assert.equal(top.code, 0, top.stderr);
    const after2 = await cli(['account', 'show', id]);
    assert.match(after2.stdout, /19\.75\b/);
    const list = await cli(['account', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /cli-acct/);
    const missing = await cli(['account', 'show', '999999']);
    assert.equal(missing.code, 1, 'showing an unknown account is an error');
    assert.ok(missing.stderr.trim().length > 0, 'with a message on stderr');
});

test('keys: printed once alone on the last line, stored only as a hash', T, async () => {
    const account = await gw.createAccount('cli-keys', 1);
    const k1 = await gw.createKey(account, { name: 'first' });
    const k2 = await gw.createKey(account, { name: 'second' });
    const mk = await gw.createKey(account, { type: 'billing' });
    for (const [k, prefix] of [[k1, 'ms-'], [k2, 'ms-'], [mk, 'mk-']]) {
        assert.ok(k.startsWith(prefix), k);
        assert.match(k, /^m[sk]-[A-Za-z0-9]{40}$/, 'prefix and 40 base62 characters');
    }
    assert.notEqual(k1, k2);
    const list = await cli(['key', 'list', '--account', account]);
    assert.equal(list.code, 0, list.stderr);
    for (const k of [k1, k2]) {
        assert.ok(list.stdout.includes(k.slice(0, 8)), `the prefix of ${k.slice(0, 8)} is listed`);
        assert.ok(!list.stdout.includes(k), 'key list must never show a full key');
    }
    for (const f of fs.readdirSync(gw.dir).filter((n) => n.startsWith('modelswitch.db'))) {
        const bytes = fs.readFileSync(path.join(gw.dir, f));
        for (const k of [k1, k2, mk]) {
            assert.ok(!bytes.includes(Buffer.from(k)), `${f} holds a full key in clear`);
            assert.ok(!bytes.includes(Buffer.from(k.slice(3))), `${f} holds a key's secret part`);
        }
    }
    assert.equal((await cli(['key', 'deactivate', '999999'])).code, 1, 'unknown key id');
    assert.equal((await cli(['key', 'create', '--account', '999999'])).code, 1, 'unknown account');
});

test('audit passes on a consistent ledger', T, async () => {
    const r = await cli(['audit']);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
});

test('sql: one read-only statement, rows as JSON; usage rows read as a table; writes refused', T, async () => {
    const account = await gw.createAccount('sql-reader', 2);
    const r = await cli(['sql', `SELECT id, name, balance_nusd, 0.5 AS half, x'0aff' AS b, NULL AS n FROM accounts WHERE id = ${account}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout),
        [{ id: Number(account), name: 'sql-reader', balance_nusd: 2000000000, half: 0.5, b: '0aff', n: null }]);
    // nothing for no rows, as sqlite3 -json
    const none = await cli(['sql', 'SELECT * FROM usage WHERE account_id = -1']);
    assert.equal(none.code, 0, none.stderr);
    assert.equal(none.stdout, '');
    // two BLOBs in a row keep their own hex
    const blobs = await cli(['sql', "SELECT x'00ff' AS a, x'abcd' AS b UNION ALL SELECT x'01', x''"]);
    assert.deepEqual(JSON.parse(blobs.stdout), [{ a: '00ff', b: 'abcd' }, { a: '01', b: '' }]);
    // a real JSON cannot hold reads as its text
    const inf = await cli(['sql', 'SELECT 1e999 AS x']);
    assert.equal(inf.code, 0, inf.stderr);
    assert.equal(typeof JSON.parse(inf.stdout)[0].x, 'string');
    const cols = JSON.parse((await cli(['sql', 'SELECT count(*) AS n FROM pragma_table_info(\'usage\')'])).stdout);
    assert.deepEqual(cols, [{ n: 18 }]);
    for (const bad of [`DELETE FROM accounts WHERE id = ${account}`, 'SELECT 1; SELECT 2',
        "INSERT INTO usage(request_id) VALUES ('x')", 'PRAGMA journal_mode=DELETE', 'SELEC']) {
        const x = await cli(['sql', bad]);
        assert.equal(x.code, 1, `${bad}: ${x.stdout}`);
        assert.match(x.stderr, /^error: /, bad);
    }
    assert.equal(JSON.parse((await cli(['sql', `SELECT count(*) AS n FROM accounts WHERE id = ${account}`])).stdout)[0].n, 1);
    assert.equal((await cli(['sql'])).code, 2);
});

test('amounts: the maximum balance (USD 1000000000) for create and topup; each bad amount says why', T, async () => {
    const max = await gw.createAccount('cli-max', 1000000000);
    assert.match((await cli(['account', 'show', max])).stdout, /balance:\s+1000000000 USD/);
    const bad = [
        // [args, exit, stderr pattern]
        [['account', 'create', '--name', 'x', '--balance', '1000000000.000000001'], 2, /maximum/],
        [['account', 'create', '--name', 'x', '--balance', '9223372036'], 2, /maximum/],
        [['account', 'create', '--name', 'x', '--balance', '99999999999999999999'], 2, /maximum/],
        [['account', 'create', '--name', 'x', '--balance', '-1'], 2, />= 0/],
        [['account', 'create', '--name', 'x', '--balance', '1.0000000001'], 2, /9 decimal places/],
        [['account', 'create', '--name', 'x', '--balance', 'NaN'], 2, /not a USD amount/],
        [['account', 'create', '--name', 'x', '--balance', '1e3'], 2, /not a USD amount/],
        [['account', 'create', '--name', '   '], 2, /--name/],
        [['account', 'topup', max, '0'], 2, /> 0/],
        [['account', 'topup', max, '-3'], 2, /> 0/],
        [['account', 'topup', max, '0.0000000001'], 2, /9 decimal places/],
        [['account', 'topup', max, '1000000000.5'], 2, /maximum/],
        // a top-up that is fine alone but would take the balance past the maximum: exit 1
        [['account', 'topup', max, '0.000000001'], 1, /maximum balance/],
    ];
    const ids = (await cli(['account', 'list'])).stdout;
    for (const [args, code, msg] of bad) {
        const r = await cli(args);
        assert.equal(r.code, code, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
        assert.match(r.stderr, msg, `${args.join(' ')}: ${r.stderr}`);
        assert.doesNotMatch(r.stderr, /overflow|internal/i, r.stderr);
    }
    // nothing was created or booked
    assert.equal((await cli(['account', 'list'])).stdout, ids);

    // up to the maximum exactly is fine, and a nano-dollar more is not
    const near = await gw.createAccount('cli-near', 999999999);
    const top = await cli(['account', 'topup', near, '1']);
    assert.equal(top.code, 0, top.stderr);
    assert.equal(top.stdout.trim(), '1000000000');
    const over = await cli(['account', 'topup', near, '0.000000001']);
    assert.equal(over.code, 1, over.stderr);
    assert.match(over.stderr, /account \d+: .*1000000000.*maximum balance/, over.stderr);
    assert.match((await cli(['account', 'show', near])).stdout, /balance:\s+1000000000 USD/);
    const a = await cli(['audit']);
    assert.equal(a.code, 0, `${a.stdout}\n${a.stderr}`);
});

test('key create --rpm/--tpm: validated like the API, stored, shown by key create and key list', T, async () => {
    const account = await gw.createAccount('cli-limits', 1);
    const made = await cli(['key', 'create', '--account', account, '--name', 'limited', '--rpm', '7',
        '--tpm', '12345']);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, /^rpm:\s+7$/m);
    assert.match(made.stdout, /^tpm:\s+12345$/m);
    const key = made.stdout.trim().split('\n').pop();
    const plain = await gw.createKey(account, { name: 'plain' });
    const only = await cli(['key', 'create', '--account', account, '--name', 'rpm-only', '--rpm=3']);
    assert.equal(only.code, 0, only.stderr);
    assert.match(only.stdout, /^tpm:\s+default$/m);

    const list = await cli(['key', 'list', '--account', account]);
    assert.equal(list.code, 0, list.stderr);
    const [head, ...rows] = list.stdout.trim().split('\n');
    assert.ok(head.includes('RPM') && head.includes('TPM'), head);
    const row = (k) => rows.find((l) => l.includes(k.slice(0, 8)));
    assert.match(row(key), /\s7\s+12345\s/, row(key));
    assert.match(row(plain), /\sdefault\s+default\s/, row(plain));
    // stored on the key, where the API and the rate limiter read it
    const stored = await h.sqliteRows(gw, `SELECT name, rpm, tpm FROM api_keys WHERE prefix = '${key.slice(0, 8)}'`);
    if (stored) assert.deepEqual(stored, [{ name: 'limited', rpm: 7, tpm: 12345 }]);

    const before = (await cli(['key', 'list', '--account', account])).stdout;
    for (const args of [['--rpm', '0'], ['--rpm', '-1'], ['--rpm', '1.5'], ['--rpm', 'ten'], ['--rpm', ''],
        ['--rpm', ' 5'], ['--tpm', '99999999999999999999'], ['--tpm', '0x10'], ['--type', 'billing', '--rpm', '5'],
        ['--type', 'billing', '--tpm', '5'], ['--name', ''], ['--name', ' \t']]) {
        const r = await cli(['key', 'create', '--account', account, ...args]);
        assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
        assert.match(r.stderr, new RegExp(args.includes('--name') ? '--name' : args.at(-2)), r.stderr);
        assert.equal(r.stdout, '', 'no key is printed');
    }
    assert.equal((await cli(['key', 'list', '--account', account])).stdout, before, 'no key was made');
    assert.match((await cli(['key', 'create', '--help'])).stdout, /--rpm N\] \[--tpm N\]/);
});

test('a key limited with key create --rpm is limited by a running gateway', T, async () => {
    let key;
    const g = await h.startGateway({
        mock: false,
        setup: async (x) => {
            const account = await x.createAccount('rpm-1', 5);
            const r = await x.cli(['key', 'create', '--account', account, '--name', 'one', '--rpm', '1']);
            key = r.stdout.trim().split('\n').pop();
        },
    });
    try {
        const body = { model: 'echo-1', messages: [{ role: 'user', content: 'hi' }] };
        const first = await h.post(g, '/v1/chat/completions', key, body);
        assert.equal(first.status, 200, first.text);
        assert.equal(first.headers.get('x-ratelimit-limit-requests'), '1');
        h.assertError(assert, await h.post(g, '/v1/chat/completions', key, body), 429,
            'rate_limit_error', 'rate_limit_exceeded');
    } finally {
        await g.stop();
    }
});

test('docs/CONFIG.md lists every command of --help, with its options', T, async () => {
    const help = (await h.run(h.GATEWAY_BIN, ['--help'])).stdout;
    const doc = await fsp.readFile(path.join(h.ROOT, 'docs', 'CONFIG.md'), 'utf8');
    const table = doc.slice(doc.indexOf('## Command line'), doc.indexOf('\n## ', doc.indexOf('## Command line') + 1));
    const commands = [...help.matchAll(/^ {2}([a-z][a-z-]*(?: [a-z][a-z-]*)?)\b/gm)].map((m) => m[1])
        .map((c) => (/^(account|key) /.test(c) ? c : c.split(' ')[0]));
    assert.ok(commands.includes('migrate') && commands.includes('key create'), help);
    for (const c of commands) {
        assert.ok(table.includes(c), `docs/CONFIG.md's command table has no "${c}"`);
    }
    for (const opt of help.match(/--[a-z][a-z-]+/g)) {
        assert.ok(table.includes(opt), `docs/CONFIG.md's command table has no ${opt}`);
    }
});

test('scripts/serve.sh --listen HOST:PORT prints a curl command and the dashboard for that address, and they work', T, async () => {
    const dir = path.join(gw.dir, 'serve-sh');
    await fsp.mkdir(dir);
    const config = path.join(dir, 'modelswitch.yaml');
    await fsp.writeFile(config, GOOD(dir).replace(`${gw.dir}/other.db`, `${dir}/demo.db`));
    const port = await h.closedPort();
    const child = spawn('bash', [path.join(h.ROOT, 'scripts', 'serve.sh'), '--listen', `127.0.0.1:${port}`], {
        env: { ...process.env, MODELSWITCH_BIN: h.GATEWAY_BIN, MODELSWITCH_CONFIG: config },
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '', err = '';
    child.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { err += d; });
    const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
    try {
        await h.eventually(() => /listening on/.test(err) || null, h.scaled(10000));
        assert.match(out, /Demo account \d+ created/, out);
        const url = /(http:\/\/\S+\/v1\/chat\/completions)/.exec(out)?.[1];
        assert.equal(url, `http://127.0.0.1:${port}/v1/chat/completions`, out);
        assert.doesNotMatch(out, /localhost:8080/);
        const key = /Bearer (ms-[A-Za-z0-9]+)/.exec(out)?.[1];
        const body = /-d '([^']+)'/.exec(out)?.[1];
        const res = await fetch(url, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body,
        });
        assert.equal(res.status, 200, await res.text());
        // the dashboard's address and the billing key to sign in with
        const dash = /(http:\/\/\S+\/dashboard\/)/.exec(out)?.[1];
        assert.equal(dash, `http://127.0.0.1:${port}/dashboard/`, out);
        assert.match(await (await fetch(dash)).text(), /ModelSwitch dashboard/);
        const mk = /^\s+(mk-[A-Za-z0-9]+)$/m.exec(out)?.[1];
        const bal = await fetch(`http://127.0.0.1:${port}/api/balance`, { headers: { authorization: `Bearer ${mk}` } });
        assert.equal(bal.status, 200, out);
    } finally {
        child.kill('SIGTERM');
        const r = await exited;
        h.checkSanitizerReports(err, 'serve.sh');
        assert.ok(r.code === 0 || r.signal === 'SIGTERM', `serve.sh exit ${r.code ?? r.signal}: ${err}`);
    }
});
