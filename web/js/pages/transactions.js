// Transactions: every change of the balance (payments, usage, refunds), newest first, with the
// balance after each one as the API reports it (balanceAfter), paged.

import * as api from '../api.js';
import { h, fill, table, loading, empty, errorBox } from '../dom.js';
import { money, time } from '../fmt.js';

const PAGE = 50;
const TYPES = { payment: 'Payment', usage: 'Usage', refund: 'Refund' };

export async function render(view) {
    const list = h('section', { 'aria-live': 'polite' }, loading());
    fill(view, h('h1', null, 'Transactions'),
        h('p', { class: 'intro' }, 'Payments and refunds add to the balance; each request\'s charge takes from it.'), list);
    let offset = 0;
    const load = async () => {
        fill(list, loading());
        let rows;
        try {
            ({ transactions: rows } = await api.get(`/api/transactions${api.query({ limit: PAGE, offset })}`));
        } catch (e) {
            fill(list, errorBox(e, 'transactions-error'));
            return;
        }
        const prev = h('button', { type: 'button', class: 'secondary', testid: 'tx-prev', disabled: offset === 0 }, '← Newer');
        const next = h('button', { type: 'button', class: 'secondary', testid: 'tx-next', disabled: rows.length < PAGE }, 'Older →');
        prev.addEventListener('click', () => { offset = Math.max(0, offset - PAGE); load(); });
        next.addEventListener('click', () => { offset += PAGE; load(); });
        fill(list, rows.length === 0 ? empty(offset ? 'No older transactions.' : 'No transactions yet.', 'transactions-empty')
            : table([{ label: 'Time' }, { label: 'Type' }, { label: 'Description' }, { label: 'Amount', class: 'num' }, { label: 'Balance after', class: 'num' }],
                rows.map((t) => {
                    const amt = money(t.amount);
                    return [time(t.createdAt, { seconds: true }),
                        h('span', { class: `badge ${t.type}`, testid: 'tx-type' }, TYPES[t.type] || t.type),
                        { text: t.description ?? '—', testid: 'tx-description' },
                        { ...amt, text: Number(t.amount) > 0 ? `+${amt.text}` : amt.text, class: `num ${Number(t.amount) < 0 ? 'neg' : 'pos'}`, testid: 'tx-amount' },
                        t.balanceAfter === undefined ? { text: '—', title: 'This gateway does not report the running balance.' }
                            : { ...money(t.balanceAfter), testid: 'tx-balance-after' }];
                }), { testid: 'transactions-table', caption: 'Transactions, newest first', rowTestid: (i) => `tx-row-${rows[i].id}` }),
        h('div', { class: 'pager' }, prev, h('span', null, rows.length ? `Transactions ${offset + 1}–${offset + rows.length}` : ''), next));
    };
    await load();
}
