// Live reload of the config (issue 14; docs/OPERATIONS.md, "Live reload"): `modelswitch reload`
// and SIGHUP make the running gateway serve a changed file to new requests, while requests in
// flight finish on the config they started with: a model added is served, a model removed is a
// 404 while its in-flight stream finishes (and the old generation is freed once it has), prices
// change for new requests only, a deployment's upstream and a provider's base_url move, a cooling
// deployment stays cooling (a changed one starts fresh), restart-only fields are named and not
// applied, an invalid file is refused with its file:line and the old config kept, and a client
// loop of chats and streams sees no failure through several reloads. The gateway runs for the
// whole file; the harness fails the file on a sanitizer report when it stops it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const MSG = [{ role: 'user', content: 'hi' }];
const ROUTING = {
    max_attempts: 1, retry_budget_ms: 10000, backoff_base_ms: 10, backoff_max_ms: 50,
    min_requests: 2, failure_rate_percent: 50, failure_window_ms: 60000,
    cooldown_ms: 60000, cooldown_max_ms: 120000,
};
let gw, key, base;

before(async () => {
    gw = await h.startGatewayWithMocks({
        mocks: 2,
        sections: { routing: ROUTING },
        config: (mocks) => ({
            providers: { mock2: h.mockProvider(mocks[1]) },
            models: {
                'cool-model': {
                    pricing: { input: 1, output: 1 },
                    deployments: [{ provider: 'dead', model: 'dead-upstream' }],
                },
            },
        }),
        setup: async (g) => { ({ key } = await g.newProxyKey(1000)); },
    });
    base = structuredClone(gw.config);
});
after(async () => { await gw?.stop(); });

/** Writes cfg as the gateway's config file (and the harness's idea of its prices). */
async function writeConfig(cfg) {
    gw.config = cfg;
    await fsp.writeFile(gw.configPath, h.toYaml(cfg));
}

/** The base config changed by edit(cfg). */
function edited(edit) {
    const cfg = structuredClone(base);
    edit(cfg);
    return cfg;
}

/** Writes cfg and runs `modelswitch reload`: it must exit 0. Returns its stdout. */
async function reload(cfg) {
    await writeConfig(cfg);
    const r = await gw.cli(['reload']);
    assert.match(r.stdout, /^reloaded .*modelswitch\.yaml \(pid \d+\): generation \d+: \d+ models/);
    return r.stdout;
}

const notFound = (res) => h.assertError(assert, res, 404, 'not_found_error', 'model_not_found', 'model');
const generationOf = (stdout) => Number(/generation (\d+)/.exec(stdout)[1]);
const chat = (model, extra = {}) => h.post(gw, '/v1/chat/completions', key, { model, messages: MSG, ...extra });

/** Operator log lines (JSON, with a msg) seen so far. */
function opLog() {
    return gw.stderr.split('\n').filter((l) => l.startsWith('{') && l.includes('"msg"'))
        .map((l) => { try { return JSON.parse(l); } catch { return null; } }).filter(Boolean);
}

/** Waits until an operator log line satisfies pred; returns it. */
async function waitLog(pred, what, ms = h.scaled(5000)) {
    const { value } = await h.eventually(() => opLog().find(pred), ms);
    assert.ok(value, `no log line ${what} within ${ms} ms:\n${gw.stderr.slice(-2000)}`);
    return value;
}

/** Starts a slow stream on a raw connection and waits for its first tokens. */
async function slowStream(model, chunks) {
    const body = JSON.stringify({
        model, stream: true, stream_options: { include_usage: true }, messages: MSG,
        mock: { chunks, chunk_delay_ms: 100 },
    });
    const c = await h.RawConn.open(gw.port);
    await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    await c.until(() => c.data.includes('tok1 '), h.scaled(5000), 'the first tokens');
    return c;
}

/** Reads a whole stream from c and checks it ended well with every token. */
async function finishedStream(c, chunks) {
    const [res] = await c.readResponses(1, h.scaled(15000));
    c.destroy();
    assert.equal(res.status, 200);
    const ev = h.sseEvents(res.text);
    assert.equal(ev.at(-1), '[DONE]', `the stream was cut: ${res.text.slice(-300)}`);
    assert.equal(h.streamContent(ev), Array.from({ length: chunks }, (_, i) => `tok${i} `).join(''));
    return ev.at(-2).usage;
}

test('a model added by a reload is served; the CLI says which generation serves', T, async () => {
    const before = await chat('echo-new');
    notFound(before);
    const out = await reload(edited((c) => {
        c.models['echo-new'] = { pricing: { input: 1, output: 1 }, deployments: [{ provider: 'local', model: 'e' }] };
    }));
    assert.ok(generationOf(out) >= 2, out);
    const res = await chat('echo-new');
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers.get('x-modelswitch-model'), 'echo-new');
    const list = await h.get(gw, '/v1/models', key);
    assert.ok(list.json.data.some((m) => m.id === 'echo-new'), 'listed in /v1/models');
    await waitLog((l) => /config reloaded from .*generation/.test(l.msg), 'saying the config was reloaded');
});

test('a model removed: 404 for new requests, its in-flight stream finishes and is billed at its price', T, async () => {
    const withDoomed = edited((c) => {
        c.models.doomed = { pricing: { input: 3, output: 7 }, deployments: [{ provider: 'mock', model: 'doomed-up' }] };
    });
    const g = generationOf(await reload(withDoomed));
    const CHUNKS = 15;
    const want = h.costNano(gw, 'doomed', 11, CHUNKS);
    const c = await slowStream('doomed', CHUNKS);
    // the new config drops it and logs at debug, which shows when the old generation is freed
    const out = await reload(edited((cfg) => { cfg.log = { level: 'debug' }; }));
    assert.equal(generationOf(out), g + 1);
    const gone = await chat('doomed');
    notFound(gone);
    const usage = await finishedStream(c, CHUNKS);
    assert.equal(usage.completion_tokens, CHUNKS);
    assert.equal(h.usdToNano(usage.cost), want, 'billed at the price it started with');
    // the stream held generation g; once it ended nothing did
    await waitLog((l) => l.msg.includes(`config generation ${g} freed`), `freeing generation ${g}`);
    await reload(base); // log level back to info
});

test('prices: new requests pay the new price, a request in flight the old one', T, async () => {
    await reload(base);
    const oldCost = h.costNano(gw, 'mock-model', 11, 3);
    const marker = `inflight-${Date.now()}`;
    const inflight = chat('mock-model', { user: marker, mock: { delay_ms: h.scaled(1500) } });
    // admitted and upstream before the reload
    const { value: seen } = await h.eventually(async () =>
        (await gw.mock.requests()).some((r) => (r.body ?? '').includes(marker)), h.scaled(5000));
    assert.ok(seen, 'the slow request did not reach the upstream');
    await reload(edited((c) => { c.models['mock-model'].pricing = { input: 25, output: 100 }; }));
    const newCost = h.costNano(gw, 'mock-model', 11, 3);
    assert.equal(newCost, oldCost * 10n);
    const now = await chat('mock-model');
    assert.equal(now.status, 200, now.text);
    assert.equal(h.usdToNano(now.headers.get('x-modelswitch-cost')), newCost);
    const old = await inflight;
    assert.equal(old.status, 200, old.text);
    assert.equal(h.usdToNano(old.headers.get('x-modelswitch-cost')), oldCost);
    // /v1/models shows the new list price
    const m = await h.get(gw, '/v1/models/mock-model', key);
    assert.equal(m.status, 200);
    assert.match(JSON.stringify(m.json), /25/);
    await reload(base);
});

test("a deployment's upstream model and a provider's base_url change for new requests", T, async () => {
    const [, m2] = gw.mocks;
    await reload(edited((c) => { c.models['mock-model'].deployments = [{ provider: 'mock2', model: 'moved-up' }]; }));
    const a = await chat('mock-model');
    assert.equal(a.status, 200, a.text);
    assert.equal(a.headers.get('x-modelswitch-provider'), 'mock2');
    assert.equal((await h.requestsForModel(m2, 'moved-up')).length, 1);
    // the provider `mock` now points at the second mock
    await reload(edited((c) => {
        c.providers.mock = h.mockProvider(m2);
        c.models['mock-model'].deployments = [{ provider: 'mock', model: 'via-base-url' }];
    }));
    const b = await chat('mock-model');
    assert.equal(b.status, 200, b.text);
    assert.equal(b.headers.get('x-modelswitch-provider'), 'mock');
    assert.equal((await h.requestsForModel(m2, 'via-base-url')).length, 1);
    assert.equal((await h.requestsForModel(gw.mock, 'via-base-url')).length, 0);
    await reload(base);
    const c = await chat('mock-model');
    assert.equal(c.status, 200, c.text);
    assert.equal((await h.requestsForModel(gw.mock, 'mock-upstream-model')).length > 0, true);
});

test('a cooling deployment stays cooling across a reload; a changed one starts fresh', T, async () => {
    await reload(base);
    for (let i = 0; i < 2; i++) {
        const r = await chat('cool-model');
        h.assertError(assert, r, 502, 'upstream_error', 'provider_error');
    }
    await waitLog((l) => /dead\/dead-upstream of model cool-model: cooling down/.test(l.msg), 'opening the breaker');
    const cooling = await chat('cool-model');
    h.assertError(assert, cooling, 503, 'service_unavailable_error', 'service_unavailable');
    // reloaded with its price changed and another model added: the same deployment, still out
    await reload(edited((c) => {
        c.models['cool-model'].pricing = { input: 2, output: 2 };
        c.models['echo-extra'] = { pricing: { input: 1, output: 1 }, deployments: [{ provider: 'local', model: 'e' }] };
    }));
    const still = await chat('cool-model');
    h.assertError(assert, still, 503, 'service_unavailable_error', 'service_unavailable');
    assert.match(still.json.error.message, /cooling down/);
    // another upstream model is another deployment: tried (and failing: the provider is down)
    await reload(edited((c) => { c.models['cool-model'].deployments = [{ provider: 'dead', model: 'dead-upstream-2' }]; }));
    const fresh = await chat('cool-model');
    h.assertError(assert, fresh, 502, 'upstream_error', 'provider_error');
    await reload(base);
});

test('restart-only fields are named in the log and the CLI, and not applied', T, async () => {
    const out = await reload(edited((c) => {
        c.server.listen = '127.0.0.1:1';
        c.server.workers = 3;
        c.models['echo-also'] = { pricing: { input: 1, output: 1 }, deployments: [{ provider: 'local', model: 'e' }] };
    }));
    assert.match(out, /server\.listen changed; it takes effect after a restart/);
    assert.match(out, /server\.workers changed; it takes effect after a restart/);
    for (const f of ['server.listen', 'server.workers']) {
        const l = await waitLog((x) => x.msg === `config reload: ${f} changed; it takes effect after a restart`, `naming ${f}`);
        assert.equal(l.level, 'warn');
    }
    // the rest of the file applies, on the same address and with the same workers
    const r = await chat('echo-also');
    assert.equal(r.status, 200, r.text);
    const threads = fs.readdirSync(`/proc/${gw.pid}/task`)
        .map((t) => { try { return fs.readFileSync(`/proc/${gw.pid}/task/${t}/comm`, 'utf8').trim(); } catch { return ''; } })
        .filter((n) => n.startsWith('ms-worker-'));
    assert.equal(threads.length, 2, `worker threads: ${threads}`);
    await reload(base);
});

test('an invalid file is refused with file:line; the running config is kept', T, async () => {
    const good = edited((c) => {
        c.models['kept-model'] = { pricing: { input: 1, output: 1 }, deployments: [{ provider: 'local', model: 'e' }] };
    });
    await reload(good);
    // a field the config does not have
    const bad = structuredClone(good);
    bad.models['kept-model'].pricing.bogus = 1;
    bad.models['lost-model'] = { pricing: { input: 1, output: 1 }, deployments: [{ provider: 'local', model: 'e' }] };
    await fsp.writeFile(gw.configPath, h.toYaml(bad));
    const cli = await gw.cli(['reload'], { allowFail: true });
    assert.equal(cli.code, 1, cli.stdout + cli.stderr);
    assert.match(cli.stderr, /modelswitch\.yaml:\d+: models\.kept-model\.pricing/);
    // SIGHUP reads the same file: the error, at error level, with file:line
    const before = opLog().length;
    gw.child.kill('SIGHUP');
    const { value: err } = await h.eventually(() => opLog().slice(before).find((l) => l.level === 'error'), h.scaled(5000));
    assert.ok(err, `no error logged for the bad file:\n${gw.stderr.slice(-1500)}`);
    assert.match(err.msg, /config reload failed; the running config \(generation \d+\) is kept: .*modelswitch\.yaml:\d+: models\.kept-model\.pricing/);
    // the old config serves on
    assert.equal((await chat('kept-model')).status, 200);
    notFound(await chat('lost-model'));

    // a file only the gateway cannot read (a variable its environment lacks): the CLI reports the
    // gateway's error and exits 1
    const envOnly = structuredClone(good);
    envOnly.server.admin_token = '${MS_RELOAD_TEST_ONLY_IN_CLI_7Q}';
    envOnly.models['lost-model'] = bad.models['lost-model'];
    await fsp.writeFile(gw.configPath, h.toYaml(envOnly));
    const r = await h.run(h.GATEWAY_BIN, ['--config', gw.configPath, 'reload'],
        { env: { MS_RELOAD_TEST_ONLY_IN_CLI_7Q: 'x' } });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /reload failed; the gateway keeps its running config: .*modelswitch\.yaml:\d+: .*MS_RELOAD_TEST_ONLY_IN_CLI_7Q/);
    notFound(await chat('lost-model'));
    assert.equal((await chat('kept-model')).status, 200);
    await reload(base);
});

test('reload --help, bad arguments, and no gateway on the store', T, async () => {
    await writeConfig(base);
    const help = await gw.cli(['reload', '--help']);
    assert.match(help.stdout, /usage: modelswitch .*reload/);
    const bad = await gw.cli(['reload', '--bogus'], { allowFail: true });
    assert.equal(bad.code, 2);
    const other = await h.prepareGateway({ config: {} });
    try {
        const r = await other.cli(['reload'], { allowFail: true });
        assert.equal(r.code, 1);
        assert.match(r.stderr, /no gateway is serving the store/);
    } finally {
        await h.discardGateway(other);
    }
});

test('reload under load: chats and streams on kept-alive connections never fail', T, async () => {
    await reload(base);
    const variant = edited((c) => {
        c.models['mock-model'].pricing = { input: 5, output: 20 };
        c.models['echo-load'] = { pricing: { input: 1, output: 1 }, deployments: [{ provider: 'local', model: 'e' }] };
        c.limits.requests_per_minute = 200000;
    });
    let stop = false;
    const failures = [];
    let done = 0;
    const kinds = [
        async () => {
            const r = await chat('echo-1');
            if (r.status !== 200) throw new Error(`echo chat: ${r.status} ${r.text.slice(0, 200)}`);
        },
        async () => {
            const r = await chat('mock-model', { mock: { delay_ms: 30 } });
            if (r.status !== 200) throw new Error(`mock chat: ${r.status} ${r.text.slice(0, 200)}`);
        },
        async () => {
            const r = await chat('mock-model', { stream: true, stream_options: { include_usage: true }, mock: { chunks: 6, chunk_delay_ms: 25 } });
            const ev = r.status === 200 ? h.sseEvents(r.text) : [];
            if (ev.at(-1) !== '[DONE]' || h.streamContent(ev) !== 'tok0 tok1 tok2 tok3 tok4 tok5 ' || !ev.at(-2).usage?.cost) {
                throw new Error(`mock stream: ${r.status} ${r.text.slice(-300)}`);
            }
        },
        async () => {
            const r = await chat('echo-1', { stream: true });
            const ev = r.status === 200 ? h.sseEvents(r.text) : [];
            if (ev.at(-1) !== '[DONE]') throw new Error(`echo stream: ${r.status} ${r.text.slice(-300)}`);
        },
    ];
    const loop = async (i) => {
        for (let n = i; !stop; n++) {
            try {
                await kinds[n % kinds.length]();
                done++;
            } catch (e) {
                failures.push(String(e));
            }
        }
    };
    // one raw keep-alive connection across every reload: never closed by one
    const conn = await h.RawConn.open(gw.port);
    const body = JSON.stringify({ model: 'echo-1', messages: MSG });
    const raw = `POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    let rawSent = 0;
    const loops = Array.from({ length: 6 }, (_, i) => loop(i));
    const RELOADS = 6;
    for (let i = 0; i < RELOADS; i++) {
        await h.sleep(150);
        await reload(i % 2 === 0 ? variant : base);
        await conn.write(raw);
        rawSent++;
        await conn.readResponses(rawSent, h.scaled(5000));
    }
    await h.sleep(150);
    stop = true;
    await Promise.all(loops);
    assert.deepEqual(failures, [], `${failures.length} failed requests during the reloads`);
    assert.ok(done >= 20, `only ${done} requests ran during the reloads`);
    assert.ok(!conn.closed, 'the kept-alive connection was closed by a reload');
    assert.ok(conn.responses().every((r) => r.status === 200));
    conn.destroy();
    await reload(base);
});
