"""The Redis/Valkey scripts of :class:`~eddy.runtime.serving.store.redis.RedisStore`.

Each runs atomically in the store (one round trip). A session is two keys:

- the record, a hash: ``m`` model name, ``v`` version, ``p`` position,
  ``q`` write count (the fencing token: +1 on every write, never reset),
  ``s`` state (float32 LE, tensors in manifest order); it expires after the
  session TTL unless written, resumed or renewed;
- the lease, a string: the holder's random token, set with ``PX`` (expires
  unless the holder renews it by writing or by the renewal sweep).

A write is admitted when the lease holds the writer's token, or when no lease
exists and the record's write count is still the one the writer last saw (its
lease expired while it stalled, but nobody else wrote meanwhile); it then
takes the lease again. So two holders can never both advance a session.

Live sessions are counted for ``--max-sessions`` and
``--max-sessions-per-tenant`` in two sorted sets: ``eddy:live`` (every
session) and ``eddy:live:<len(tenant)>:<tenant>``, members the record keys,
scored by a time (ms, the store's clock) before which the record cannot have
expired. A session enters both when created and leaves when deleted; expiry
is left to the store, so :data:`OPEN` settles the entries whose score has
passed before it counts: a record still there gets its real expiry as score
(every write or renewal pushed it later; scores only ever trail it), a gone
one is removed. It settles a few on every creation (the sets stay close to
the live count), and all of them when a set looks full, so a limit is judged
on the sessions alive right now, inside the one atomic script that creates
the session: two replicas cannot both pass the check for the last place.
"""

from __future__ import annotations

__all__ = ["COMMIT", "DELETE", "END", "INFO", "OPEN", "RECORD", "RENEW"]

# KEYS: record, lease, live set, tenant's live set. ARGV: token, lease_ms, ttl_ms, model, pinned version or '',
# mode, version, position, state, max sessions, max sessions of the tenant or ''.
# mode: 'resume' (must exist), 'import' / 'fresh' (must not exist: ALREADY_EXISTS even while held).
OPEN = """
local rec = redis.call('HMGET', KEYS[1], 'm', 'v', 'p', 'q', 's')
local mode = ARGV[6]
if rec[1] and mode ~= 'resume' then return {'EXISTS', rec[1], rec[2]} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'BUSY'} end
if rec[1] then
  if rec[1] ~= ARGV[4] then return {'MODEL', rec[1], rec[2]} end
  if ARGV[5] ~= '' and rec[2] ~= ARGV[5] then return {'VERSION', rec[1], rec[2]} end
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'RESUMED', rec[1], rec[2], rec[3], rec[4], rec[5]}
end
if mode == 'resume' then return {'NOTFOUND'} end
local t = redis.call('TIME')
local now, ttl = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), tonumber(ARGV[3])
local function settle(set, n)  -- re-score (or drop) up to n entries whose score has passed; n nil: all
  local due
  if n then due = redis.call('ZRANGEBYSCORE', set, '-inf', now, 'LIMIT', 0, n)
  else due = redis.call('ZRANGEBYSCORE', set, '-inf', now) end
  for _, key in ipairs(due) do
    local left = redis.call('PTTL', key)
    if left == -2 then redis.call('ZREM', set, key)
    else redis.call('ZADD', set, string.format('%.0f', now + (left >= 0 and left or ttl)), key) end
  end
end
local function live(set, limit)  -- sessions alive now, exactly when at or past limit
  settle(set, 8)
  local n = redis.call('ZCARD', set)
  if limit ~= '' and n >= tonumber(limit) then
    settle(set, nil)
    n = redis.call('ZCARD', set)
  end
  return n
end
local mine = live(KEYS[4], ARGV[11])
if ARGV[11] ~= '' and mine >= tonumber(ARGV[11]) then return {'TENANT_FULL', mine} end
local all = live(KEYS[3], ARGV[10])
if all >= tonumber(ARGV[10]) then return {'FULL', all} end
redis.call('HSET', KEYS[1], 'm', ARGV[4], 'v', ARGV[7], 'p', ARGV[8], 'q', '0', 's', ARGV[9])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
local expiry = string.format('%.0f', now + ttl)
redis.call('ZADD', KEYS[3], expiry, KEYS[1])
redis.call('ZADD', KEYS[4], expiry, KEYS[1])
return {'CREATED'}
"""

# ARGV: ttl_ms, lease_ms, n, state bytes per session, then ONE packed argument (the same n records of
# :data:`RECORD`: key, token, write count, new position, state): a batch of 256 sessions as a few thousand
# separate arguments costs the client ~10 ms to encode, the packed one microseconds. The keys are read from
# it (not declared in KEYS): a single Redis/Valkey (or one shard), not a Redis Cluster.
# Returns one 1 (written) or 0 (fenced: another holder, or the record is gone) per session.
COMMIT = """
local ttl, lease_ms, n, size = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local blob, at, out = ARGV[5], 1, {}
for i = 1, n do
  local klen, token, seq, pos
  klen, token, seq, pos, at = struct.unpack('<Hc32dd', blob, at)
  local rec = string.sub(blob, at, at + klen - 1)
  local state = string.sub(blob, at + klen, at + klen + size - 1)
  at = at + klen + size
  local lease = rec .. ':lease'
  local holder, q = redis.call('GET', lease), redis.call('HGET', rec, 'q')
  if q and (holder == token or (not holder and q == string.format('%.0f', seq))) then
    redis.call('HSET', rec, 'p', string.format('%.0f', pos), 's', state, 'q', string.format('%.0f', seq + 1))
    redis.call('PEXPIRE', rec, ttl)
    redis.call('SET', lease, token, 'PX', lease_ms)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""
RECORD = "<H32sdd"  # struct layout of one COMMIT record before its key and state: key length, token, seq, position

# KEYS: record, lease. ARGV: token, ttl_ms. The holder lets go; the TTL starts again.
END = """
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: record, lease, live set, tenant's live set. ARGV: the caller's token ('' when deleting an idle session
# by id).
DELETE = """
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return 'BUSY' end
redis.call('ZREM', KEYS[3], KEYS[1])
redis.call('ZREM', KEYS[4], KEYS[1])
if redis.call('DEL', KEYS[1]) == 0 then return 'NOTFOUND' end
if holder then redis.call('DEL', KEYS[2]) end
return 'OK'
"""

# KEYS: record, lease. An idle session's record.
INFO = """
if redis.call('EXISTS', KEYS[2]) == 1 then return {'BUSY'} end
local rec = redis.call('HMGET', KEYS[1], 'm', 'v', 'p', 's')
if not rec[1] then return {'NOTFOUND'} end
return {'OK', rec[1], rec[2], rec[3], rec[4]}
"""

# ARGV: lease_ms, ttl_ms, then one packed argument: n records of key length (u16), token (32 bytes), key.
# Extends the leases still held (1) or not (0); keys read from the argument, as in COMMIT.
RENEW = """
local blob, at, out, i = ARGV[3], 1, {}, 0
while at <= #blob do
  local klen, token
  klen, token, at = struct.unpack('<Hc32', blob, at)
  local rec = string.sub(blob, at, at + klen - 1)
  at = at + klen
  i = i + 1
  if redis.call('GET', rec .. ':lease') == token then
    redis.call('PEXPIRE', rec .. ':lease', ARGV[1])
    redis.call('PEXPIRE', rec, ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""
