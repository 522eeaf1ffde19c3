// The command line (shared/spec/CONFIG.md): check-config's strict validation with file:line and
// field in its errors, exit codes (0 ok, 1 error, 2 usage), accounts and top-ups, key creation
// (printed once, alone on the last line; only a hash stored), key listing and the ledger audit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
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
