// The web dashboard in a real browser: Debian's Chromium, headless, driven by puppeteer-core
// (tests/e2e/package.json; scripts/install-deps.sh --test installs both), against the real
// gateway and its account and operator APIs. What a person does: sign in with a billing key, see
// the balance, create a key and use it through /v1/chat/completions, find that request and its
// cost in usage, deactivate the key and see the next request refused, filter, page and export
// usage as CSV, have an operator top the account up and see the new balance, and so on. Every
// page is checked for console errors, CSP violations and requests to other origins; an XSS
// attempt in a key name must render as text. The pages run in Asia/Tokyo time so that "dates in
// the browser's time zone" is tested against a zone that is not the machine's.
//
// MS_SCREENSHOTS=docs/dashboard (make screenshots) also saves a PNG of each page, at 1280 px and
// one at 390 px, for the README.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.scaled(90000) };
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const ADMIN = 'dash-admin-token-5f1c0d9e';
const TZ = 'Asia/Tokyo';
const SHOTS = process.env.MS_SCREENSHOTS ? path.resolve(h.ROOT, process.env.MS_SCREENSHOTS) : null;
const XSS_KEY = '<img src=x onerror="window.__xss=1">';
const XSS_ACCOUNT = '<script>window.__xss=2</script><b>acme-evil</b>';
// quotes and a comma (CSV quoting), and a leading = (a spreadsheet would run it as a formula)
const CSV_KEY = '=batch "nightly", eu';

let gw, browser, tmp;
let acme; // account id
let ownerKey; // the owner's billing key (mk-)
let owner; // the owner's page, signed in (default browser context: downloads and clipboard)
let made = {}; // keys created through the pages, by role: {secret, id}
const pages = [];

// ---------------------------------------------------------------------------------------------
// helpers

const api = (p, key = ownerKey, opts = {}) => h.request(gw, opts.method || 'GET', p, { key, ...opts });
const chat = (key, model = 'echo-1', content = 'hello dashboard') =>
    h.post(gw, '/v1/chat/completions', key, { model, messages: [{ role: 'user', content }] });

/** A page with the test's checks attached: console errors, page errors, dialogs (alert() from an
 * injected script), CSP violations and requests to anything but the gateway are recorded and
 * fail the test (afterEach), except API refusals the test provoked (allow()). */
async function openPage({ width = 1280, height = 900, context } = {}) {
    const ctx = context ?? (await browser.createBrowserContext());
    const page = await ctx.newPage();
    page.setDefaultTimeout(h.scaled(10000));
    await page.setViewport({ width, height });
    await page.emulateTimezone(TZ);
    const log = { errors: [], allowed: [], foreign: [] };
    page.on('console', (m) => {
        if (m.type() === 'error') log.errors.push({ text: m.text(), url: m.location()?.url ?? '' });
    });
    page.on('pageerror', (e) => log.errors.push({ text: `page error: ${e.message}`, url: '' }));
    page.on('dialog', async (d) => {
        log.errors.push({ text: `a ${d.type()} dialog opened: ${d.message()}`, url: '' });
        await d.dismiss();
    });
    page.on('request', (r) => {
        const u = new URL(r.url());
        if (u.protocol !== 'blob:' && u.protocol !== 'data:' && u.origin !== gw.base) log.foreign.push(r.url());
    });
    await page.evaluateOnNewDocument(() => {
        window.__csp = [];
        document.addEventListener('securitypolicyviolation', (e) =>
            window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
    });
    page.log = log;
    pages.push(page);
    return page;
}

/** An API refusal the test provokes: the browser logs "Failed to load resource" for it. */
function allow(page, status, pathPrefix) {
    page.log.allowed.push({ status, pathPrefix });
}

async function checkPage(page) {
    const unexpected = page.log.errors.filter((e) => {
        const m = /Failed to load resource: the server responded with a status of (\d+)/.exec(e.text);
        if (!m) return true;
        const p = e.url ? new URL(e.url).pathname : '';
        return !page.log.allowed.some((a) => a.status === Number(m[1]) && p.startsWith(a.pathPrefix));
    });
    assert.deepEqual(unexpected, [], 'console errors');
    assert.deepEqual(page.log.foreign, [], 'requests to other origins');
    if (!page.isClosed()) {
        assert.deepEqual(await page.evaluate(() => window.__csp), [], 'CSP violations');
        assert.equal(await page.evaluate(() => window.__xss), undefined, 'an injected script ran');
    }
}

async function signIn(page, secret, role = 'account') {
    await page.goto(`${gw.base}/`);
    await page.waitForSelector('[data-testid=signin-form]');
    if (role === 'operator') await page.click('[data-testid=role-operator]');
    await page.focus('[data-testid=signin-secret]');
    await page.keyboard.type(secret);
    await page.keyboard.press('Enter');
    await page.waitForSelector(role === 'operator' ? '[data-testid=accounts-table]' : '[data-testid=balance]');
}

async function nav(page, where, ready) {
    await page.click(`[data-testid=nav-${where}]`);
    await page.waitForSelector(ready);
}

const text = (page, sel) => page.$eval(sel, (e) => e.textContent);
const attr = (page, sel, name) => page.$eval(sel, (e, n) => e.getAttribute(n), name);
const waitText = (page, sel, want) => page.waitForFunction((s, w) => {
    const e = document.querySelector(s);
    return e && (w instanceof Object ? new RegExp(w.re).test(e.textContent) : e.textContent === w);
}, {}, sel, want instanceof RegExp ? { re: want.source } : want);

async function setValue(page, sel, value) {
    await page.$eval(sel, (el, v) => {
        el.value = v;
        el.dispatchEvent(new Event('input', { bubbles: true }));
    }, value);
}

async function typeInto(page, sel, value) {
    await page.click(sel, { count: 3 });
    await page.keyboard.press('Backspace');
    if (value) await page.type(sel, value);
}

async function shot(page, name, fullPage = true) {
    if (!SHOTS) return;
    await fsp.mkdir(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage });
}

/** The id of the account's key with this display prefix, through the API. */
async function keyId(prefix, kind = 'keys') {
    const res = await api(`/api/${kind}`);
    const k = res.json.keys.find((x) => x.prefix === prefix);
    assert.ok(k, `no ${kind} with prefix ${prefix}: ${res.text}`);
    return k.id;
}

/** The local date (YYYY-MM-DD) of an ISO time in the pages' time zone. */
const tzDate = (iso) => new Intl.DateTimeFormat('en-CA', { timeZone: TZ }).format(new Date(iso));
const tzTime = (iso) => new Intl.DateTimeFormat('en-US', { dateStyle: 'short', timeStyle: 'medium', timeZone: TZ })
    .format(new Date(iso));
const spaces = (s) => s.replace(/\s/gu, ' ');

/** RFC 4180 CSV into rows of fields. */
function parseCsv(s) {
    const rows = [];
    let row = [], f = '', q = false;
    for (let i = 0; i < s.length; i++) {
        const c = s[i];
        if (q) {
            if (c === '"' && s[i + 1] === '"') { f += '"'; i++; } else if (c === '"') q = false; else f += c;
        } else if (c === '"') q = true;
        else if (c === ',') { row.push(f); f = ''; } else if (c === '\r' && s[i + 1] === '\n') { row.push(f); rows.push(row); row = []; f = ''; i++; } else f += c;
    }
    if (f || row.length) { row.push(f); rows.push(row); }
    return rows;
}

/** Creates a key through the keys page's form; returns {secret, id, prefix}. */
async function createKeyInPage(page, name, { spendLimit } = {}) {
    await typeInto(page, '[data-testid=new-key-name]', name);
    if (spendLimit !== undefined) await typeInto(page, '[data-testid=key-spend-input]', spendLimit);
    await page.click('[data-testid=create-key]');
    await page.waitForSelector('[data-testid=secret-dialog] [data-testid=new-secret]');
    const secret = await page.$eval('[data-testid=new-secret]', (e) => e.value);
    const warning = await text(page, '[data-testid=secret-dialog]');
    assert.match(warning, /you will not see it again/i);
    return { secret, warning };
}

// ---------------------------------------------------------------------------------------------

before(async () => {
    assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/install-deps.sh --test`);
    gw = await h.startGateway({
        mock: false,
        config: {
            server: { admin_token: ADMIN },
            notifications: { allow_private_networks: true }, // the test's webhook receiver is on loopback
            models: {
                // dear enough that its requests cost cents, as the screenshots should show
                'echo-2': {
                    pricing: { input: 1000, output: 3000 }, max_output_tokens: 64,
                    deployments: [{ provider: 'local', model: 'echo' }],
                },
            },
        },
        setup: async (g) => {
            acme = await g.createAccount('acme', 10);
            ownerKey = await g.createKey(acme, { type: 'billing', name: 'owner' });
            await g.createAccount(XSS_ACCOUNT, 1);
        },
    });
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ms-dash-'));
    browser = await puppeteer.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--lang=en-US', '--no-first-run'],
        env: { ...process.env, LANG: 'en_US.UTF-8' },
        timeout: h.scaled(30000),
    });
    await browser.defaultBrowserContext().overridePermissions(gw.base, ['clipboard-read', 'clipboard-write', 'clipboard-sanitized-write']);
    owner = await openPage({ context: browser.defaultBrowserContext() });
});

afterEach(async () => {
    for (const p of pages) await checkPage(p);
});

after(async () => {
    await browser?.close();
    await gw?.stop();
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

test('sign in with a billing key using only the keyboard; the key stays in the tab alone', T, async () => {
    await owner.goto(`${gw.base}/`);
    assert.equal(owner.url(), `${gw.base}/dashboard/`, 'GET / redirects to the dashboard');
    await owner.waitForSelector('[data-testid=signin-form]');
    assert.equal(await owner.evaluate(() => document.activeElement.dataset.testid), 'signin-secret', 'the key field has the focus');
    // every input is labelled
    assert.deepEqual(await owner.$$eval('input, select', (els) => els.filter((e) => !e.labels?.length && !e.getAttribute('aria-label')).map((e) => e.outerHTML)), []);

    allow(owner, 401, '/api/balance');
    await owner.keyboard.type('mk-ThisIsNotAKeyOfThisGateway0000000000000000');
    await owner.keyboard.press('Enter');
    await waitText(owner, '[data-testid=signin-error]', 'Invalid API key');
    await typeInto(owner, '[data-testid=signin-secret]', 'ms-someProxyKey');
    await owner.keyboard.press('Enter');
    await waitText(owner, '[data-testid=signin-error]', /proxy key/);

    await typeInto(owner, '[data-testid=signin-secret]', ownerKey);
    await owner.keyboard.press('Enter');
    await owner.waitForSelector('[data-testid=balance]');
    assert.equal(await text(owner, '[data-testid=balance]'), '$10.00');
    assert.equal(await attr(owner, '[data-testid=balance]', 'title'), '10 USD', 'the exact amount on hover');
    assert.match(await text(owner, '[data-testid=spend-today]'), /^\$0\.00$/);

    // the secret: in sessionStorage, nowhere else
    const stored = await owner.evaluate(() => JSON.parse(sessionStorage.getItem('modelswitch.session')));
    assert.deepEqual(stored, { role: 'account', secret: ownerKey });
    assert.deepEqual(await owner.cookies(), [], 'no cookie');
    assert.equal(await owner.evaluate(() => localStorage.length), 0, 'nothing in localStorage');
    assert.ok(!owner.url().includes(ownerKey), 'not in the URL');
    assert.ok(!gw.stderr.includes(ownerKey), 'not in the gateway\'s log');

    // the focus is visible when moved by keyboard
    await owner.keyboard.press('Tab');
    const outline = await owner.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.notEqual(outline, 'none', 'a visible focus ring');
});

test('create an API key (shown once, copied), use it for a real request, and find it in usage with its cost', T, async () => {
    await nav(owner, 'keys', '[data-testid=create-key-form]');
    await owner.waitForSelector('[data-testid=keys-empty]');
    const { secret } = await createKeyInPage(owner, 'backend', { spendLimit: '2.5' });
    assert.match(secret, /^ms-[A-Za-z0-9]{40}$/);
    await shot(owner, 'api-key-created', false);
    await owner.click('[data-testid=copy-secret]');
    await waitText(owner, '[data-testid=copy-status]', 'Copied.');
    assert.equal(await owner.evaluate(() => navigator.clipboard.readText()), secret, 'the copy button copies the key');
    await owner.click('[data-testid=secret-done]');
    await owner.waitForFunction(() => !document.querySelector('[data-testid=secret-dialog]'));
    assert.ok(!(await owner.content()).includes(secret), 'the key is gone from the page once the dialog is closed');

    const id = await keyId(secret.slice(0, 8));
    made.backend = { secret, id };
    const row = `[data-testid=key-row-${id}]`;
    await owner.waitForSelector(row);
    assert.equal(await text(owner, `${row} [data-testid=key-name]`), 'backend');
    assert.equal(await text(owner, `${row} [data-testid=key-prefix]`), `${secret.slice(0, 8)}…`);
    assert.equal(await text(owner, `${row} [data-testid=key-status]`), 'Active');
    assert.equal(await attr(owner, `${row} [data-testid=key-limit]`, 'title'), '2.5 USD');

    const res = await chat(secret);
    assert.equal(res.status, 200, res.text);
    const cost = res.headers.get('x-modelswitch-cost');
    const rid = res.headers.get('x-request-id');
    const usageRow = (await api('/api/usage?limit=1')).json.usage[0];
    assert.equal(usageRow.requestId, rid);

    await nav(owner, 'usage', '[data-testid=usage-table]');
    const ur = `[data-testid=usage-row-${usageRow.id}]`;
    await owner.waitForSelector(ur);
    assert.equal(await text(owner, `${ur} [data-testid=usage-model]`), 'echo-1');
    assert.equal(await text(owner, `${ur} [data-testid=usage-key]`), `backend (${secret.slice(0, 8)}…)`);
    assert.equal(await attr(owner, `${ur} [data-testid=usage-cost]`, 'title'), `${cost} USD`, 'the exact cost on hover');
    assert.equal(await text(owner, `${ur} [data-testid=usage-status]`), '200');
    const when = await owner.$eval(`${ur} td`, (e) => ({ text: e.textContent, title: e.getAttribute('title') }));
    assert.equal(when.title, `${usageRow.createdAt} (UTC)`);
    assert.equal(spaces(when.text), spaces(tzTime(usageRow.createdAt)), `the time in the browser's zone (${TZ})`);

    // the key's spend and the overview follow
    await nav(owner, 'keys', `[data-testid=key-row-${id}]`);
    assert.equal(await attr(owner, `${row} [data-testid=key-spent]`, 'title'), `${cost} USD`);
    await nav(owner, 'overview', '[data-testid=balance]');
    const bal = (await api('/api/balance')).json.balance;
    assert.equal(await attr(owner, '[data-testid=balance]', 'title'), `${bal} USD`);
    assert.equal(await attr(owner, '[data-testid=spend-today]', 'title'), `${cost} USD`);
    await owner.waitForSelector('[data-testid=top-models]');
});

test('deactivate the key and its next request is refused; activate it and it works again', T, async () => {
    const { secret, id } = made.backend;
    await nav(owner, 'keys', `[data-testid=key-row-${id}]`);
    const row = `[data-testid=key-row-${id}]`;
    await owner.click(`${row} [data-testid=toggle-key]`);
    await waitText(owner, `${row} [data-testid=key-status]`, 'Deactivated');
    const refused = await chat(secret);
    h.assertError(assert, refused, 403, 'permission_error', 'key_deactivated');
    await owner.click(`${row} [data-testid=toggle-key]`);
    await waitText(owner, `${row} [data-testid=key-status]`, 'Active');
    assert.equal((await chat(secret)).status, 200);
});

test('edit a key: rename, spend limit, rate limits and expiry, in the browser\'s time zone', T, async () => {
    const { id } = made.backend;
    const row = `[data-testid=key-row-${id}]`;
    await owner.click(`${row} [data-testid=edit-key]`);
    await owner.waitForSelector('[data-testid=edit-dialog]');
    await typeInto(owner, '[data-testid=edit-dialog] [data-testid=key-name-input]', 'backend-eu');
    await typeInto(owner, '[data-testid=edit-dialog] [data-testid=key-spend-input]', '1.25');
    await typeInto(owner, '[data-testid=edit-dialog] [data-testid=key-rpm-input]', '30');
    await typeInto(owner, '[data-testid=edit-dialog] [data-testid=key-tpm-input]', '50000');
    const localExpiry = `${new Date().getFullYear() + 1}-06-01T09:30`; // Tokyo time
    await setValue(owner, '[data-testid=edit-dialog] [data-testid=key-expires-input]', localExpiry);
    await owner.click('[data-testid=edit-save]');
    await owner.waitForFunction(() => !document.querySelector('[data-testid=edit-dialog]'));
    await waitText(owner, `${row} [data-testid=key-name]`, 'backend-eu');
    const k = (await api(`/api/keys/${id}`)).json;
    assert.equal(k.name, 'backend-eu');
    assert.equal(k.spendLimit, 1.25);
    assert.equal(k.rpm, 30);
    assert.equal(k.tpm, 50000);
    assert.equal(k.expiresAt, `${new Date().getFullYear() + 1}-06-01T00:30:00Z`, '09:30 in Tokyo is 00:30 UTC');

    // a field left empty removes the setting; the others are not sent again
    await owner.click(`${row} [data-testid=edit-key]`);
    await owner.waitForSelector('[data-testid=edit-dialog]');
    await typeInto(owner, '[data-testid=edit-dialog] [data-testid=key-spend-input]', '');
    await setValue(owner, '[data-testid=edit-dialog] [data-testid=key-expires-input]', '');
    await owner.click('[data-testid=edit-save]');
    await owner.waitForFunction(() => !document.querySelector('[data-testid=edit-dialog]'));
    const k2 = (await api(`/api/keys/${id}`)).json;
    assert.equal(k2.spendLimit, null);
    assert.equal(k2.expiresAt, null);
    assert.equal(k2.rpm, 30);

    // the API's refusal, in its words
    allow(owner, 400, '/api/keys');
    await owner.click(`${row} [data-testid=edit-key]`);
    await typeInto(owner, '[data-testid=edit-dialog] [data-testid=key-rpm-input]', '0');
    await owner.click('[data-testid=edit-save]');
    const msg = await owner.waitForSelector('[data-testid=edit-dialog-error]');
    const apiMsg = (await api(`/api/keys/${id}`, ownerKey, { method: 'PUT', body: { rpm: 0 } })).json.error.message;
    assert.equal(await msg.evaluate((e) => e.textContent), apiMsg);
    await owner.click('[data-testid=edit-cancel]');
    await owner.waitForFunction(() => !document.querySelector('[data-testid=edit-dialog]'));
});

test('filter usage by model, key and dates, page through it, and export it as CSV', T, async () => {
    await nav(owner, 'keys', '[data-testid=create-key-form]');
    const { secret } = await createKeyInPage(owner, CSV_KEY);
    await owner.click('[data-testid=secret-done]');
    const batchId = await keyId(secret.slice(0, 8));
    made.batch = { secret, id: batchId };
    for (let i = 0; i < 52; i++) assert.equal((await chat(secret, 'echo-2', `batch ${i}`)).status, 200);

    await nav(owner, 'usage', '[data-testid=usage-table]');
    await typeInto(owner, '[data-testid=usage-filter-model]', 'echo-2');
    await owner.click('[data-testid=usage-apply]');
    await waitText(owner, '[data-testid=usage-range]', 'Requests 1–50');
    let models = await owner.$$eval('[data-testid=usage-model]', (els) => els.map((e) => e.textContent));
    assert.equal(models.length, 50);
    assert.ok(models.every((m) => m === 'echo-2'), models.join());
    await owner.click('[data-testid=usage-next]');
    await waitText(owner, '[data-testid=usage-range]', 'Requests 51–52');
    assert.equal(await owner.$eval('[data-testid=usage-next]', (e) => e.disabled), true, 'no page after the last');
    await owner.click('[data-testid=usage-prev]');
    await waitText(owner, '[data-testid=usage-range]', 'Requests 1–50');

    // by key: the backend key's requests only
    await typeInto(owner, '[data-testid=usage-filter-model]', '');
    await owner.select('select[data-testid=usage-filter-key]', String(made.backend.id));
    await owner.click('[data-testid=usage-apply]');
    await waitText(owner, '[data-testid=usage-range]', 'Requests 1–2');
    const keys = await owner.$$eval('[data-testid=usage-key]', (els) => els.map((e) => e.textContent));
    assert.deepEqual(keys, [`backend-eu (${made.backend.secret.slice(0, 8)}…)`, `backend-eu (${made.backend.secret.slice(0, 8)}…)`]);

    // dates: the day of the requests (in Tokyo) has them, the next day has none
    const newest = (await api('/api/usage?limit=1')).json.usage[0];
    const day = tzDate(newest.createdAt);
    const next = tzDate(new Date(Date.parse(newest.createdAt) + 86400000).toISOString());
    await owner.select('select[data-testid=usage-filter-key]', '');
    await setValue(owner, '[data-testid=usage-filter-from]', next);
    await owner.click('[data-testid=usage-apply]');
    await owner.waitForSelector('[data-testid=usage-empty]');
    await setValue(owner, '[data-testid=usage-filter-from]', day);
    await setValue(owner, '[data-testid=usage-filter-to]', day);
    await typeInto(owner, '[data-testid=usage-filter-model]', 'echo-2');
    await owner.click('[data-testid=usage-apply]');
    await waitText(owner, '[data-testid=usage-range]', 'Requests 1–50');

    // statistics by model, key and day, with the same filters
    await owner.click('[data-testid=tab-stats]');
    await owner.waitForSelector('[data-testid=stats-by-key]');
    assert.match(await text(owner, '[data-testid=stats-overall]'), /^52 requests, /);
    assert.ok(await owner.$('[data-testid=chart-by-model] rect.bar'));
    assert.ok(await owner.$('[data-testid=chart-by-day-spend] rect.bar'));
    const stats = (await api('/api/usage/stats?model=echo-2&group_by=key')).json;
    assert.equal(await owner.$eval('[data-testid=stats-by-key] tbody tr td', (e) => e.textContent), `${CSV_KEY} (${secret.slice(0, 8)}…)`);
    assert.equal(await owner.$eval('[data-testid=stats-by-key] tbody tr td:last-child', (e) => e.getAttribute('title')), `${stats.byKey[0].spend} USD`);

    // the CSV: every row of the filter, made from the API's pages
    const cdp = await owner.createCDPSession();
    const dir = await fsp.mkdtemp(path.join(tmp, 'dl-'));
    // the file is read once Chromium says the download completed: a file of the final name can
    // be there before its bytes are (seen once under ASan: an empty read)
    let completed = false;
    cdp.on('Browser.downloadProgress', (e) => { if (e.state === 'completed') completed = true; });
    await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: dir, eventsEnabled: true });
    await owner.click('[data-testid=usage-export]');
    await waitText(owner, '[data-testid=export-status]', /^Exported 52 requests to /);
    assert.ok((await h.eventually(async () => completed, h.scaled(5000))).value, 'the download completed');
    const { value: file } = await h.eventually(async () => (await fsp.readdir(dir)).find((x) => x.endsWith('.csv')), h.scaled(5000));
    assert.equal(file, `modelswitch-usage-from-${day}-to-${day}.csv`);
    const rows = parseCsv(await fsp.readFile(path.join(dir, file), 'utf8'));
    const header = rows.shift();
    assert.deepEqual(header.slice(0, 6), ['created_at', 'request_id', 'model', 'provider', 'key_id', 'key_name']);
    const want = [];
    for (let offset = 0; offset === want.length; offset += 50) {
        want.push(...(await api(`/api/usage?model=echo-2&limit=50&offset=${offset}`)).json.usage);
    }
    assert.equal(rows.length, 52);
    const col = (name) => header.indexOf(name);
    assert.deepEqual(rows.map((r) => r[col('request_id')]), want.map((u) => u.requestId), 'every request, newest first');
    assert.deepEqual(rows.map((r) => r[col('key_name')]), want.map(() => `'${CSV_KEY} (${secret.slice(0, 8)}…)`),
        'a name with quotes and a comma, kept from running as a formula');
    assert.deepEqual(rows.map((r) => h.usdToNano(r[col('cost_usd')])), want.map((u) => h.usdToNano(u.chargedAmount)), 'exact costs');
    assert.deepEqual(rows.map((r) => Number(r[col('prompt_tokens')])), want.map((u) => u.promptTokens));
    await cdp.detach();
});

test('the operator tops an account up and issues a billing key; the owner sees the new balance', T, async () => {
    const op = await openPage();
    await signIn(op, ADMIN, 'operator');
    assert.equal(await op.evaluate(() => JSON.parse(sessionStorage.getItem('modelswitch.session')).role), 'operator');
    const row = `[data-testid=account-row-${acme}]`;
    const before = (await api('/api/balance')).json.balance;
    assert.equal(await attr(op, `${row} [data-testid=account-balance]`, 'title'), `${before} USD`);
    const view = (await h.get(gw, `/admin/accounts/${acme}`, ADMIN)).json;
    assert.equal(await text(op, `${row} [data-testid=account-keys]`), String(view.keys), 'the account\'s proxy keys');
    assert.equal(view.keys, (await api('/api/keys')).json.keys.length);
    assert.equal(await attr(op, `${row} [data-testid=account-spent]`, 'title'), `${view.spent} USD`);

    await shot(op, 'operator-accounts', false);
    await op.click(`${row} [data-testid=topup]`);
    await op.waitForSelector('[data-testid=topup-dialog]');
    await op.type('[data-testid=topup-amount]', '5.25');
    await op.type('[data-testid=topup-description]', 'wire 2026-12');
    await op.click('[data-testid=topup-submit]');
    await op.waitForFunction(() => !document.querySelector('[data-testid=topup-dialog]'));
    const after = h.nanoToUsd(h.usdToNano(before) + h.usdToNano('5.25'));
    await op.waitForFunction((s, w) => document.querySelector(s)?.getAttribute('title') === w, {}, `${row} [data-testid=account-balance]`, `${after} USD`);

    await nav(owner, 'overview', '[data-testid=balance]');
    await owner.waitForFunction((w) => document.querySelector('[data-testid=balance]')?.getAttribute('title') === w, {}, `${after} USD`);
    await nav(owner, 'transactions', '[data-testid=transactions-table]');
    assert.equal(await text(owner, '[data-testid=tx-description]'), 'wire 2026-12');
    assert.equal(await text(owner, '[data-testid=tx-type]'), 'Payment');
    assert.equal(await text(owner, '[data-testid=tx-amount]'), '+$5.25');
    assert.equal(await attr(owner, '[data-testid=tx-balance-after]', 'title'), `${after} USD`, 'the running balance');
    const txs = (await api('/api/transactions?limit=50')).json.transactions;
    const shown = await owner.$$eval('[data-testid=tx-balance-after]', (els) => els.map((e) => e.getAttribute('title')));
    assert.deepEqual(shown, txs.map((t) => `${t.balanceAfter} USD`), 'every row\'s balance after it');

    // a new account and its first billing key, shown once; its owner signs in to empty pages
    await op.type('[data-testid=new-account-name]', 'beta');
    await op.click('[data-testid=create-account]');
    await waitText(op, '[data-testid=notice]', /Account beta created/);
    const beta = (await h.get(gw, '/admin/accounts', ADMIN)).json.accounts.find((a) => a.name === 'beta');
    await op.waitForSelector(`[data-testid=account-row-${beta.id}]`);
    await op.click(`[data-testid=account-row-${beta.id}] [data-testid=issue-key]`);
    await op.waitForSelector('[data-testid=issue-dialog]');
    await op.click('[data-testid=issue-submit]');
    await op.waitForSelector('[data-testid=secret-dialog] [data-testid=new-secret]');
    const betaKey = await op.$eval('[data-testid=new-secret]', (e) => e.value);
    assert.match(betaKey, /^mk-/);
    await op.click('[data-testid=secret-done]');
    assert.equal((await h.get(gw, '/api/balance', betaKey)).json.balance, 0);

    const bp = await openPage();
    await signIn(bp, betaKey);
    assert.equal(await text(bp, '[data-testid=balance]'), '$0.00');
    await bp.waitForSelector('[data-testid=top-models-empty]');
    await nav(bp, 'keys', '[data-testid=keys-empty]');
    await nav(bp, 'usage', '[data-testid=usage-empty]');
    await bp.click('[data-testid=tab-stats]');
    await bp.waitForSelector('[data-testid=stats-empty]');
    await nav(bp, 'transactions', '[data-testid=transactions-empty]');
    await bp.close();

    // the account named like a script is text on the operator's page
    const names = await op.$$eval('[data-testid=account-name]', (els) => els.map((e) => ({ text: e.textContent, kids: e.children.length })));
    assert.ok(names.some((n) => n.text === XSS_ACCOUNT && n.kids === 0), JSON.stringify(names));
    assert.equal(await op.$$eval('[data-testid=accounts-table] script, [data-testid=accounts-table] b', (e) => e.length), 0);
    await checkPage(op);
    await op.close();
});

test('notifications: a threshold and webhook set in the page; the balance falls below it, the signed webhook arrives, the overview warns', T, async () => {
    const got = [];
    const server = http.createServer((req, res) => {
        let body = '';
        req.setEncoding('utf8');
        req.on('data', (d) => { body += d; });
        req.on('end', () => {
            got.push({ method: req.method, url: req.url, headers: req.headers, body });
            res.writeHead(204);
            res.end();
        });
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const hookUrl = `http://127.0.0.1:${server.address().port}/hook?token=t0k`;
    try {
        await nav(owner, 'settings', '[data-testid=notif-form]');
        // just under the balance: the next request's charge takes the balance below it
        const threshold = h.nanoToUsd(h.usdToNano((await api('/api/balance')).json.balance) - 1000n);
        await typeInto(owner, '[data-testid=notif-threshold]', threshold);
        await typeInto(owner, '[data-testid=notif-webhook]', hookUrl);
        await owner.click('[data-testid=notif-save]');
        await owner.waitForSelector('[data-testid=secret-dialog] [data-testid=new-secret]');
        const secret = await owner.$eval('[data-testid=new-secret]', (e) => e.value);
        assert.match(secret, /^whsec_[0-9A-Za-z]{40}$/, 'the signing secret, shown once');
        await owner.click('[data-testid=secret-done]');
        await waitText(owner, '[data-testid=notif-saved]', /^Saved: alert below \$\d/);
        assert.equal(await text(owner, '[data-testid=notif-secret-prefix]'), `${secret.slice(0, 8)}…`);
        const set = (await api('/api/settings/notifications')).json;
        assert.equal(h.usdToNano(set.lowBalanceThreshold), h.usdToNano(threshold));
        assert.equal(set.webhookUrl, hookUrl);
        assert.equal(set.webhookSecret, undefined, 'not shown again');

        await nav(owner, 'overview', '[data-testid=balance]');
        assert.equal(await owner.$('[data-testid=low-balance-warning]'), null, 'not below the threshold yet');
        assert.equal((await chat(made.backend.secret)).status, 200);
        await h.eventually(() => got.length > 0, h.scaled(15000));
        assert.equal(got.length, 1, 'one webhook');
        const hook = got[0];
        assert.equal(hook.method, 'POST');
        assert.equal(hook.url, '/hook?token=t0k');
        const sig = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(hook.headers['x-modelswitch-signature'] ?? '');
        assert.ok(sig, `signature header: ${hook.headers['x-modelswitch-signature']}`);
        assert.equal(sig[2], crypto.createHmac('sha256', secret).update(`${sig[1]}.${hook.body}`).digest('hex'), 'signed with the secret the page showed');
        const notice = JSON.parse(hook.body);
        assert.equal(notice.type, 'balance.low');
        assert.equal(String(notice.accountId), String(acme));
        assert.equal(h.usdToNano(notice.threshold), h.usdToNano(threshold));
        await nav(owner, 'settings', '[data-testid=notif-form]');
        await nav(owner, 'overview', '[data-testid=low-balance-warning]');
        assert.match(await text(owner, '[data-testid=low-balance-warning]'), /below your low-balance threshold/);

        // a new secret, shown once; then no threshold: no warning
        await nav(owner, 'settings', '[data-testid=notif-rotate]');
        await owner.click('[data-testid=notif-rotate]');
        await owner.waitForSelector('[data-testid=secret-dialog] [data-testid=new-secret]');
        const rotated = await owner.$eval('[data-testid=new-secret]', (e) => e.value);
        assert.match(rotated, /^whsec_/);
        assert.notEqual(rotated, secret);
        await owner.click('[data-testid=secret-done]');
        await waitText(owner, '[data-testid=notif-secret-prefix]', `${rotated.slice(0, 8)}…`);
        await typeInto(owner, '[data-testid=notif-threshold]', '');
        await owner.click('[data-testid=notif-save]');
        await waitText(owner, '[data-testid=notif-saved]', 'Saved: no low-balance alert.');
        assert.equal((await api('/api/settings/notifications')).json.lowBalanceThreshold, null);
        await nav(owner, 'overview', '[data-testid=balance]');
        assert.equal(await owner.$('[data-testid=low-balance-warning]'), null);

        // a refused URL, in the API's words
        allow(owner, 400, '/api/settings/notifications');
        await nav(owner, 'settings', '[data-testid=notif-form]');
        await typeInto(owner, '[data-testid=notif-webhook]', 'ftp://example.com/x');
        await owner.click('[data-testid=notif-save]');
        await waitText(owner, '[data-testid=notif-error]', "'webhook_url' must start with http:// or https://.");

        // above the balance, for the screenshots' overview: it warns at once, and sends nothing
        await typeInto(owner, '[data-testid=notif-webhook]', hookUrl);
        await typeInto(owner, '[data-testid=notif-threshold]', '20');
        await owner.click('[data-testid=notif-save]');
        await waitText(owner, '[data-testid=notif-saved]', 'Saved: alert below $20.00.');
        await nav(owner, 'overview', '[data-testid=low-balance-warning]');
        assert.equal(got.length, 1);
    } finally {
        server.close();
    }
});

test('an XSS attempt in a key name renders as text everywhere', T, async () => {
    await nav(owner, 'keys', '[data-testid=create-key-form]');
    const { secret } = await createKeyInPage(owner, XSS_KEY);
    await owner.click('[data-testid=secret-done]');
    const id = await keyId(secret.slice(0, 8));
    assert.equal((await chat(secret)).status, 200);
    const row = `[data-testid=key-row-${id}]`;
    await owner.waitForSelector(row);
    assert.equal(await text(owner, `${row} [data-testid=key-name]`), XSS_KEY);
    assert.equal(await owner.$$eval('[data-testid=keys-table] img', (e) => e.length), 0, 'no element made from the name');
    await owner.click(`${row} [data-testid=delete-key]`);
    assert.match(await text(owner, '[data-testid=confirm-dialog]'), new RegExp(XSS_KEY.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    await owner.click('[data-testid=confirm-cancel]');

    await nav(owner, 'usage', '[data-testid=usage-table]');
    const opts = await owner.$$eval('select[data-testid=usage-filter-key] option', (els) => els.map((e) => e.textContent));
    assert.ok(opts.includes(`${XSS_KEY} (${secret.slice(0, 8)}…)`), opts.join(' | '));
    await owner.waitForFunction((w) => [...document.querySelectorAll('[data-testid=usage-key]')].some((e) => e.textContent === w), {}, `${XSS_KEY} (${secret.slice(0, 8)}…)`);
    assert.equal(await owner.$$eval('main img', (e) => e.length), 0);
    assert.equal(await owner.evaluate(() => window.__xss), undefined);
});

test('billing keys: the key in use cannot delete itself; a deleted key signs its tab out; sign-out forgets the key', T, async () => {
    await nav(owner, 'billing-keys', '[data-testid=keys-table]');
    const mine = await keyId(ownerKey.slice(0, 8), 'billing-keys');
    const row = `[data-testid=key-row-${mine}]`;
    assert.equal(await text(owner, `${row} [data-testid=key-in-use]`), 'this session');
    allow(owner, 400, '/api/billing-keys/');
    await owner.click(`${row} [data-testid=delete-key]`);
    await owner.click('[data-testid=confirm-ok]');
    await waitText(owner, '[data-testid=confirm-dialog-error]', 'The billing key in use cannot delete itself; use another billing key of the account.');
    await owner.click('[data-testid=confirm-cancel]');
    await owner.click(`${row} [data-testid=toggle-key]`);
    await waitText(owner, '[data-testid=keys-error]', /cannot deactivate itself/);

    // a second billing key, signed in in another tab, then deleted from this one
    const { secret } = await createKeyInPage(owner, 'second');
    await owner.click('[data-testid=secret-done]');
    const second = await keyId(secret.slice(0, 8), 'billing-keys');
    const other = await openPage();
    await signIn(other, secret);
    await owner.waitForSelector(`[data-testid=key-row-${second}]`);
    await owner.click(`[data-testid=key-row-${second}] [data-testid=delete-key]`);
    await owner.click('[data-testid=confirm-ok]');
    await owner.waitForFunction((s) => !document.querySelector(s), {}, `[data-testid=key-row-${second}]`);
    allow(other, 401, '/api/');
    await other.click('[data-testid=nav-keys]');
    await waitText(other, '[data-testid=signin-message]', 'You were signed out: Invalid API key');
    assert.equal(await other.evaluate(() => sessionStorage.getItem('modelswitch.session')), null);
    await checkPage(other);
    await other.close();

    // deleting a proxy key, confirmed: it is refused from then on
    await nav(owner, 'keys', `[data-testid=key-row-${made.batch.id}]`);
    await owner.click(`[data-testid=key-row-${made.batch.id}] [data-testid=delete-key]`);
    await owner.click('[data-testid=confirm-ok]');
    await owner.waitForFunction((s) => !document.querySelector(s), {}, `[data-testid=key-row-${made.batch.id}]`);
    h.assertError(assert, await chat(made.batch.secret), 401, 'invalid_request_error', 'invalid_api_key');

    // sign out: the key is gone from the tab, and the pages ask for it again
    const sp = await openPage();
    await signIn(sp, ownerKey);
    await sp.click('[data-testid=sign-out]');
    await waitText(sp, '[data-testid=signin-message]', 'You are signed out.');
    assert.equal(await sp.evaluate(() => sessionStorage.length), 0);
    await sp.goto(`${gw.base}/dashboard/#/keys`);
    await sp.waitForSelector('[data-testid=signin-form]');
    await checkPage(sp);
    await sp.close();
});

test('every page, at 1280 px and on a 390 px phone: no overflow, no console error', T, async () => {
    const account = [
        ['overview', '[data-testid=chart-requests]'], ['keys', '[data-testid=keys-table]'],
        ['billing-keys', '[data-testid=keys-table]'], ['usage', '[data-testid=usage-table]'],
        ['transactions', '[data-testid=transactions-table]'], ['settings', '[data-testid=notif-form]'],
    ];
    const names = { overview: 'overview', keys: 'api-keys', 'billing-keys': 'billing-keys', usage: 'usage', transactions: 'transactions',
        settings: 'notifications' };
    const signin = await openPage();
    await signin.goto(`${gw.base}/dashboard/`);
    await signin.waitForSelector('[data-testid=signin-form]');
    await shot(signin, 'sign-in', false);
    await signin.close();
    for (const width of [1280, 390]) {
        const p = await openPage({ width, height: width === 390 ? 844 : 900 });
        await signIn(p, ownerKey);
        for (const [where, ready] of account) {
            await nav(p, where, ready);
            const over = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
            assert.ok(over <= 0, `${where} at ${width} px is ${over} px too wide`);
            assert.deepEqual(await p.$$eval('input, select', (els) => els.filter((e) => !e.labels?.length && !e.getAttribute('aria-label'))
                .map((e) => e.outerHTML)), [], `${where}: every field has a label`);
            if (width === 1280) await shot(p, names[where], !['usage', 'transactions'].includes(where));
            if (width === 390 && where === 'overview') await shot(p, 'overview-phone');
            if (where === 'usage' && width === 1280) {
                await p.click('[data-testid=tab-stats]');
                await p.waitForSelector('[data-testid=stats-by-model]');
                await shot(p, 'usage-statistics');
            }
        }
        await checkPage(p);
        await p.close();
    }
});
