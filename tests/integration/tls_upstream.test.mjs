// The gateway against an HTTPS upstream (issue 15): the project's mock behind a TLS terminator
// (Node's tls module, piping each connection to the mock's plain port) whose certificate comes
// from a CA the test makes with the `openssl` command. The provider trusts that CA through
// `tls_ca_file`; a provider without it, and one reaching the terminator by a name its
// certificate does not carry, must fail with a 502 naming the certificate problem. Run once with
// the native client; the same file under MODELSWITCH_UPSTREAM=curl checks libcurl gives the same
// answers (the env var is read by the gateway at start).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
let dir, front, mock, key;
const gws = {};
let handshakes = 0, resumed = 0;

function makePki(d) {
    const sh = (args) => execFileSync('openssl', args, { cwd: d, stdio: 'ignore' });
    const k = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    sh(['req', '-x509', ...k, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=ms-it-ca']);
    sh(['req', ...k, '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=localhost']);
    fs.writeFileSync(path.join(d, 'srv.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
    sh(['x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
        '-days', '2', '-extfile', 'srv.ext', '-out', 'srv.pem']);
}

async function startFront(mockPort) {
    const server = tls.createServer({
        key: fs.readFileSync(path.join(dir, 'srv.key')),
        cert: fs.readFileSync(path.join(dir, 'srv.pem')),
        ALPNProtocols: ['http/1.1'],
    }, (sock) => {
        handshakes++;
        if (sock.isSessionReused()) resumed++;
        const up = net.connect(mockPort, '127.0.0.1');
        sock.pipe(up).pipe(sock);
        const end = () => { sock.destroy(); up.destroy(); };
        sock.on('error', end);
        up.on('error', end);
        sock.on('close', end);
        up.on('close', end);
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    return server;
}

async function gateway() {
    const url = `https://127.0.0.1:${front.address().port}/v1`;
    const byName = `https://localhost:${front.address().port}/v1`;
    const gw = await h.prepareGateway({
        mock,
        config: {
            providers: {
                priv: { kind: 'openai', base_url: url, api_key: 'sk-upstream-secret', tls_ca_file: path.join(dir, 'ca.pem') },
                named: { kind: 'openai', base_url: byName, api_key: 'sk-upstream-secret', tls_ca_file: path.join(dir, 'ca.pem') },
                untrusted: { kind: 'openai', base_url: url, api_key: 'sk-upstream-secret' },
            },
            models: {
                'm-priv': { pricing: { input: 1, output: 2 }, deployments: [{ provider: 'priv', model: 'gpt-x' }] },
                'm-named': { pricing: { input: 1, output: 2 }, deployments: [{ provider: 'named', model: 'gpt-x' }] },
                'm-untrusted': { pricing: { input: 1, output: 2 }, deployments: [{ provider: 'untrusted', model: 'gpt-x' }] },
            },
        },
    });
    return gw;
}

before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ms-tls-it-'));
    makePki(dir);
    mock = await h.startMock();
    front = await startFront(mock.port);
});
after(async () => {
    for (const gw of Object.values(gws)) await gw?.stop();
    await new Promise((r) => (front ? front.close(r) : r()));
    await mock?.stop?.();
    fs.rmSync(dir, { recursive: true, force: true });
});

for (const impl of ['native', 'curl']) {
    test(`${impl}: chat, streaming, keep-alive and refusals over HTTPS`, T, async () => {
        const saved = process.env.MODELSWITCH_UPSTREAM;
        if (impl === 'curl') process.env.MODELSWITCH_UPSTREAM = 'curl';
        else delete process.env.MODELSWITCH_UPSTREAM;
        let gw;
        try {
            gw = gws[impl] = await gateway();
            ({ key } = await gw.newProxyKey(100));
            await gw.start();
        } finally {
            if (saved === undefined) delete process.env.MODELSWITCH_UPSTREAM;
            else process.env.MODELSWITCH_UPSTREAM = saved;
        }
        const h0 = handshakes;
        for (let i = 0; i < 5; i++) {
            const res = await h.post(gw, '/v1/chat/completions', key,
                { model: 'm-priv', messages: [{ role: 'user', content: `hi ${i}` }] });
            assert.equal(res.status, 200, res.text);
            assert.ok(res.json.choices[0].message.content.length > 0);
        }
        assert.ok(handshakes - h0 <= 2, `keep-alive: ${handshakes - h0} handshakes for 5 requests`);

        const s = await h.post(gw, '/v1/chat/completions', key,
            { model: 'm-priv', messages: [{ role: 'user', content: 'stream' }], stream: true });
        assert.equal(s.status, 200, s.text);
        assert.ok(h.streamContent(h.sseEvents(s.text)).length > 0, s.text);
        assert.match(s.text, /data: \[DONE\]/);

        const n = await h.post(gw, '/v1/chat/completions', key,
            { model: 'm-named', messages: [{ role: 'user', content: 'by name' }] });
        assert.equal(n.status, 200, n.text);

        const bad = await h.post(gw, '/v1/chat/completions', key,
            { model: 'm-untrusted', messages: [{ role: 'user', content: 'x' }] });
        assert.equal(bad.status, 502, bad.text);
        assert.match(bad.text, /certificate/i);
        assert.ok(!bad.text.includes('sk-upstream-secret'));
    });
}
