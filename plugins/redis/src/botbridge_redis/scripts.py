"""The Lua scripts: every check-and-write of the store runs as one of them.

A script runs atomically on the Redis server, so no other client's command
lands between its check and its write. Every script takes the key prefix as
ARGV[1]; times (`now`, `not_before`, lease ends) come from the caller's
clock, never from Redis TIME, so the store follows an injected clock.

Work queue layout (see the README for the whole picture):
  job:{id}          hash  data (the Job JSON), kind, nb (not_before), key
  q:{key}           list  ids of the key's unfinished jobs, in enqueue order
  tok               hash  key -> "lane|entry-id" (in the lane's stream), "lane|" (delayed), or
                          "lane|taken|key" (leased to the worker that finished the job before it)
  stream:{lane}     stream of entries {k: key}; consumer group "workers"
  delayed:{lane}    zset  key scored by its head job's not_before
  leases:{lane}     zset  entry id (or "taken|key") scored by the clock time its lease ends
  depth             hash  kind -> unfinished jobs

A key has at most one token (its `tok` entry) while its list is non-empty:
the token stands for "the head job of this key", so one key runs one job at
a time, in order, whichever host reads the entry.
"""

from __future__ import annotations

GROUP = "workers"

# Shared helpers, prepended to the queue scripts.
_QUEUE_LIB = """
local P = ARGV[1]
local GROUP = 'workers'

local function lane_of(kind)
  if kind == 'event' then return 'event' end
  return 'message'
end

local function stream(lane) return P .. 'stream:' .. lane end

-- Put the token of `key` where its head job belongs: the lane's stream when
-- due, the lane's delayed set otherwise. The caller made sure it has none.
local function dispatch(key, now)
  local head = redis.call('LINDEX', P .. 'q:' .. key, 0)
  if not head then
    redis.call('HDEL', P .. 'tok', key)
    return
  end
  local meta = redis.call('HMGET', P .. 'job:' .. head, 'kind', 'nb')
  local lane = lane_of(meta[1])
  local nb = tonumber(meta[2]) or 0
  if nb > now then
    redis.call('ZADD', P .. 'delayed:' .. lane, nb, key)
    redis.call('HSET', P .. 'tok', key, lane .. '|')
  else
    local id = redis.call('XADD', stream(lane), '*', 'k', key)
    redis.call('HSET', P .. 'tok', key, lane .. '|' .. id)
  end
end

-- Remove the token of `key`: ack and delete its stream entry (and lease), or
-- take it out of the delayed set.
local function release(key)
  local tok = redis.call('HGET', P .. 'tok', key)
  if not tok then return end
  local sep = string.find(tok, '|', 1, true)
  local lane = string.sub(tok, 1, sep - 1)
  local id = string.sub(tok, sep + 1)
  if string.sub(id, 1, 6) == 'taken|' then
    redis.call('ZREM', P .. 'leases:' .. lane, id)
  elseif id ~= '' then
    redis.call('XACK', stream(lane), GROUP, id)
    redis.call('XDEL', stream(lane), id)
    redis.call('ZREM', P .. 'leases:' .. lane, id)
  else
    redis.call('ZREM', P .. 'delayed:' .. lane, key)
  end
  redis.call('HDEL', P .. 'tok', key)
end

local function push(id, key, kind, nb, data, now)
  redis.call('HSET', P .. 'job:' .. id, 'data', data, 'kind', kind, 'nb', nb, 'key', key)
  redis.call('HINCRBY', P .. 'depth', kind, 1)
  if redis.call('RPUSH', P .. 'q:' .. key, id) == 1 then
    dispatch(key, now)
  end
end

-- Jobs are passed as 5 arguments each (id, key, kind, not_before, data) from `first`.
local function push_all(first, now)
  local i = first
  while i + 4 <= #ARGV do
    push(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], now)
    i = i + 5
  end
end

-- Insert-if-absent judged by the caller's clock: the value is the claim's end;
-- Redis' own expiry (PX) only collects it afterwards.
local function try_claim(name, until_, ttl_ms, now)
  local ck = P .. 'claim:' .. name
  local held = redis.call('GET', ck)
  if held and tonumber(held) > now then return false end
  redis.call('SET', ck, until_, 'PX', ttl_ms)
  return true
end
"""

# ARGV: prefix, now, name, until, ttl_ms
CLAIM = (
    _QUEUE_LIB
    + """
if try_claim(ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[2])) then return 1 end
return 0
"""
)

# ARGV: prefix, now, dedupe_key ('' for none), until, ttl_ms, then jobs (5 each)
ENQUEUE = (
    _QUEUE_LIB
    + """
local now = tonumber(ARGV[2])
if ARGV[3] ~= '' and not try_claim(ARGV[3], ARGV[4], ARGV[5], now) then return 0 end
push_all(6, now)
return 1
"""
)

# ARGV: prefix, now, lane, consumer, lease_until, limit, orphan_idle_ms, kinds...
# Returns a flat list: receipt, job data, receipt, job data, ...
CLAIM_JOBS = (
    _QUEUE_LIB
    + """
local now = tonumber(ARGV[2])
local lane = ARGV[3]
local me = ARGV[4]
local lease_until = ARGV[5]
local limit = tonumber(ARGV[6])
local orphan_idle = tonumber(ARGV[7])
local kinds = {}
for i = 8, #ARGV do kinds[ARGV[i]] = true end
local s = stream(lane)
local leases = P .. 'leases:' .. lane
local delayed = P .. 'delayed:' .. lane
local out = {}

if redis.call('EXISTS', s) == 0 then
  redis.call('XGROUP', 'CREATE', s, GROUP, '0', 'MKSTREAM')
end

-- Delayed keys whose time has come go back into the stream.
for _, key in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 256)) do
  redis.call('ZREM', delayed, key)
  redis.call('HDEL', P .. 'tok', key)
  dispatch(key, now)
end

local function drop_entry(id)
  redis.call('XACK', s, GROUP, id)
  redis.call('XDEL', s, id)
  redis.call('ZREM', leases, id)
end

-- The entry `id` (naming `key`) is now this consumer's: lease its key's head job.
local function take(id, key)
  local q = P .. 'q:' .. key
  local head = redis.call('LINDEX', q, 0)
  if (not head) or redis.call('HGET', P .. 'tok', key) ~= lane .. '|' .. id then
    drop_entry(id)  -- stale: this key's token is elsewhere
    return
  end
  local meta = redis.call('HMGET', P .. 'job:' .. head, 'kind', 'nb', 'data')
  if not meta[3] then
    -- the head's record is gone: skip the id and go on with the next one
    redis.call('LPOP', q)
    release(key)
    dispatch(key, now)
    return
  end
  if (not kinds[meta[1]]) or tonumber(meta[2]) > now then
    -- not what this caller runs (or not due): the key goes back in line
    release(key)
    dispatch(key, now)
    return
  end
  redis.call('ZADD', leases, lease_until, id)
  out[#out + 1] = lane .. '|' .. id
  out[#out + 1] = meta[3]
end

-- Leases that ended (by the caller's clock): their holder crashed or stalled.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, limit)) do
  if #out / 2 >= limit then break end
  if string.sub(id, 1, 6) == 'taken|' then
    -- a job leased as it was added (COMPLETE's take): its key goes back in line
    local key = string.sub(id, 7)
    redis.call('ZREM', leases, id)
    if redis.call('HGET', P .. 'tok', key) == lane .. '|' .. id then
      redis.call('HDEL', P .. 'tok', key)
      dispatch(key, now)
    end
  else
    local got = redis.call('XCLAIM', s, GROUP, me, 0, id)
    if got[1] and got[1][2] then
      take(id, got[1][2][2])
    else
      redis.call('ZREM', leases, id)
    end
  end
end

-- Safety net: entries pending for long with no lease record (lost writes).
if #out / 2 < limit and orphan_idle > 0 then
  local got = redis.call('XAUTOCLAIM', s, GROUP, me, orphan_idle, '0-0', 'COUNT', limit - #out / 2)
  for _, entry in ipairs(got[2]) do
    if type(entry) == 'table' and type(entry[2]) == 'table' then
      take(entry[1], entry[2][2])
    end
  end
end

-- New entries.
if #out / 2 < limit then
  local got = redis.call('XREADGROUP', 'GROUP', GROUP, me, 'COUNT', limit - #out / 2, 'STREAMS', s, '>')
  if got then
    for _, entry in ipairs(got[1][2]) do
      take(entry[1], entry[2][2])
    end
  end
end
return out
"""
)

# ARGV: prefix, now, job id, key, take kinds (comma-separated, '' for none),
# take lease end, then follow-up jobs (5 each). 0: not queued (already done);
# 1: done; {1, receipt, id}: done, and that follow-up is leased to the caller
# (the first of the take kinds, when due and nothing of its key is ahead).
COMPLETE = (
    _QUEUE_LIB
    + """
local now = tonumber(ARGV[2])
local id, key = ARGV[3], ARGV[4]
local q = P .. 'q:' .. key
if redis.call('LINDEX', q, 0) ~= id then return 0 end
release(key)
redis.call('LPOP', q)
local kind = redis.call('HGET', P .. 'job:' .. id, 'kind')
redis.call('DEL', P .. 'job:' .. id)
if kind then redis.call('HINCRBY', P .. 'depth', kind, -1) end
if redis.call('LLEN', q) > 0 then dispatch(key, now) end
push_all(7, now)
if ARGV[5] == '' then return 1 end
local kinds = {}
for k in string.gmatch(ARGV[5], '[^,]+') do kinds[k] = true end
local i = 7
while i + 4 <= #ARGV do
  if kinds[ARGV[i + 2]] then
    local fid, fkey, lane = ARGV[i], ARGV[i + 1], lane_of(ARGV[i + 2])
    if tonumber(ARGV[i + 3]) > now or redis.call('LINDEX', P .. 'q:' .. fkey, 0) ~= fid then return 1 end
    release(fkey)  -- the stream entry dispatch just added: nobody else is to read it
    local member = 'taken|' .. fkey
    redis.call('HSET', P .. 'tok', fkey, lane .. '|' .. member)
    redis.call('ZADD', P .. 'leases:' .. lane, ARGV[6], member)
    return {1, lane .. '|' .. member, fid}
  end
  i = i + 5
end
return 1
"""
)

# ARGV: prefix, now, job id, key, not_before, data. 0: not queued.
RETRY = (
    _QUEUE_LIB
    + """
local now = tonumber(ARGV[2])
local id, key = ARGV[3], ARGV[4]
if redis.call('LINDEX', P .. 'q:' .. key, 0) ~= id then return 0 end
release(key)
redis.call('HSET', P .. 'job:' .. id, 'nb', ARGV[5], 'data', ARGV[6])
dispatch(key, now)
return 1
"""
)

# ARGV: prefix. Every lease ends now; returns how many there were.
RELEASE_LEASES = """
local n = 0
for _, lane in ipairs({'message', 'event'}) do
  local leases = ARGV[1] .. 'leases:' .. lane
  for _, id in ipairs(redis.call('ZRANGE', leases, 0, -1)) do
    redis.call('ZADD', leases, 0, id)
    n = n + 1
  end
end
return n
"""

# ARGV: prefix, key, now, interval. Returns the wait in seconds (as a string:
# Lua numbers reach the client truncated to integers).
SEND_SLOT = """
local k = ARGV[1] .. 'slot:' .. ARGV[2]
local now = tonumber(ARGV[3])
local interval = tonumber(ARGV[4])
local slot = tonumber(redis.call('GET', k) or '0')
if slot < now then slot = now end
local next_slot = slot + interval
redis.call('SET', k, string.format('%.6f', next_slot), 'PX', math.ceil((next_slot - now) * 1000) + 60000)
return string.format('%.6f', slot - now)
"""

# ARGV: prefix, key, now, count, hold, ticket. One sorted set per key: each
# send scored by the time it stops counting (`Store.admit_send`). Admits the
# send as in flight until now + hold when fewer than `count` still count
# (returns 'admitted'); otherwise returns the score of the one whose leaving
# makes room. Times are written with string.format: redis.call would turn a
# Lua number into 14 digits.
ADMIT_SEND = """
local k = ARGV[1] .. 'sent:' .. ARGV[2]
local now = tonumber(ARGV[3])
local count = tonumber(ARGV[4])
local hold = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', k, '-inf', string.format('%.6f', now))
local n = redis.call('ZCARD', k)
if n < count then
  redis.call('ZADD', k, string.format('%.6f', now + hold), ARGV[6])
  if redis.call('PTTL', k) < hold * 1000 + 60000 then
    redis.call('PEXPIRE', k, math.ceil(hold * 1000) + 60000)
  end
  return 'admitted'
end
local blocking = redis.call('ZRANGE', k, n - count, n - count, 'WITHSCORES')
return blocking[2]
"""

# ARGV: prefix, key, now, interval, count, hold, ticket. SEND_SLOT, then
# ADMIT_SEND only when the slot is due now (`Store.reserve_and_admit`):
# returns {slot wait, false} or {0, ADMIT_SEND's answer}.
SLOT_AND_ADMIT = (
    "local function slot_wait(ARGV)\n"
    + SEND_SLOT.strip()
    + "\nend\nlocal function admit(ARGV)\n"
    + ADMIT_SEND.strip()
    + """
end
local wait = slot_wait({ARGV[1], ARGV[2], ARGV[3], ARGV[4]})
if tonumber(wait) > 0 then return {wait, false} end
return {wait, admit({ARGV[1], ARGV[2], ARGV[3], ARGV[5], ARGV[6], ARGV[7]})}
"""
)

# ARGV: prefix, key, ticket, until, seconds to keep the key. The send has its
# answer: it counts until `until` instead of its hold.
FINISH_SEND = """
local k = ARGV[1] .. 'sent:' .. ARGV[2]
redis.call('ZADD', k, string.format('%.6f', tonumber(ARGV[4])), ARGV[3])
local keep = tonumber(ARGV[5]) * 1000
if redis.call('PTTL', k) < keep then redis.call('PEXPIRE', k, math.ceil(keep)) end
"""

# ARGV: prefix, id, account, sender_id, data. 0: the sender is taken.
CREATE_CONNECTOR = """
local P = ARGV[1]
local binding = P .. 'binding:' .. ARGV[4]
if redis.call('EXISTS', binding) == 1 then return 0 end
redis.call('SET', binding, ARGV[2])
redis.call('SET', P .. 'connector:' .. ARGV[2], ARGV[5])
redis.call('ZADD', P .. 'connectors:' .. ARGV[3], 0, ARGV[2])
return 1
"""

# ARGV: prefix, id, expected version, new sender_id, account, data.
# 1: done; -1: version conflict or gone; -2: the new sender is bound elsewhere.
UPDATE_CONNECTOR = """
local P = ARGV[1]
local id = ARGV[2]
local ck = P .. 'connector:' .. id
local raw = redis.call('GET', ck)
if not raw then return -1 end
local current = cjson.decode(raw)
if tonumber(current['version_number']) ~= tonumber(ARGV[3]) then return -1 end
local binding = P .. 'binding:' .. ARGV[4]
local bound = redis.call('GET', binding)
if bound and bound ~= id then return -2 end
if current['sender_id'] ~= ARGV[4] then
  local old = P .. 'binding:' .. current['sender_id']
  if redis.call('GET', old) == id then redis.call('DEL', old) end
end
redis.call('SET', binding, id)
redis.call('SET', ck, ARGV[6])
if current['account_id'] ~= ARGV[5] then
  redis.call('ZREM', P .. 'connectors:' .. current['account_id'], id)
  redis.call('ZADD', P .. 'connectors:' .. ARGV[5], 0, id)
end
return 1
"""

# ARGV: prefix, id. 0: not found.
DELETE_CONNECTOR = """
local P = ARGV[1]
local id = ARGV[2]
local ck = P .. 'connector:' .. id
local raw = redis.call('GET', ck)
if not raw then return 0 end
local current = cjson.decode(raw)
local binding = P .. 'binding:' .. current['sender_id']
if redis.call('GET', binding) == id then redis.call('DEL', binding) end
redis.call('DEL', ck)
redis.call('ZREM', P .. 'connectors:' .. current['account_id'], id)
return 1
"""

# API keys: `key:{hash}` is a hash of the key's fields, `key-id:{id}` its
# hash, `keys` and `keys:{account}` zsets of ids. Touch and revoke write one
# field each, so neither can undo the other.

# ARGV: prefix, id, key_hash, account, then field/value pairs. 0: the hash is stored.
CREATE_API_KEY = """
local P = ARGV[1]
local rec = P .. 'key:' .. ARGV[3]
if redis.call('EXISTS', rec) == 1 then return 0 end
redis.call('HSET', rec, 'id', ARGV[2], 'key_hash', ARGV[3], 'account_id', ARGV[4])
for i = 5, #ARGV, 2 do redis.call('HSET', rec, ARGV[i], ARGV[i + 1]) end
redis.call('SET', P .. 'key-id:' .. ARGV[2], ARGV[3])
redis.call('ZADD', P .. 'keys', 0, ARGV[2])
redis.call('ZADD', P .. 'keys:' .. ARGV[4], 0, ARGV[2])
return 1
"""

# ARGV: prefix, id, field, value, only_if_unset (1/0). 1: written.
SET_API_KEY_FIELD = """
local P = ARGV[1]
local h = redis.call('GET', P .. 'key-id:' .. ARGV[2])
if not h then return 0 end
local rec = P .. 'key:' .. h
if redis.call('EXISTS', rec) == 0 then return 0 end
if ARGV[5] == '1' then return redis.call('HSETNX', rec, ARGV[3], ARGV[4]) end
redis.call('HSET', rec, ARGV[3], ARGV[4])
return 1
"""

# --- history ---
#
# `contact:{sender_id}:{contact}` is a zset of what a contact left under one
# sender (members `conversation:{id}`, `entry:{id}`, `outbound:{id}`: the
# record keys without the prefix), scored by when each record expires ('inf':
# never). It is what an erasure reads; the key lives as long as its longest
# member and drops members a margin past their expiry on each write.

# ARGV: prefix, now, margin (seconds), sender_id, contact, then (member,
# score) pairs. Runs inside the writes' MULTI.
INDEX_CONTACT = """
local P = ARGV[1]
local now = tonumber(ARGV[2])
local margin = tonumber(ARGV[3])
local k = P .. 'contact:' .. ARGV[4] .. ':' .. ARGV[5]
for i = 6, #ARGV, 2 do
  redis.call('ZADD', k, ARGV[i + 1], ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', k, '-inf', '(' .. string.format('%.6f', now - margin))
if redis.call('ZCOUNT', k, '+inf', '+inf') > 0 then
  redis.call('PERSIST', k)
  return 1
end
local top = redis.call('ZREVRANGE', k, 0, 0, 'WITHSCORES')
if top[2] then
  redis.call('PEXPIRE', k, math.max(1, math.ceil((tonumber(top[2]) - now + margin) * 1000)))
end
return 1
"""

# Erasure of queued jobs, leaving the queue consistent: a key whose head job
# goes loses its token (stream entry acked and deleted, lease or delayed
# member removed) and gets a new one for its next job, if any; depth counts
# follow. A worker running a removed head finds it gone at COMPLETE or RETRY
# (both change nothing then).
# ARGV: prefix, now, n, n whole keys (every job of each goes), m, m (key, job
# id) pairs (that job goes), then (lane, entry id, key) triples: stream
# entries naming those keys, dropped unless they are the key's token.
# Returns how many jobs went.
ERASE_JOBS = (
    _QUEUE_LIB
    + """
local now = tonumber(ARGV[2])
local removed = 0

local function drop_job(q, id)
  if redis.call('LREM', q, 0, id) > 0 then
    local kind = redis.call('HGET', P .. 'job:' .. id, 'kind')
    if kind then redis.call('HINCRBY', P .. 'depth', kind, -1) end
    removed = removed + 1
  end
  redis.call('DEL', P .. 'job:' .. id)
end

-- The head of `key` was `head` before: if it changed, its token goes with it.
local function settle(key, head)
  local q = P .. 'q:' .. key
  if redis.call('LINDEX', q, 0) ~= head then
    release(key)
    dispatch(key, now)
  end
  if redis.call('LLEN', q) == 0 then
    release(key)
    for _, lane in ipairs({'message', 'event'}) do
      redis.call('ZREM', P .. 'delayed:' .. lane, key)
      redis.call('ZREM', P .. 'leases:' .. lane, 'taken|' .. key)
    end
  end
end

local n = tonumber(ARGV[3])
local i = 4
for _ = 1, n do
  local key = ARGV[i]
  local q = P .. 'q:' .. key
  local ids = redis.call('LRANGE', q, 0, -1)
  for _, id in ipairs(ids) do drop_job(q, id) end
  settle(key, ids[1] or false)
  i = i + 1
end
local m = tonumber(ARGV[i])
i = i + 1
for _ = 1, m do
  local key, id = ARGV[i], ARGV[i + 1]
  local q = P .. 'q:' .. key
  local head = redis.call('LINDEX', q, 0)
  drop_job(q, id)
  settle(key, head)
  i = i + 2
end
while i + 2 <= #ARGV do
  local lane, id, key = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('HGET', P .. 'tok', key) ~= lane .. '|' .. id then
    redis.call('XACK', stream(lane), GROUP, id)
    redis.call('XDEL', stream(lane), id)
    redis.call('ZREM', P .. 'leases:' .. lane, id)
  end
  i = i + 3
end
return removed
"""
)

# --- the live stream ---
#
# `live:{account}` zset (score 0) of the account's item ids, read in id order
# with ZRANGEBYLEX; `live-item:{id}` the item's JSON; `live-aging` zset of
# `{id}:{account}` scored by the item's `at`: what trimming reads. Records
# and both indexes carry a TTL (refreshed on each append) as a safety net.

# Trim up to ARGV[3] items whose `at` is below ARGV[2]: each record goes with
# its account's index entry and its aging member, in one step. ARGV: prefix,
# before, batch. Returns {records deleted, aging members read}.
TRIM_STREAM = """
local P = ARGV[1]
local aging = P .. 'live-aging'
local members = redis.call('ZRANGEBYSCORE', aging, '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local gone = 0
for _, member in ipairs(members) do
  local sep = string.find(member, ':', 1, true)
  local id, account = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  gone = gone + redis.call('DEL', P .. 'live-item:' .. id)
  redis.call('ZREM', P .. 'live:' .. account, id)
  redis.call('ZREM', aging, member)
end
return {gone, #members}
"""

# --- opt-outs ---
#
# `opt-out:{id}` is an opt-out's JSON, `opt-out-by-sender:{sender_id}:{contact}`
# its id (one per sender and contact), `opt-outs:{account}` and
# `opt-outs-by-sender:{sender_id}` zsets (score 0) of ids, read in id order.
# None expires, and erasure leaves them: a suppression list must outlive the
# contact's history.

# ARGV: prefix, id, account, sender_id, contact, data. 0: the contact had
# already opted out of the sender (that opt-out is left as it is).
PUT_OPT_OUT = """
local P = ARGV[1]
local by = P .. 'opt-out-by-sender:' .. ARGV[4] .. ':' .. ARGV[5]
if redis.call('EXISTS', by) == 1 then return 0 end
redis.call('SET', by, ARGV[2])
redis.call('SET', P .. 'opt-out:' .. ARGV[2], ARGV[6])
redis.call('ZADD', P .. 'opt-outs:' .. ARGV[3], 0, ARGV[2])
redis.call('ZADD', P .. 'opt-outs-by-sender:' .. ARGV[4], 0, ARGV[2])
return 1
"""

# ARGV: prefix, sender_id, contact. The opt-out's JSON, or nil.
GET_OPT_OUT = """
local P = ARGV[1]
local id = redis.call('GET', P .. 'opt-out-by-sender:' .. ARGV[2] .. ':' .. ARGV[3])
if not id then return false end
return redis.call('GET', P .. 'opt-out:' .. id)
"""

# ARGV: prefix, sender_id, contact. 0: the contact had not opted out.
DELETE_OPT_OUT = """
local P = ARGV[1]
local by = P .. 'opt-out-by-sender:' .. ARGV[2] .. ':' .. ARGV[3]
local id = redis.call('GET', by)
if not id then return 0 end
local rec = P .. 'opt-out:' .. id
local raw = redis.call('GET', rec)
if raw then
  redis.call('ZREM', P .. 'opt-outs:' .. cjson.decode(raw)['account_id'], id)
end
redis.call('DEL', by, rec)
redis.call('ZREM', P .. 'opt-outs-by-sender:' .. ARGV[2], id)
return 1
"""
