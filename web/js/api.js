// The dashboard's one way to the gateway: the signed-in secret, the account and operator APIs,
// and their errors.
//
// The secret (a billing key or the admin token) lives in this tab's sessionStorage and nowhere
// else: never a cookie (no request carries it unless this code adds it), never a URL (so no
// history, log or Referer has it), gone when the tab closes or the user signs out. A call that
// the gateway answers 401, or 403 key_deactivated, means the secret no longer works (a revoked,
// expired or deactivated key): the tab signs itself out at once.

const STORE = 'modelswitch.session';

// Money fields of the API's answers. They are kept as the exact decimal text the gateway wrote
// (see parseJson): a double cannot hold every nano-dollar amount, and a person who hovers an
// amount is shown the exact value.
const MONEY = new Set(['balance', 'amount', 'chargedAmount', 'spend', 'spent', 'spendLimit',
    'balanceAfter', 'lowBalanceThreshold']);

/** {role: 'account' | 'operator', secret} of this tab, or null. */
export function session() {
    try {
        const s = JSON.parse(sessionStorage.getItem(STORE) || 'null');
        return s && typeof s.secret === 'string' && (s.role === 'account' || s.role === 'operator')
            ? s : null;
    } catch {
        return null;
    }
}

export function saveSession(role, secret) {
    sessionStorage.setItem(STORE, JSON.stringify({ role, secret }));
}

let ended = () => {};
/** fn(message) runs when a call finds the secret refused: the session is already forgotten. */
export function onSessionEnd(fn) {
    ended = fn;
}

export function signOut() {
    sessionStorage.removeItem(STORE);
}

/** An answer of the gateway that is not 2xx: the contract's message, code and param. */
export class ApiError extends Error {
    constructor(status, err) {
        super(err?.message || `The gateway answered ${status}.`);
        this.status = status;
        this.code = err?.code || null;
        this.param = err?.param || null;
    }
}

/** JSON.parse, with money fields as their exact text where the browser shows it (ES2025). */
export function parseJson(text) {
    return JSON.parse(text, function (k, v, ctx) {
        if (typeof v === 'number' && MONEY.has(k)) return ctx && ctx.source ? ctx.source : String(v);
        return v;
    });
}

/** A money amount typed by a person ("12.5") as a JSON number with exactly those digits, where
 * the browser can write one (JSON.rawJSON), else as a Number. */
export function moneyJson(text) {
    const t = String(text).trim();
    if (typeof JSON.rawJSON === 'function' && /^\d{1,10}(\.\d{1,9})?$/.test(t)) return JSON.rawJSON(t);
    return Number(t);
}

function refused(status, code) {
    return status === 401 || (status === 403 && code === 'key_deactivated');
}

/**
 * One API call: method, path (with its query), an optional JSON body. Resolves the parsed answer
 * (null for 204); rejects with an ApiError. opts.secret: try this secret instead of the
 * session's (signing in), and a refusal then does not end the session.
 */
export async function call(method, path, body, opts = {}) {
    const secret = opts.secret ?? session()?.secret;
    if (!secret) throw new ApiError(401, { message: 'You are signed out.' });
    const headers = { Authorization: `Bearer ${secret}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
        res = await fetch(path, {
            method, headers, body: body === undefined ? undefined : JSON.stringify(body),
            cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer',
        });
    } catch {
        throw new ApiError(0, { message: 'The gateway cannot be reached. Is it running?' });
    }
    const text = await res.text();
    let json = null;
    try {
        json = text ? parseJson(text) : null;
    } catch {
        json = null;
    }
    if (res.ok) return json;
    const err = new ApiError(res.status, json?.error);
    if (opts.secret === undefined && refused(res.status, err.code)) {
        signOut();
        ended(err.message);
    }
    throw err;
}

export const get = (path, opts) => call('GET', path, undefined, opts);
export const post = (path, body, opts) => call('POST', path, body ?? {}, opts);
export const put = (path, body, opts) => call('PUT', path, body ?? {}, opts);
export const del = (path, opts) => call('DELETE', path, undefined, opts);

/** A query string from an object, leaving out empty values. */
export function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
        if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
    }
    const s = q.toString();
    return s ? `?${s}` : '';
}

/** Every row of a paged list (usage, transactions), 50 at a time, up to max rows.
 * onPage(count) reports progress. */
export async function allPages(path, params, field, { max = 100000, onPage } = {}) {
    const rows = [];
    for (let offset = 0; rows.length < max; offset += 50) {
        const page = (await get(path + query({ ...params, limit: 50, offset })))[field] || [];
        rows.push(...page);
        onPage?.(rows.length);
        if (page.length < 50) break;
    }
    return rows;
}
