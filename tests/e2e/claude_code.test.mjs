// End-to-end (issue 11): Claude Code itself (@anthropic-ai/claude-code, pinned in package.json),
// `claude -p` with ANTHROPIC_BASE_URL pointing at the gateway and an ms- key as
// ANTHROPIC_API_KEY, answering through the echo model. Claude Code sends what other gateways trip
// on (a system turn among the messages, context_management, adaptive thinking with an effort,
// cache_control, a dozen tools, a long streamed request) and reads named events strictly; it
// must print the model's answer and exit 0. Skipped, saying why, only when the package is not
// installed (scripts/install-deps.sh --test installs it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as h from '../lib/harness.mjs';

const CLAUDE = path.join(h.ROOT, 'tests/e2e/node_modules/.bin/claude');
const installed = fs.existsSync(CLAUDE);
const T = { timeout: h.scaled(90000), skip: installed ? false : `Claude Code is not installed (${CLAUDE})` };
let gw, key, home;

before(async () => {
    if (!installed) return;
    gw = await h.startGateway({ mock: false, setup: async (g) => { ({ key } = await g.newProxyKey(10)); } });
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'ms-claude-home-'));
});
after(async () => {
    await gw?.stop();
    if (home) fs.rmSync(home, { recursive: true, force: true });
});

test('claude -p answers through the gateway (echo model) and the request is billed', T, async () => {
    const r = await h.run(CLAUDE, ['-p', 'hello from claude code'], {
        timeout: h.scaled(60000),
        env: {
            HOME: home, // its settings and session files stay in a temp dir
            ANTHROPIC_BASE_URL: gw.base,
            ANTHROPIC_API_KEY: key,
            ANTHROPIC_MODEL: 'echo-1',
            ANTHROPIC_SMALL_FAST_MODEL: 'echo-1',
            DISABLE_TELEMETRY: '1',
            DISABLE_AUTOUPDATER: '1',
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
        },
    });
    assert.equal(r.code, 0, `claude exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    // echo answers "You said: " + the last user message's text, which ends with the prompt
    assert.match(r.stdout, /You said:/);
    assert.match(r.stdout, /hello from claude code/);
    const lines = gw.accessLog().filter((l) => l.path === '/v1/messages');
    assert.ok(lines.length >= 1, 'Claude Code called /v1/messages');
    assert.ok(lines.every((l) => l.status === 200), JSON.stringify(lines.map((l) => l.status)));
    assert.ok(lines.some((l) => l.prompt_tokens > 1000), 'its system prompt and tools were billed');
});
