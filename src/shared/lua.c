/*
 * The Lua scripts that make the shared state's operations atomic in Redis (docs/BILLING.md,
 * "Several instances"; the data layout is at the top of shared.c). Each runs whole inside Redis,
 * so an admission's rate limits and its hold, or a settlement's reservation and the balance row
 * that goes with it, can never be seen half done by another instance.
 *
 * Money. Lua numbers are doubles, exact only to 2^53, and a balance may reach 1e18 nano-dollars.
 * So money travels as decimal strings and is computed as {whole dollars, nano-dollars} pairs,
 * each part far below 2^53 (docs/BILLING.md gives the limits). Rate-limit state is floating
 * point milliseconds: a limit's rounding is far below one request or token in a minute, and the
 * contract asks for R +-1 across instances. Time is Redis's own clock (TIME), one clock for
 * every instance, whatever their hosts' clocks say.
 */
#include "shared/shared_internal.h"

#define SH_LUA_MONEY                                                                               \
    "local function M(s) s = tostring(s or '0') if s:sub(1, 1) == '-' then return {0, 0} end "     \
    "local n = #s if n <= 9 then return {0, tonumber(s)} end "                                     \
    "return {tonumber(s:sub(1, n - 9)), tonumber(s:sub(n - 8))} end\n"                             \
    "local function add(a, b) local hi, lo = a[1] + b[1], a[2] + b[2] "                            \
    "if lo >= 1e9 then lo = lo - 1e9 hi = hi + 1 end return {hi, lo} end\n"                        \
    "local function ge(a, b) return a[1] > b[1] or (a[1] == b[1] and a[2] >= b[2]) end\n"          \
    "local function S(a) if a[1] > 0 then return string.format('%d%09d', a[1], a[2]) end "         \
    "return string.format('%d', a[2]) end\n"

#define SH_LUA_NOW                                                                                 \
    "local t = redis.call('TIME') "                                                                \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

/* The live instances' reservations of hash h, summed. An instance whose live key expired is not
 * counted (it stopped telling Redis it is there); its fields are deleted once it has not been
 * seen for a minute (it may come back and re-register sooner). */
#define SH_LUA_RESV                                                                                \
    "local livec = {}\n"                                                                           \
    "local function live(id) local x = livec[id] if x == nil then "                                \
    "x = redis.call('EXISTS', 'ms:live:' .. id) == 1 livec[id] = x end return x end\n"             \
    "local function resv(h) local all = redis.call('HGETALL', h) local sum = {0, 0} local f = {} " \
    "for j = 1, #all, 2 do local k = all[j] f[k] = all[j + 1] "                                    \
    "if k:sub(1, 2) == 'r:' then local id = k:sub(3) "                                             \
    "if live(id) then sum = add(sum, M(all[j + 1])) "                                              \
    "elseif redis.call('EXISTS', 'ms:seen:' .. id) == 0 then "                                     \
    "redis.call('HDEL', h, k, 'v:' .. id) end end end return sum, f end\n"                         \
    "local function apply(h, inst, v, r) "                                                         \
    "local cur = tonumber(redis.call('HGET', h, 'v:' .. inst) or '-1') "                           \
    "if tonumber(v) > cur then redis.call('HSET', h, 'v:' .. inst, v, 'r:' .. inst, r) "           \
    "return true end return false end\n"

/* GCRA over up to three (scope, id) counters, two dimensions each (requests, tokens). State per
 * counter hash: t1/t2 the theoretical arrival times (ms), l1/l2 the limits they were counted
 * with (a changed limit keeps what was used: the debt is re-expressed at the new pace). */
#define SH_LUA_GCRA                                                                                \
    "local function tat_of(st, d, L) local tat = tonumber(st[2 * d - 1]) or now "                  \
    "local lold = tonumber(st[2 * d]) or L if tat < now then tat = now end "                       \
    "if lold ~= L and lold > 0 then tat = now + (tat - now) * lold / L end "                       \
    "if tat > now + 3600000 then tat = now + 3600000 end return tat end\n"                         \
    "local function hdr(tat, L) if L <= 0 then return 0, 0 end "                                   \
    "local d = tat - now local rem = math.floor((60000 - d) * L / 60000 + 1e-9) "                  \
    "if rem < 0 then rem = 0 end if rem > L then rem = L end "                                     \
    "return rem, math.ceil(d - 1e-9) end\n"

const char sh_lua_admit[] =
    "local inst = ARGV[1] local grace = tonumber(ARGV[2]) local ns = tonumber(ARGV[3])\n" SH_LUA_NOW
        SH_LUA_MONEY SH_LUA_RESV SH_LUA_GCRA
    /* a Redis that lost its data (or a new one) waits for every instance to re-register */
    "local ready = redis.call('HGET', 'ms:epoch', 'ready')\n"
    "if not ready then redis.call('HSET', 'ms:epoch', 'id', string.format('%d', now) .. '.' .. "
    "inst, 'ready', string.format('%d', now + grace)) return {4, grace} end\n"
    "ready = tonumber(ready) if now < ready then return {4, ready - now} end\n"
    "if redis.call('EXISTS', 'ms:live:' .. inst) == 0 then return {5, 0} end\n"
    "local i = 4 local slot = {}\n"
    "for s = 1, ns do slot[s] = {ARGV[i], {tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])}} "
    "i = i + 3 end\n"
    "local cost = {1, tonumber(ARGV[i])} i = i + 1\n"
    "local st, nt = {}, {}\n"
    "local h = {0, 0, 0, 0, 0, 0}\n"
    "for s = 1, ns do st[s] = redis.call('HMGET', 'ms:rl:' .. slot[s][1], 't1', 'l1', 't2', "
    "'l2') nt[s] = {} end\n"
    /* the key's headers: its state before, replaced by the state after when admitted */
    "local function headers(tats) for d = 1, 2 do local L = slot[1][2][d] if L > 0 then "
    "local rem, rst = hdr(tats[d], L) h[3 * d - 2] = L h[3 * d - 1] = rem h[3 * d] = rst end end "
    "end\n"
    "local before = {} for d = 1, 2 do local L = slot[1][2][d] "
    "if L > 0 then before[d] = tat_of(st[1], d, L) else before[d] = now end end\n"
    "for s = 1, ns do for d = 1, 2 do local L = slot[s][2][d] if L > 0 then "
    "local tat = tat_of(st[s], d, L) local c = cost[d] if c > L then c = L end "
    "local n2 = tat + c * 60000 / L "
    "if n2 - now > 60000 + 1e-6 then headers(before) "
    "local w = math.ceil(n2 - now - 60000 - 1e-9) if w < 1 then w = 1 end "
    "return {1, d, s, w, h[1], h[2], h[3], h[4], h[5], h[6]} end "
    "nt[s][d] = n2 end end end\n"
    /* the money: this instance's snapshot first, then the sums over every live instance */
    "local amount = ARGV[i] local acct = 'ms:a:' .. ARGV[i + 1] local key = 'ms:k:' .. ARGV[i + "
    "7]\n"
    "if amount ~= '0' then\n"
    "  apply(acct, inst, ARGV[i + 4], ARGV[i + 5]) apply(key, inst, ARGV[i + 10], ARGV[i + 11])\n"
    "  local function undo() "
    "if redis.call('HGET', acct, 'v:' .. inst) == ARGV[i + 4] then "
    "redis.call('HSET', acct, 'r:' .. inst, ARGV[i + 6]) end "
    "if redis.call('HGET', key, 'v:' .. inst) == ARGV[i + 10] then "
    "redis.call('HSET', key, 'r:' .. inst, ARGV[i + 12]) end end\n"
    "  local ar, af = resv(acct)\n"
    "  local bal = af['bal'] local seq = tonumber(af['seq'] or '-1')\n"
    "  if not bal or tonumber(ARGV[i + 3]) > seq then bal = ARGV[i + 2] "
    "redis.call('HSET', acct, 'bal', bal, 'seq', ARGV[i + 3]) end\n"
    "  if not ge(M(bal), ar) then undo() headers(before) "
    "return {2, 0, 0, 0, h[1], h[2], h[3], h[4], h[5], h[6]} end\n"
    "  local kr, kf = resv(key)\n"
    "  local spent = kf['spent'] if not spent then spent = ARGV[i + 9] "
    "redis.call('HSET', key, 'spent', spent) end\n"
    "  if ARGV[i + 8] ~= '-1' and not ge(M(ARGV[i + 8]), add(M(spent), kr)) then undo() "
    "headers(before) return {3, 0, 0, 0, h[1], h[2], h[3], h[4], h[5], h[6]} end\n"
    "end\n"
    /* admitted: every counter consumes */
    "for s = 1, ns do local hk = 'ms:rl:' .. slot[s][1] local top = now for d = 1, 2 do "
    "local L = slot[s][2][d] if L > 0 then redis.call('HSET', hk, 't' .. d, nt[s][d], 'l' .. d, L) "
    "if nt[s][d] > top then top = nt[s][d] end end end "
    "redis.call('PEXPIRE', hk, math.ceil(top - now) + 60000) end\n"
    "local after = {} for d = 1, 2 do after[d] = nt[1][d] or now end headers(after)\n"
    "return {0, 0, 0, 0, h[1], h[2], h[3], h[4], h[5], h[6]}\n";

/* The push of a reservation snapshot (sh_lua_push's body), from ARGV[first]: inst, then groups
 * of six. */
#define SH_LUA_PUSH_FROM                                                                           \
    "local function push(first) local inst = ARGV[first]\n"                                        \
    "for i = first + 1, #ARGV, 6 do local h = 'ms:' .. ARGV[i] .. ':' .. ARGV[i + 1]\n"            \
    "  if ARGV[i + 4] ~= '' then\n"                                                                \
    "    if ARGV[i] == 'a' then local cur = tonumber(redis.call('HGET', h, 'seq') or '-1') "       \
    "if tonumber(ARGV[i + 5]) > cur then redis.call('HSET', h, 'bal', ARGV[i + 4], 'seq', "        \
    "ARGV[i + 5]) end\n"                                                                           \
    "    else local cur = redis.call('HGET', h, 'spent') "                                         \
    "if not cur or ge(M(ARGV[i + 4]), M(cur)) then redis.call('HSET', h, 'spent', ARGV[i + 4]) "   \
    "end end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  if ARGV[i + 2] ~= '' then local cv = tonumber(redis.call('HGET', h, 'v:' .. inst) or "      \
    "'-1') if tonumber(ARGV[i + 2]) > cv then redis.call('HSET', h, 'v:' .. inst, ARGV[i + 2], "   \
    "'r:' .. inst, ARGV[i + 3]) end end\n"                                                         \
    "end end\n"

/* Token counters corrected from the estimate an admission counted to the real usage: ARGV =
 * nslots, then per slot its name and token limit, then the estimate and the real count. Each
 * counter is corrected from what it was charged (an estimate above its limit counted as the
 * whole limit), its debt kept between 0 and an hour. A reservation snapshot may follow (inst and
 * groups, as sh_lua_push's): a request's end is then one call, not two. */
const char sh_lua_correct[] =
    "local ns = tonumber(ARGV[1])\n" SH_LUA_NOW SH_LUA_GCRA SH_LUA_MONEY SH_LUA_PUSH_FROM
    "local est = tonumber(ARGV[2 + 2 * ns]) local real = tonumber(ARGV[3 + 2 * ns])\n"
    "for s = 1, ns do local name = 'ms:rl:' .. ARGV[2 * s] local L = tonumber(ARGV[2 * s + 1]) "
    "if L > 0 then local st = redis.call('HMGET', name, 't1', 'l1', 't2', 'l2') "
    "if st[3] then local tat = tat_of(st, 2, L) local c = est if c > L then c = L end "
    "tat = tat + (real - c) * 60000 / L if tat < now then tat = now end "
    "if tat > now + 3600000 then tat = now + 3600000 end "
    "redis.call('HSET', name, 't2', tat, 'l2', L) "
    "local ttl = redis.call('PTTL', name) local want = math.ceil(tat - now) + 60000 "
    "if ttl < want then redis.call('PEXPIRE', name, want) end end end end\n"
    "if #ARGV > 3 + 2 * ns then push(4 + 2 * ns) end\n"
    "return 0\n";

/* What an instance tells Redis of its reservations: ARGV = inst, then groups of six: kind ('a'
 * or 'k'), id, version, reservation, and a row read from the store after the charges it
 * includes ("" when none): for an account its balance and seq (the newer seq wins), for a key
 * its spent and "" (spent only grows: the larger wins). The row and the reservation that no
 * longer counts its charges go together, in this one script. */
const char sh_lua_push[] = SH_LUA_MONEY SH_LUA_PUSH_FROM "push(1)\n"
                                                         "return 0\n";

/* The heartbeat: ARGV = inst, live ttl ms, grace ms, mode. Returns {epoch id, live, the ms left
 * of the epoch's grace}: the epoch's
 * id (a new epoch, with its grace window, when Redis has none: a Redis that lost its data, or a
 * first start) and whether this instance is counted. "beat" renews the live key only if it still
 * exists: an instance whose key expired (a stall, a partition) must first tell Redis everything
 * it reserves again, then come back with "live", which sets it. Both renew ms:seen:<inst>, a
 * minute long: an instance not seen for that long is gone, and its fields are deleted (which
 * keeps the hashes an admission walks small; a re-registration takes milliseconds). */
const char sh_lua_beat[] =
    "local inst = ARGV[1]\n" SH_LUA_NOW "local id = redis.call('HGET', 'ms:epoch', 'id')\n"
    "if not id then id = string.format('%d', now) .. '.' .. inst "
    "redis.call('HSET', 'ms:epoch', 'id', id, 'ready', string.format('%d', now + "
    "tonumber(ARGV[3]))) end\n"
    "redis.call('SET', 'ms:seen:' .. inst, '1', 'PX', 60000)\n"
    "local wait = tonumber(redis.call('HGET', 'ms:epoch', 'ready') or '0') - now "
    "if wait < 0 then wait = 0 end\n"
    "local live = 'ms:live:' .. inst\n"
    "if ARGV[4] == 'live' then redis.call('SET', live, '1', 'PX', ARGV[2]) return {id, 1, wait} "
    "end\n"
    "if redis.call('PEXPIRE', live, ARGV[2]) == 1 then return {id, 1, wait} end\n"
    "return {id, 0, wait}\n";
