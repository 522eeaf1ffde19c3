// API keys (ms-, /api/keys) and billing keys (mk-, /api/billing-keys): list, create (the secret
// shown once), rename, limits and expiry, deactivate and activate, delete. Billing keys have no
// spend limit or rate limits (the API refuses them). The billing key this tab is signed in with
// is marked; the API refuses to let it delete or deactivate itself, and the page shows why.

import * as api from '../api.js';
import { h, fill, field, table, loading, empty, errorBox, dialog, showSecret, confirmDialog } from '../dom.js';
import { money, time, isoToLocalInput, localInputToIso } from '../fmt.js';

const KINDS = {
    proxy: { base: '/api/keys', title: 'API keys', one: 'API key', secretName: 'API key',
        intro: 'Proxy keys (ms-…) authenticate requests to /v1/: give one to each application.' },
    billing: { base: '/api/billing-keys', title: 'Billing keys', one: 'billing key', secretName: 'billing key',
        intro: 'Billing keys (mk-…) open this dashboard and the account API. Keep them to people who manage the account.' },
};

function status(k) {
    if (!k.active) return { text: 'Deactivated', class: 'badge off' };
    if (k.expiresAt && Date.parse(k.expiresAt) <= Date.now()) return { text: 'Expired', class: 'badge off' };
    return { text: 'Active', class: 'badge on' };
}

/** Limit and expiry fields, filled from key k (or empty for a new key). */
function limitFields(kind, k = {}) {
    const f = {
        expires: field('Expires (your time zone; empty: never)', { type: 'datetime-local', value: isoToLocalInput(k.expiresAt), testid: 'key-expires-input' }),
    };
    if (kind === 'proxy') {
        f.spend = field('Spend limit, USD (empty: none)', { type: 'text', inputmode: 'decimal', value: k.spendLimit ?? '', testid: 'key-spend-input', autocomplete: 'off' });
        f.rpm = field('Requests per minute (empty: default)', { type: 'number', min: 1, step: 1, value: k.rpm ?? '', testid: 'key-rpm-input' });
        f.tpm = field('Tokens per minute (empty: default)', { type: 'number', min: 1, step: 1, value: k.tpm ?? '', testid: 'key-tpm-input' });
    }
    return f;
}

/** The request fields of limitFields: all of them (create), or only the changed ones (edit,
 * so that an expired key can be renamed without resending its past expiry). */
function limitBody(f, k) {
    const body = {};
    const exp = localInputToIso(f.expires.input.value);
    if (!k || isoToLocalInput(k.expiresAt) !== f.expires.input.value) body.expires_at = exp;
    const num = (name, input, conv, orig) => {
        const v = input.value.trim();
        if (k && v === String(orig ?? '')) return;
        if (v === '') {
            if (k) body[name] = null;
            return;
        }
        body[name] = conv(v);
    };
    if (f.spend) num('spend_limit', f.spend.input, api.moneyJson, k?.spendLimit);
    if (f.rpm) num('rpm', f.rpm.input, Number, k?.rpm);
    if (f.tpm) num('tpm', f.tpm.input, Number, k?.tpm);
    if (!k && body.expires_at === null) delete body.expires_at;
    return body;
}

function editKey(kind, cfg, k, done) {
    const name = field('Name', { type: 'text', value: k.name, required: true, maxlength: 127, testid: 'key-name-input', autocomplete: 'off' });
    const f = limitFields(kind, k);
    return dialog(`Edit ${cfg.one} ${k.prefix}…`, [name, Object.values(f)], [
        { label: 'Cancel', class: 'secondary', testid: 'edit-cancel' },
        { label: 'Save', class: 'primary', submit: true, testid: 'edit-save', action: async () => {
            const body = limitBody(f, k);
            if (name.input.value !== k.name) body.name = name.input.value;
            if (Object.keys(body).length) await api.put(`${cfg.base}/${k.id}`, body);
            await done(`Saved ${k.prefix}….`);
        } },
    ], { testid: 'edit-dialog' });
}

function actions(kind, cfg, k, ctx, refresh, inUse) {
    const edit = h('button', { type: 'button', class: 'small secondary', testid: 'edit-key', 'aria-label': `Edit ${k.name}` }, 'Edit');
    const toggle = h('button', { type: 'button', class: 'small secondary', testid: 'toggle-key',
        'aria-label': `${k.active ? 'Deactivate' : 'Activate'} ${k.name}` }, k.active ? 'Deactivate' : 'Activate');
    const remove = h('button', { type: 'button', class: 'small danger', testid: 'delete-key', 'aria-label': `Delete ${k.name}` }, 'Delete');
    // each change waits for the list to be read again, so what is shown next is what is stored
    edit.addEventListener('click', () => editKey(kind, cfg, k, (msg) => {
        ctx.notify(msg);
        return refresh();
    }));
    toggle.addEventListener('click', async () => {
        toggle.disabled = true;
        try {
            await api.put(`${cfg.base}/${k.id}`, { active: !k.active });
            ctx.notify(`${k.prefix}… ${k.active ? 'deactivated' : 'activated'}.`);
            await refresh();
        } catch (e) {
            await refresh(e);
        }
    });
    remove.addEventListener('click', () => confirmDialog(`Delete ${cfg.one}?`,
        `Delete "${k.name}" (${k.prefix}…)? Requests with it will be refused at once. This cannot be undone.` +
        (inUse ? ' This is the key you are signed in with.' : ''), 'Delete', async () => {
            await api.del(`${cfg.base}/${k.id}`);
            ctx.notify(`${k.prefix}… deleted.`);
            await refresh();
        }));
    return h('div', { class: 'row-actions' }, edit, toggle, remove);
}

function keyTable(kind, cfg, list, ctx, refresh) {
    const mine = ctx.session.secret.slice(0, 8);
    const cols = [{ label: 'Name' }, { label: 'Prefix' }, { label: 'Status' }, { label: 'Created' }, { label: 'Expires' }];
    if (kind === 'proxy') cols.push({ label: 'Spent', class: 'num' }, { label: 'Spend limit', class: 'num' }, { label: 'RPM / TPM', class: 'num' });
    cols.push({ label: 'Actions' });
    const rows = list.map((k) => {
        const inUse = kind === 'billing' && k.prefix === mine;
        const st = status(k);
        const cells = [
            { text: k.name, testid: 'key-name', class: 'name' },
            h('code', { testid: 'key-prefix' }, k.prefix, '…'),
            h('span', { class: st.class, testid: 'key-status' }, st.text, inUse ? h('span', { class: 'badge you', testid: 'key-in-use' }, 'this session') : null),
            time(k.createdAt),
            k.expiresAt ? time(k.expiresAt) : 'never',
        ];
        if (kind === 'proxy') {
            cells.push({ ...money(k.spent), testid: 'key-spent' },
                k.spendLimit === null ? 'none' : { ...money(k.spendLimit), testid: 'key-limit' },
                `${k.rpm ?? 'default'} / ${k.tpm ?? 'default'}`);
        }
        cells.push(actions(kind, cfg, k, ctx, refresh, inUse));
        return cells;
    });
    return table(cols, rows, { testid: 'keys-table', caption: cfg.title, rowTestid: (i) => `key-row-${list[i].id}` });
}

function createForm(kind, cfg, ctx, refresh) {
    const name = field('Name', { type: 'text', required: true, maxlength: 127, testid: 'new-key-name', autocomplete: 'off',
        placeholder: kind === 'proxy' ? 'backend' : 'alice' });
    const f = limitFields(kind);
    const out = h('div');
    const btn = h('button', { type: 'submit', class: 'primary', testid: 'create-key' }, `Create ${cfg.one}`);
    const form = h('form', { class: 'card create', testid: 'create-key-form', novalidate: true },
        h('h2', null, `New ${cfg.one}`), h('div', { class: 'grid' }, name, Object.values(f)), out, h('div', { class: 'actions' }, btn));
    form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        fill(out);
        btn.disabled = true;
        try {
            const made = await api.post(cfg.base, { name: name.input.value, ...limitBody(f, null) });
            form.reset();
            await refresh();
            await showSecret(`Your new ${cfg.one}`, made.key, cfg.secretName);
            ctx.notify(`${made.prefix}… created.`);
        } catch (e) {
            fill(out, errorBox(e, 'create-key-error'));
        } finally {
            btn.disabled = false;
        }
    });
    return form;
}

export async function render(view, ctx, kind) {
    const cfg = KINDS[kind];
    const listBox = h('section', { testid: 'keys-list', 'aria-live': 'polite' }, loading());
    const msgBox = h('div');
    const refresh = async (err) => {
        fill(msgBox, err ? errorBox(err, 'keys-error') : null);
        try {
            const { keys } = await api.get(cfg.base);
            fill(listBox, keys.length ? keyTable(kind, cfg, keys, ctx, refresh)
                : empty(`No ${cfg.title.toLowerCase()} yet: create one above.`, 'keys-empty'));
        } catch (e) {
            fill(listBox, errorBox(e, 'keys-error'));
        }
    };
    fill(view, h('h1', null, cfg.title), h('p', { class: 'intro' }, cfg.intro), createForm(kind, cfg, ctx, refresh), msgBox, listBox);
    await refresh();
}
