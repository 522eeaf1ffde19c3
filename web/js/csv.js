// CSV files made in the browser from rows the API gave, and their download (nothing goes back to
// the gateway: the rows are already here).

/** One CSV field (RFC 4180): quoted when it needs it. Text that a spreadsheet would run as a
 * formula (=, +, -, @ first) is prefixed with ', since key names and model names are data. */
function cell(v, isText) {
    let s = v === null || v === undefined ? '' : String(v);
    if (isText && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** columns: [{name, get(row), text}] → the CSV text, header first, CRLF line ends. */
export function toCsv(columns, rows) {
    const lines = [columns.map((c) => cell(c.name, true)).join(',')];
    for (const r of rows) lines.push(columns.map((c) => cell(c.get(r), c.text)).join(','));
    return `${lines.join('\r\n')}\r\n`;
}

/** Offers text as a file download. */
export function download(name, text, type = 'text/csv;charset=utf-8') {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
}
