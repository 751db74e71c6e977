"""The Redis/Valkey scripts of :class:`~eddy.runtime.serving.store.redis.RedisStore`.

Each runs atomically in the store (one round trip). A session is two keys:

- the record, a hash: ``m`` model name, ``v`` version, ``p`` position,
  ``q`` write count (the fencing token: +1 on every write, never reset),
  ``s`` state (float32 LE, tensors in manifest order); it expires after the
  session TTL unless written, resumed or renewed;
- the lease, a string: the holder's random token, set with ``PX`` (expires
  unless the holder renews it by writing or by the renewal sweep).

Every script that writes carries a deadline in the store's clock (ms, the
``TIME`` it runs at): the moment the sender stops waiting for the answer. A
script that runs later changes nothing and returns ``LATE``: a write queued
in a store that stalled (paused, swapping, a partition) never lands after
its sender answered UNAVAILABLE.

A batch write (:data:`COMMIT`) names, per session, the write count it read
(``seq``) and the position and state it writes. It is admitted when the
record's write count is still ``seq`` and the lease holds the writer's token
or nobody's (its lease expired while it stalled, but nobody else wrote
meanwhile; it then takes the lease again). A retry of the same write, whose
first attempt was stored but whose answer never arrived, finds the record
one write ahead holding exactly its position and state: it is acknowledged,
not applied again. Anything else is refused: another holder (or a gone
record), or a record that moved elsewhere (its position is returned). So two
holders can never both advance a session, and a write is stored at most once.

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

__all__ = ["COMMIT", "DELETE", "END", "GONE", "INFO", "LATE", "OPEN", "RECORD", "RENEW", "TAKEN", "WRITTEN"]

LATE = b"LATE"  # what a write script returns when it ran after its deadline (nothing changed)

# The store's clock in ms, and the refusal of a write that runs after its deadline (the last argument).
_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if now > tonumber(ARGV[#ARGV]) then return 'LATE' end
"""

# KEYS: record, lease, live set, tenant's live set. ARGV: token, lease_ms, ttl_ms, model, pinned version or '',
# mode, version, position, state, max sessions, max sessions of the tenant or '', deadline.
# mode: 'resume' (must exist), 'import' / 'fresh' (must not exist: ALREADY_EXISTS even while held).
OPEN = _NOW + """
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
local ttl = tonumber(ARGV[3])
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
# :data:`RECORD`: key, token, write count read, new position, state), then the deadline. A batch of 256 sessions
# as a few thousand separate arguments costs the client ~10 ms to encode, the packed one microseconds. The keys are
# read from it (not declared in KEYS): a single Redis/Valkey (or one shard), not a Redis Cluster.
# Returns 'LATE', or per session: WRITTEN (stored now, or by an earlier attempt of this same write), TAKEN
# (another holder has the lease), GONE (no record), or the record's position (>= 0) when it moved elsewhere.
COMMIT = _NOW + """
local ttl, lease_ms, n, size = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local blob, at, out = ARGV[5], 1, {}
for i = 1, n do
  local klen, token, seq, pos
  klen, token, seq, pos, at = struct.unpack('<Hc32dd', blob, at)
  local rec = string.sub(blob, at, at + klen - 1)
  local state = string.sub(blob, at + klen, at + klen + size - 1)
  at = at + klen + size
  local lease = rec .. ':lease'
  local holder, has = redis.call('GET', lease), redis.call('HMGET', rec, 'q', 'p', 's')
  local q, p, seen, position = has[1], has[2], string.format('%.0f', seq), string.format('%.0f', pos)
  local again = q == string.format('%.0f', seq + 1) and p == position and has[3] == state  -- stored already
  if not q then
    out[i] = -3
  elseif holder and holder ~= token then
    out[i] = -2
  elseif q == seen or again then
    if q == seen then redis.call('HSET', rec, 'p', position, 's', state, 'q', string.format('%.0f', seq + 1)) end
    redis.call('PEXPIRE', rec, ttl)
    redis.call('SET', lease, token, 'PX', lease_ms)
    out[i] = -1
  else
    out[i] = tonumber(p)
  end
end
return out
"""
WRITTEN, TAKEN, GONE = -1, -2, -3  # COMMIT's answers per session besides a position
RECORD = "<H32sdd"  # struct layout of one COMMIT record before its key and state: key length, token, seq, position

# KEYS: record, lease. ARGV: token, ttl_ms, deadline. The holder lets go; the TTL starts again.
END = _NOW + """
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: record, lease, live set, tenant's live set. ARGV: the caller's token ('' when deleting an idle session
# by id), deadline.
DELETE = _NOW + """
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

# ARGV: lease_ms, ttl_ms, then one packed argument: n records of key length (u16), token (32 bytes), key, then the
# deadline. Extends the leases still held (1) or not (0); keys read from the argument, as in COMMIT.
RENEW = _NOW + """
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
