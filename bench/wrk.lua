-- bench/wrk.lua: wrk script of ModelSwitch's benchmark (bench/run.sh, closed-loop throughput).
--
-- wrk sends GET without a body by default; every workload here is a POST of a JSON body read
-- from a file, with per-target headers (the gateway's key, Portkey's routing headers). The
-- request is formatted once (on first use), so the script costs wrk nothing per request. done() prints one
-- machine-readable line that run.sh parses (wrk's own summary is for humans).
--
-- Environment: BENCH_BODY (file with the body), BENCH_HEADERS ("Name: value" lines, "\n"
-- separated), BENCH_KEYS (optional: a file of keys the requests take in turn).

local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then wrk.headers[k] = v end
end

-- BENCH_KEYS (a file, one key a line): each request carries the next key in turn, so that the
-- gateway bills many accounts at once (bench/run.sh, the NAME-accts workloads).
local keys = {}
local kf = os.getenv("BENCH_KEYS")
if kf and kf ~= "" then
    for line in io.lines(kf) do
        if line ~= "" then keys[#keys + 1] = line end
    end
end

-- Formatted on first use: wrk adds the Host header only after the script is loaded, and nginx
-- rightly refuses an HTTP/1.1 request without one. With keys, one request a key, formatted
-- once too: the turn costs wrk a table index.
local reqs, n = nil, 0
function request()
    if not reqs then
        reqs = {}
        if #keys == 0 then
            reqs[1] = wrk.format()
        else
            for i, k in ipairs(keys) do
                local h = {}
                for name, value in pairs(wrk.headers) do h[name] = value end
                h["Authorization"] = "Bearer " .. k
                reqs[i] = wrk.format(nil, nil, h)
            end
        end
    end
    n = n % #reqs + 1
    return reqs[n]
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "WRK requests=%d duration_us=%d bytes=%d err_connect=%d err_read=%d err_write=%d " ..
        "err_status=%d err_timeout=%d lat_p50_us=%d lat_p99_us=%d\n",
        summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
        e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
