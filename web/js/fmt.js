// How values read: money to the cent with the exact amount on hover, times in the browser's
// time zone with the UTC time on hover, counts with the browser's grouping.

const usd = new Intl.NumberFormat(undefined, { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 2 });
const int = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const compact = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const dateTimeSec = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'medium' });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });

/** A money value (the API's exact text, or a number) as {text, title}: to the cent, and the
 * exact amount in the title. Amounts under half a cent read "<$0.01" rather than "$0.00",
 * so that a request that cost something does not look free. */
export function money(v) {
    if (v === null || v === undefined || v === '') return { text: '—', title: null };
    const n = Number(v);
    const exact = `${String(v)} USD`;
    if (n !== 0 && Math.abs(n) < 0.005) return { text: n < 0 ? '−<$0.01' : '<$0.01', title: exact, class: 'num' };
    return { text: usd.format(n).replace('-', '−'), title: exact, class: 'num' };
}

/** An integer count. */
export const count = (n) => (n === null || n === undefined ? '—' : int.format(Number(n)));

/** A large count shortly (1.2K), for chart labels. */
export const short = (n) => compact.format(Number(n));

/** A chart axis' dollar value: short, yet not "$0" for amounts under a dollar. */
export const axisUsd = (v) => (v === 0 ? '$0' : v >= 1000 ? `$${compact.format(v)}` : v >= 1 ? `$${v.toFixed(2)}`
    : `$${Number(v.toPrecision(2))}`);

/** An API time (ISO 8601, UTC) as {text, title}: local date and time, the UTC time on hover. */
export function time(iso, { seconds = false } = {}) {
    if (!iso) return { text: '—', title: null };
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return { text: String(iso), title: null };
    return { text: (seconds ? dateTimeSec : dateTime).format(d), title: `${iso} (UTC)` };
}

/** A UTC day of the API ("2026-03-01") as a short label. */
export function day(ymd) {
    const d = new Date(`${ymd}T00:00:00Z`);
    return new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' }).format(d);
}

/** A local date, for "today" and the like. */
export const date = (d) => dateOnly.format(d);

/** The start of the local day of d (a Date), as an ISO time for the API's from=. */
export function localDayStart(d = new Date()) {
    return new Date(d.getFullYear(), d.getMonth(), d.getDate()).toISOString();
}

/** A date input's value ("2026-03-01", the browser's day) as the ISO time of that local day's
 * start, or of its last millisecond with end set: the API's from= and to= are UTC times. */
export function localDateToIso(value, end = false) {
    if (!value) return '';
    const [y, m, dd] = value.split('-').map(Number);
    const d = end ? new Date(y, m - 1, dd, 23, 59, 59, 999) : new Date(y, m - 1, dd);
    return d.toISOString();
}

/** An ISO time as a datetime-local input's value (the browser's time zone). */
export function isoToLocalInput(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** A datetime-local input's value as an ISO time (UTC), or null when empty. */
export function localInputToIso(value) {
    if (!value) return null;
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/** Prompt tokens read without a cache (the contract's input bucket) of a usage row or total. */
export function inputTokens(r) {
    return Math.max(0, (r.promptTokens || 0) - (r.cachedTokens || 0) - (r.cacheWriteTokens || 0));
}
