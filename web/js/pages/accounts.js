// The operator's page (admin token): every account with its balance, keys and spend; create an
// account, top one up (a payment with a description), and issue an account's first billing key
// (shown once), through /admin/.

import * as api from '../api.js';
import { h, fill, field, table, loading, empty, errorBox, dialog, showSecret } from '../dom.js';
import { money, count, time } from '../fmt.js';

function topUp(a, done) {
    const amount = field('Amount, USD', { type: 'text', inputmode: 'decimal', required: true, autocomplete: 'off', testid: 'topup-amount' });
    const desc = field('Description (optional)', { type: 'text', maxlength: 200, autocomplete: 'off', testid: 'topup-description', placeholder: 'wire 2026-03' });
    return dialog(`Top up ${a.name}`, [h('p', null, 'Balance now: ', h('span', { title: money(a.balance).title }, money(a.balance).text)), amount, desc], [
        { label: 'Cancel', class: 'secondary', testid: 'topup-cancel' },
        { label: 'Top up', class: 'primary', submit: true, testid: 'topup-submit', action: async () => {
            const d = desc.input.value.trim();
            const r = await api.post(`/admin/accounts/${a.id}/topup`, { amount: api.moneyJson(amount.input.value), description: d || null });
            await done(`${a.name}: balance now ${money(r.balance).text}.`);
        } },
    ], { testid: 'topup-dialog' });
}

function issueKey(a, done) {
    const name = field('Key name', { type: 'text', required: true, maxlength: 127, value: 'owner', autocomplete: 'off', testid: 'issue-key-name' });
    let made = null;
    return dialog(`Billing key for ${a.name}`, [h('p', null, 'The account owner signs in to this dashboard with it.'), name], [
        { label: 'Cancel', class: 'secondary', testid: 'issue-cancel' },
        { label: 'Create billing key', class: 'primary', submit: true, testid: 'issue-submit', action: async () => {
            made = await api.post(`/admin/accounts/${a.id}/billing-keys`, { name: name.input.value });
        } },
    ], { testid: 'issue-dialog' }).then(async () => {
        if (!made) return;
        await showSecret(`Billing key for ${a.name}`, made.key, 'billing key');
        await done(`${made.prefix}… issued to ${a.name}.`);
    });
}

function createForm(ctx, refresh) {
    const name = field('Name', { type: 'text', required: true, maxlength: 127, autocomplete: 'off', testid: 'new-account-name', placeholder: 'acme' });
    const bal = field('Opening balance, USD', { type: 'text', inputmode: 'decimal', autocomplete: 'off', value: '0', testid: 'new-account-balance' });
    const out = h('div');
    const btn = h('button', { type: 'submit', class: 'primary', testid: 'create-account' }, 'Create account');
    const form = h('form', { class: 'card create', testid: 'create-account-form', novalidate: true }, h('h2', null, 'New account'),
        h('div', { class: 'grid' }, name, bal), out, h('div', { class: 'actions' }, btn));
    form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        fill(out);
        btn.disabled = true;
        try {
            const b = bal.input.value.trim();
            const a = await api.post('/admin/accounts', { name: name.input.value, ...(b ? { balance: api.moneyJson(b) } : {}) });
            form.reset();
            ctx.notify(`Account ${a.name} created (id ${a.id}).`);
            await refresh();
        } catch (e) {
            fill(out, errorBox(e, 'create-account-error'));
        } finally {
            btn.disabled = false;
        }
    });
    return form;
}

function accountTable(list, ctx, refresh) {
    const done = (msg) => {
        ctx.notify(msg);
        return refresh();
    };
    return table([{ label: 'Id', class: 'num' }, { label: 'Name' }, { label: 'Balance', class: 'num' }, { label: 'Keys', class: 'num' },
        { label: 'Spent', class: 'num' }, { label: 'Created' }, { label: 'Actions' }],
    list.map((a) => {
        const top = h('button', { type: 'button', class: 'small', testid: 'topup', 'aria-label': `Top up ${a.name}` }, 'Top up');
        const key = h('button', { type: 'button', class: 'small secondary', testid: 'issue-key', 'aria-label': `Billing key for ${a.name}` }, 'Billing key');
        top.addEventListener('click', () => topUp(a, done));
        key.addEventListener('click', () => issueKey(a, done));
        return [String(a.id), { text: a.name, testid: 'account-name', class: 'name' }, { ...money(a.balance), testid: 'account-balance' },
            a.keys === undefined ? '—' : { text: count(a.keys), testid: 'account-keys', class: 'num' },
            a.spent === undefined ? '—' : { ...money(a.spent), testid: 'account-spent' },
            time(a.createdAt), h('div', { class: 'row-actions' }, top, key)];
    }), { testid: 'accounts-table', caption: 'Accounts', rowTestid: (i) => `account-row-${list[i].id}` });
}

export async function render(view, ctx) {
    const list = h('section', { 'aria-live': 'polite' }, loading());
    const refresh = async () => {
        try {
            const { accounts } = await api.get('/admin/accounts');
            fill(list, accounts.length ? accountTable(accounts, ctx, refresh) : empty('No accounts yet: create one above.', 'accounts-empty'));
        } catch (e) {
            fill(list, errorBox(e, 'accounts-error'));
        }
    };
    fill(view, h('h1', null, 'Accounts'), createForm(ctx, refresh), list);
    await refresh();
}
