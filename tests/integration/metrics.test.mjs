// GET /metrics (issue 14): Prometheus's text format behind the admin token (or public with
// server.metrics_public), every counter asserted against the requests this file made: chat whole
// and streamed (durations, first byte, overhead), tokens by kind and spend exactly as the ledger
// records them, an upstream failure retried on another deployment and one failed over to a
// fallback model (attempts by outcome, retries, fallbacks, the cool-down gauge), timeouts and
// upstream 429s, a rate-limited request and balance refusals, the ledger and connection gauges,
// build info, and `promtool check metrics` on the whole answer. docs/OPERATIONS.md lists the
// metrics.
//
// Counters are compared before and after each test's requests (deltas), and each scenario has its
// own models and providers, so the tests do not see each other's traffic.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const ADMIN = 'metrics-admin-token-1';
const MSG = [{ role: 'user', content: 'hi' }];
const ROUTING = {
    max_attempts: 2, retry_budget_ms: 10000, backoff_base_ms: 10, backoff_max_ms: 20,
    retry_after_max_ms: 100, min_requests: 2, failure_rate_percent: 50, failure_window_ms: 60000,
    cooldown_ms: 60000, cooldown_max_ms: 60000,
};
const REQ = 'modelswitch_requests_total';
const ATT = 'modelswitch_upstream_attempts_total';

let gw, key, billing, poorKey, capKey, rpmKey;

const dep = (provider, model, extra = {}) => ({ provider, model, ...extra });
const model = (deployments, extra = {}) => ({ pricing: { input: 1, output: 2 }, deployments, ...extra });

before(async () => {
    gw = await h.startGatewayWithMocks({
        mocks: 3, // 0 answers, 1 fails with 503, 2 with 429
        sections: { routing: ROUTING },
        config: (mocks) => ({
            server: { admin_token: ADMIN },
            providers: {
                okp: h.mockProvider(mocks[0]),
                retryok: h.mockProvider(mocks[0]),
                fbok: h.mockProvider(mocks[0]),
                down: h.mockProvider(mocks[1]),
                down2: h.mockProvider(mocks[1]),
                r429: h.mockProvider(mocks[2]),
                slow: h.mockProvider(mocks[0], { first_byte_timeout_ms: 300 }),
                anth: { kind: 'anthropic', base_url: mocks[0].url, api_key: 'sk-ant-test', timeout_ms: 10000 },
            },
            models: {
                'mx-chat': { pricing: { input: 2.5, output: 10, cached_input: 1.25 }, deployments: [dep('okp', 'mx-up')] },
                'mx-claude': {
                    pricing: { input: 3, output: 15, cached_input: 0.3, cache_write: 3.75, cache_write_1h: 6 },
                    deployments: [dep('anth', 'claude-up')],
                },
                'mx-retry': model([dep('down', 'r-down', { priority: 1 }), dep('retryok', 'r-ok', { priority: 2 })]),
                'mx-fb': model([dep('down2', 'fb-down')], { fallbacks: ['mx-fb2'] }),
                'mx-fb2': { pricing: { input: 3, output: 7 }, deployments: [dep('fbok', 'fb-ok')] },
                'mx-timeout': model([dep('slow', 'slow-up')]),
                'mx-429': model([dep('r429', 'up-429')]),
            },
        }),
        setup: async (g) => {
            const account = await g.createAccount('metrics', 100);
            key = await g.createKey(account);
            billing = await g.createKey(account, { type: 'billing' });
            capKey = await g.createKey(account, { spendLimit: '0.000000001' });
            ({ key: poorKey } = await g.newProxyKey('0.000001', 'poor'));
            const r = await g.cli(['key', 'create', '--account', account, '--rpm', '1']);
            rpmKey = r.stdout.trim().split('\n').at(-1).trim();
            await g.mocks[1].config({ fail_status: 503 });
            await g.mocks[2].config({ fail_status: 429, retry_after: 1 });
        },
    });
});
after(async () => { await gw?.stop(); });

const scrape = () => h.scrapeMetrics(gw, ADMIN);
const chat = (k, body) => h.post(gw, '/v1/chat/completions', k, { messages: MSG, max_tokens: 50, ...body });

/** A counter's change between two scrapes. */
const delta = (a, b, name, labels) => b.get(name, labels) - a.get(name, labels);
/** A histogram's count change. */
const countDelta = (a, b, name, labels) => delta(a, b, `${name}_count`, labels);
const reqLabels = (endpoint, m, provider, status) => ({ endpoint, model: m, provider, status: String(status) });

/** Scrapes until pred(scrape) holds (counters move when an answer's last byte is queued). */
async function scrapeUntil(pred, what) {
    const { value } = await h.eventually(async () => {
        const m = await scrape();
        return pred(m) ? m : null;
    }, h.scaled(5000));
    assert.ok(value, `the metrics never showed ${what}`);
    return value;
}

test('GET /metrics takes the admin token only', T, async () => {
    h.assertError(assert, await h.get(gw, '/metrics'), 401, 'authentication_error', 'missing_api_key');
    h.assertError(assert, await h.get(gw, '/metrics', key), 401, 'invalid_request_error', 'invalid_api_key');
    h.assertError(assert, await h.get(gw, '/metrics', ADMIN + 'x'), 401, 'invalid_request_error', 'invalid_api_key');
    const bad = await h.post(gw, '/metrics', ADMIN, {});
    h.assertError(assert, bad, 405, 'invalid_request_error', 'method_not_allowed');
    assert.equal(bad.headers.get('allow'), 'GET');
    const res = await h.get(gw, '/metrics', ADMIN);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    assert.ok(res.headers.get('x-request-id'));
    const m = h.parseMetrics(res.text);
    // the refusals above are counted too, as requests of the metrics endpoint
    assert.ok(m.get(REQ, reqLabels('metrics', '', '', 401)) >= 3);
    assert.ok(m.get(REQ, reqLabels('metrics', '', '', 405)) >= 1);
    // nothing secret or per-tenant in it
    for (const s of [ADMIN, key, billing, 'sk-upstream-test', 'sk-ant-test']) assert.ok(!res.text.includes(s));
    assert.doesNotMatch(res.text, /req_[0-9a-f]{8}|\bm[sk]-[A-Za-z0-9]{6}/, 'a request id or a key');
});

test('chat, whole and streamed: requests, durations, first byte, overhead, tokens and spend equal the ledger', T, async () => {
    const a = await scrape();
    const whole = await chat(key, { model: 'mx-chat', mock: { prompt_tokens: 100, cached_tokens: 40, reasoning_tokens: 5 } });
    assert.equal(whole.status, 200, whole.text);
    const stream = await chat(key, { model: 'mx-chat', stream: true, mock: { prompt_tokens: 30, chunks: 7 } });
    assert.equal(stream.status, 200, stream.text);
    assert.equal(h.sseEvents(stream.text).at(-1), '[DONE]');
    const claude = await chat(key, {
        model: 'mx-claude',
        mock: { input_tokens: 100, cache_read_input_tokens: 1000, cache_creation_input_tokens: 300,
            cache_creation_1h_input_tokens: 200, output_tokens: 50 },
    });
    assert.equal(claude.status, 200, claude.text);
    const models = await h.get(gw, '/v1/models', key);
    assert.equal(models.status, 200);

    const b = await scrapeUntil((m) => delta(a, m, REQ, reqLabels('chat_completions', 'mx-chat', 'okp', 200)) >= 2 &&
        delta(a, m, REQ, reqLabels('models', '', '', 200)) >= 1 &&
        delta(a, m, REQ, reqLabels('chat_completions', 'mx-claude', 'anth', 200)) >= 1, 'the chat requests');
    assert.equal(delta(a, b, REQ, reqLabels('chat_completions', 'mx-chat', 'okp', 200)), 2);
    assert.equal(delta(a, b, REQ, reqLabels('chat_completions', 'mx-claude', 'anth', 200)), 1);
    assert.equal(delta(a, b, REQ, reqLabels('models', '', '', 200)), 1);
    const chatM = { endpoint: 'chat_completions', model: 'mx-chat' };
    assert.equal(countDelta(a, b, 'modelswitch_request_duration_seconds', chatM), 2);
    assert.equal(delta(a, b, 'modelswitch_request_duration_seconds_bucket', { ...chatM, le: '+Inf' }), 2);
    assert.ok(delta(a, b, 'modelswitch_request_duration_seconds_sum', chatM) > 0);
    // only the stream has a first byte of its own
    assert.equal(countDelta(a, b, 'modelswitch_time_to_first_byte_seconds', chatM), 1);
    assert.equal(countDelta(a, b, 'modelswitch_time_to_first_byte_seconds',
        { endpoint: 'chat_completions', model: 'mx-claude' }), 0);
    // every inference request has an overhead; the stream's first byte came before its end
    assert.equal(countDelta(a, b, 'modelswitch_gateway_overhead_seconds', { endpoint: 'chat_completions' }), 3);
    assert.ok(b.get('modelswitch_time_to_first_byte_seconds_sum', chatM) <=
        b.get('modelswitch_request_duration_seconds_sum', chatM));
    assert.ok(delta(a, b, 'modelswitch_gateway_overhead_seconds_sum', { endpoint: 'chat_completions' }) <
        delta(a, b, 'modelswitch_request_duration_seconds_sum', chatM) +
        delta(a, b, 'modelswitch_request_duration_seconds_sum', { endpoint: 'chat_completions', model: 'mx-claude' }),
    'the time spent upstream is not overhead');

    // tokens and spend: exactly what the ledger recorded for these requests
    const ids = [whole, stream, claude].map((r) => r.headers.get('x-request-id'));
    const rows = (await h.usageRows(gw, billing)).filter((r) => ids.includes(r.requestId));
    assert.equal(rows.length, 3);
    for (const m of ['mx-chat', 'mx-claude']) {
        const mine = rows.filter((r) => r.model === m);
        const sum = (f) => mine.reduce((s, r) => s + f(r), 0);
        const want = {
            input: sum((r) => r.promptTokens - r.cachedTokens - r.cacheWriteTokens),
            cached_input: sum((r) => r.cachedTokens),
            cache_write: sum((r) => r.cacheWriteTokens - r.cacheWrite1hTokens),
            cache_write_1h: sum((r) => r.cacheWrite1hTokens),
            output: sum((r) => r.completionTokens),
            reasoning: sum((r) => r.reasoningTokens),
        };
        for (const [kind, n] of Object.entries(want)) {
            assert.equal(delta(a, b, 'modelswitch_tokens_total', { model: m, kind }), n, `${m} ${kind} tokens`);
        }
        const spent = mine.reduce((s, r) => s + h.usdToNano(r.chargedAmount), 0n);
        const nano = (x) => h.usdToNano(x.raw('modelswitch_spend_usd_total', { model: m }) ?? '0');
        assert.equal(nano(b) - nano(a), spent, `${m} spend`);
        assert.ok(spent > 0n);
    }
    // the kinds each provider reported, as a check that the comparison above compared something
    assert.equal(delta(a, b, 'modelswitch_tokens_total', { model: 'mx-chat', kind: 'cached_input' }), 40);
    assert.equal(delta(a, b, 'modelswitch_tokens_total', { model: 'mx-chat', kind: 'reasoning' }), 5);
    assert.equal(delta(a, b, 'modelswitch_tokens_total', { model: 'mx-claude', kind: 'cache_write' }), 100);
    assert.equal(delta(a, b, 'modelswitch_tokens_total', { model: 'mx-claude', kind: 'cache_write_1h' }), 200);
    assert.equal(delta(a, b, ATT, { provider: 'okp', outcome: 'ok' }), 2);
    assert.equal(delta(a, b, ATT, { provider: 'anth', outcome: 'ok' }), 1);
});

test('an upstream failure: retried on another deployment, failed over to a fallback model', T, async () => {
    const a = await scrape();
    for (let i = 0; i < 2; i++) {
        const r = await chat(key, { model: 'mx-retry' });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.headers.get('x-modelswitch-provider'), 'retryok');
    }
    const fb = await chat(key, { model: 'mx-fb' });
    assert.equal(fb.status, 200, fb.text);
    assert.equal(fb.headers.get('x-modelswitch-model'), 'mx-fb2');
    const b = await scrapeUntil((m) => delta(a, m, REQ, reqLabels('chat_completions', 'mx-fb2', 'fbok', 200)) >= 1 &&
        delta(a, m, REQ, reqLabels('chat_completions', 'mx-retry', 'retryok', 200)) >= 2, 'the fail-overs');
    // each mx-retry request: 503 on `down` (retried), then `retryok`
    assert.equal(delta(a, b, ATT, { provider: 'down', outcome: 'retried' }), 2);
    assert.equal(delta(a, b, ATT, { provider: 'down', outcome: 'error' }), 0);
    assert.equal(delta(a, b, ATT, { provider: 'retryok', outcome: 'ok' }), 2);
    assert.equal(delta(a, b, 'modelswitch_upstream_retries_total', { model: 'mx-retry' }), 2);
    assert.equal(delta(a, b, REQ, reqLabels('chat_completions', 'mx-retry', 'retryok', 200)), 2);
    // two requests failed on `down`, which makes it cool down (min_requests 2); the other serves
    assert.equal(b.get('modelswitch_deployment_cooldown', { provider: 'down', model: 'mx-retry' }), 1);
    assert.equal(b.raw('modelswitch_deployment_cooldown', { provider: 'retryok', model: 'mx-retry' }), '0');
    // mx-fb: two attempts on `down2` (max_attempts 2), then its fallback, counted under the model
    // that answered, as the ledger records it
    assert.equal(delta(a, b, ATT, { provider: 'down2', outcome: 'retried' }), 1);
    assert.equal(delta(a, b, ATT, { provider: 'down2', outcome: 'failed_over' }), 1);
    assert.equal(delta(a, b, ATT, { provider: 'down2', outcome: 'error' }), 0);
    assert.equal(delta(a, b, 'modelswitch_upstream_retries_total', { model: 'mx-fb' }), 1);
    assert.equal(delta(a, b, 'modelswitch_fallbacks_total', { model: 'mx-fb', fallback: 'mx-fb2' }), 1);
    assert.equal(delta(a, b, ATT, { provider: 'fbok', outcome: 'ok' }), 1);
    assert.equal(delta(a, b, REQ, reqLabels('chat_completions', 'mx-fb2', 'fbok', 200)), 1);
    assert.equal(delta(a, b, REQ, reqLabels('chat_completions', 'mx-fb', 'down2', 200)), 0);
    assert.ok(delta(a, b, 'modelswitch_tokens_total', { model: 'mx-fb2', kind: 'output' }) > 0);
    assert.equal(b.raw('modelswitch_deployment_cooldown', { provider: 'down2', model: 'mx-fb' }), '0',
        'one failed request is under min_requests');
});

test('timeouts and upstream 429s: attempts by outcome, the client status, the 429 scope', T, async () => {
    const a = await scrape();
    const slow = await chat(key, { model: 'mx-timeout', mock: { delay_ms: 1500 } });
    h.assertError(assert, slow, 504, 'timeout_error', 'upstream_timeout');
    const limited = await chat(key, { model: 'mx-429' });
    h.assertError(assert, limited, 429, 'rate_limit_error', 'rate_limit_exceeded');
    const b = await scrapeUntil((m) => delta(a, m, REQ, reqLabels('chat_completions', 'mx-429', 'r429', 429)) >= 1 &&
        delta(a, m, REQ, reqLabels('chat_completions', 'mx-timeout', 'slow', 504)) >= 1, 'the failures');
    // the first timed out and was retried; the last timed out and nothing followed
    assert.equal(delta(a, b, ATT, { provider: 'slow', outcome: 'retried' }), 1);
    assert.equal(delta(a, b, ATT, { provider: 'slow', outcome: 'timeout' }), 1);
    assert.equal(delta(a, b, 'modelswitch_upstream_retries_total', { model: 'mx-timeout' }), 1);
    assert.equal(delta(a, b, REQ, reqLabels('chat_completions', 'mx-timeout', 'slow', 504)), 1);
    // the 429 is waited out once (retry_after_max_ms), tried again, then passed on
    assert.equal(delta(a, b, ATT, { provider: 'r429', outcome: 'retried' }), 1);
    assert.equal(delta(a, b, ATT, { provider: 'r429', outcome: 'rate_limited' }), 1);
    assert.equal(delta(a, b, REQ, reqLabels('chat_completions', 'mx-429', 'r429', 429)), 1);
    assert.equal(delta(a, b, 'modelswitch_rate_limited_total', { scope: 'upstream' }), 1);
    assert.equal(delta(a, b, 'modelswitch_rate_limited_total', { scope: 'key' }), 0);
    // nothing was billed for either
    assert.equal(delta(a, b, 'modelswitch_tokens_total', { model: 'mx-timeout', kind: 'output' }), 0);
    assert.equal(b.raw('modelswitch_spend_usd_total', { model: 'mx-429' }) ?? '0', '0');
});

test('a rate-limited request and balance refusals are counted, and nothing is billed for them', T, async () => {
    const a = await scrape();
    const first = await chat(rpmKey, { model: 'echo-1' });
    assert.equal(first.status, 200, first.text);
    const second = await chat(rpmKey, { model: 'echo-1' });
    h.assertError(assert, second, 429, 'rate_limit_error', 'rate_limit_exceeded');
    const poor = await chat(poorKey, { model: 'mx-chat', max_tokens: 1000 });
    h.assertError(assert, poor, 403, 'permission_error', 'insufficient_balance');
    const capped = await chat(capKey, { model: 'mx-chat' });
    h.assertError(assert, capped, 403, 'permission_error', 'spend_limit_reached');
    const b = await scrapeUntil((m) => delta(a, m, REQ, reqLabels('chat_completions', 'mx-chat', '', 403)) >= 2 &&
        delta(a, m, REQ, reqLabels('chat_completions', 'echo-1', '', 429)) >= 1, 'the refusals');
    assert.equal(delta(a, b, 'modelswitch_rate_limited_total', { scope: 'key' }), 1);
    assert.equal(delta(a, b, 'modelswitch_rate_limited_total', { scope: 'upstream' }), 0);
    assert.equal(delta(a, b, 'modelswitch_balance_refusals_total', { reason: 'insufficient_balance' }), 1);
    assert.equal(delta(a, b, 'modelswitch_balance_refusals_total', { reason: 'spend_limit_reached' }), 1);
    // refused before any deployment: the model is known, the provider is not
    assert.equal(delta(a, b, REQ, reqLabels('chat_completions', 'echo-1', '', 429)), 1);
    assert.equal(delta(a, b, REQ, reqLabels('chat_completions', 'mx-chat', '', 403)), 2);
    assert.equal(delta(a, b, REQ, reqLabels('chat_completions', 'echo-1', 'local', 200)), 1);
    assert.equal(delta(a, b, 'modelswitch_tokens_total', { model: 'mx-chat', kind: 'input' }), 0);
    assert.equal(b.raw('modelswitch_spend_usd_total', { model: 'mx-chat' }), a.raw('modelswitch_spend_usd_total', { model: 'mx-chat' }));
    assert.equal(delta(a, b, ATT, { provider: 'local', outcome: 'ok' }), 1);
});

test('gauges: holds, ledger, store, connections, dropped log lines, build info; promtool accepts it all', T, async (t) => {
    const m = await scrapeUntil((x) => x.get('modelswitch_holds_open') === 0 &&
        x.get('modelswitch_ledger_queue_depth') === 0, 'no open hold and an empty ledger queue');
    assert.equal(m.raw('modelswitch_ledger_lag_seconds'), '0');
    assert.equal(m.raw('modelswitch_ledger_journal_events'), '0');
    assert.equal(m.raw('modelswitch_store_up'), '1');
    assert.ok(m.get('modelswitch_connections', { state: 'active' }) >= 1, 'the scrape itself is active');
    assert.ok(m.raw('modelswitch_connections', { state: 'idle' }) !== undefined);
    assert.equal(m.raw('modelswitch_log_lines_dropped_total'), '0');
    const version = (await h.run(h.GATEWAY_BIN, ['--version'])).stdout.trim().split(' ').at(-1);
    const info = m.all('modelswitch_build_info');
    assert.equal(info.length, 1);
    assert.equal(info[0][0].version, version);
    assert.match(info[0][0].libuv, /^\d+\.\d+\.\d+/);
    assert.equal(info[0][1], 1);
    // every family has its HELP and TYPE, and no label carries a key or an account
    for (const name of ['requests_total', 'request_duration_seconds', 'time_to_first_byte_seconds',
        'gateway_overhead_seconds', 'tokens_total', 'spend_usd_total', 'upstream_attempts_total',
        'upstream_retries_total', 'fallbacks_total', 'rate_limited_total', 'balance_refusals_total',
        'holds_open', 'ledger_queue_depth', 'ledger_journal_events', 'ledger_lag_seconds', 'store_up',
        'connections',
        'log_lines_dropped_total', 'deployment_cooldown', 'build_info']) {
        assert.match(m.text, new RegExp(`^# TYPE modelswitch_${name} `, 'm'), name);
        assert.match(m.text, new RegExp(`^# HELP modelswitch_${name} `, 'm'), name);
    }
    const labelNames = new Set([...m.text.matchAll(/[{,]([a-z_]+)="/g)].map((x) => x[1]));
    assert.deepEqual([...labelNames].sort(),
        ['endpoint', 'fallback', 'kind', 'le', 'libuv', 'model', 'outcome', 'provider', 'reason', 'scope', 'state',
            'status', 'version']);

    const probe = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
    if (probe.error) {
        t.skip(`promtool is not installed (Debian's prometheus package): ${probe.error.code}`);
        return;
    }
    const r = spawnSync('promtool', ['check', 'metrics'], { input: m.text, encoding: 'utf8' });
    assert.equal(r.status, 0, `promtool check metrics:\n${r.stdout}${r.stderr}`);
    assert.equal(`${r.stdout}${r.stderr}`.trim(), '', 'promtool had remarks');
});

test('server.metrics_public opens /metrics without a token; without an admin token it is off', T, async () => {
    const pub = await h.startGateway({ mock: false, config: { server: { metrics_public: true } } });
    try {
        const res = await h.get(pub, '/metrics');
        assert.equal(res.status, 200, res.text);
        assert.match(res.text, /^modelswitch_build_info\{/m);
        assert.equal((await h.get(pub, '/metrics', 'anything')).status, 200, 'any credential is ignored');
    } finally {
        await pub.stop();
    }
    const off = await h.startGateway({ mock: false });
    try {
        h.assertError(assert, await h.get(off, '/metrics'), 404, 'not_found_error', 'not_found');
        h.assertError(assert, await h.get(off, '/metrics', ADMIN), 404, 'not_found_error', 'not_found');
    } finally {
        await off.stop();
    }
});
