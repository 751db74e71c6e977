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
"""

from __future__ import annotations

__all__ = ["COMMIT", "DELETE", "END", "INFO", "OPEN", "RECORD", "RENEW"]

# KEYS: record, lease. ARGV: token, lease_ms, ttl_ms, model, pinned version or '', mode, version, position, state
# mode: 'open' (resume or create), 'resume' (must exist), 'import' / 'fresh' (must not exist)
OPEN = """
if redis.call('EXISTS', KEYS[2]) == 1 then return {'BUSY'} end
local rec = redis.call('HMGET', KEYS[1], 'm', 'v', 'p', 'q', 's')
local mode = ARGV[6]
if rec[1] then
  if mode == 'import' or mode == 'fresh' then return {'EXISTS', rec[1], rec[2]} end
  if rec[1] ~= ARGV[4] then return {'MODEL', rec[1], rec[2]} end
  if ARGV[5] ~= '' and rec[2] ~= ARGV[5] then return {'VERSION', rec[1], rec[2]} end
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'RESUMED', rec[1], rec[2], rec[3], rec[4], rec[5]}
end
if mode == 'resume' then return {'NOTFOUND'} end
redis.call('HSET', KEYS[1], 'm', ARGV[4], 'v', ARGV[7], 'p', ARGV[8], 'q', '0', 's', ARGV[9])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
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

# KEYS: record, lease. ARGV: the caller's token ('' when deleting an idle session by id).
DELETE = """
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return 'BUSY' end
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
