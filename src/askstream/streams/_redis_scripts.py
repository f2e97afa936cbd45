"""The Lua scripts behind :class:`~askstream.streams.RedisStore`.

Each step that reads and then writes (append only to an open stream, finish
once, take over a lapsed lease once) is one script, so Redis runs it atomically: two
instances racing on a stream cannot both win. Key layout, for a prefix ``p``
and a stream ``s``::

    p s:<s>          hash     s: status ("open", "complete", ...), n: events so far,
                              o: owner, c: present once a cancel was asked for
    p s:<s>:log      stream   entry 0-<n> per event (d: data, e: type unless
                              "message"), then one entry holding s: the final status
    p s:<s>:gone     string   the tombstone, holding the owner: set at the end, outlives
                              the two above so that an expired stream reads as 410, not
                              404, to its owner
    p leases         zset     stream id -> when its lease runs out (ms, Redis's clock)
    p cancels        stream   ids of streams whose producer is asked to stop (capped)

Event ids are the stream entries' sequence numbers, ``0-1``, ``0-2``, ...:
the store hands out ``"1"``, ``"2"``, ..., as the memory store does, and
"after id n" is Redis's exclusive range ``(0-n``. Times come from Redis's own
``TIME``, so instances with skewed clocks agree on when a lease runs out.
"""

from __future__ import annotations

__all__ = ["APPEND", "CANCEL", "CREATE", "FINISH", "READ", "RENEW", "TAKE_OVER"]

# Milliseconds on Redis's clock, as an integer string (Lua would print 1.7e+12).
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# The end of a stream: its final-status entry, the expiries and the tombstone.
# KEYS meta, log, gone; status, retention ms, tombstone ms.
_END = """
local function finish(meta, log, gone, status, retention, tombstone)
  local n = tonumber(redis.call('HGET', meta, 'n'))
  redis.call('XADD', log, '0-' .. (n + 1), 's', status)
  redis.call('HSET', meta, 's', status)
  redis.call('HDEL', meta, 'c')
  redis.call('PEXPIRE', meta, retention)
  redis.call('PEXPIRE', log, retention)
  redis.call('SET', gone, redis.call('HGET', meta, 'o') or '', 'PX', tombstone)
end
"""

# KEYS meta, gone, leases; ARGV stream id, lease ttl ms, owner.
# 1: created; 0: the id is taken (also by an expired stream).
CREATE = (
    _NOW
    + """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('HSET', KEYS[1], 's', 'open', 'n', 0, 'o', ARGV[3])
redis.call('ZADD', KEYS[3], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
return 1
"""
)

# KEYS meta, log of each event's stream in turn; ARGV length cap, then data,
# event type of each event in the same order. One call carries every append a
# process made in one round trip (see _redis_batch.py).
# For each event: its number; -1: no such stream; -2: finished.
APPEND = """
local out = {}
for i = 1, #KEYS, 2 do
  local s = redis.call('HGET', KEYS[i], 's')
  if not s then
    out[#out + 1] = -1
  elseif s ~= 'open' then
    out[#out + 1] = -2
  else
    local n = redis.call('HINCRBY', KEYS[i], 'n', 1)
    local data, kind = ARGV[i + 1], ARGV[i + 2]
    if kind == 'message' then
      redis.call('XADD', KEYS[i + 1], 'MAXLEN', '~', ARGV[1], '0-' .. n, 'd', data)
    else
      redis.call('XADD', KEYS[i + 1], 'MAXLEN', '~', ARGV[1], '0-' .. n, 'd', data, 'e', kind)
    end
    out[#out + 1] = n
  end
end
return out
"""

# KEYS meta, log, gone, leases; ARGV status, retention ms, tombstone ms, stream id.
# 1: finished now; 0: it already was; -1: no such stream.
FINISH = (
    _END
    + """
local s = redis.call('HGET', KEYS[1], 's')
if not s then return -1 end
if s ~= 'open' then return 0 end
finish(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3])
redis.call('ZREM', KEYS[4], ARGV[4])
return 1
"""
)

# KEYS meta, log, gone; ARGV after (0 for the start).
# {'unknown'} / {'expired'}; {status, n} when `after` is past n; else
# {status, n, events}: the events after `after` packed into one string, each
# "<number> <type length> <data length>\n<type><data>" (lengths in bytes; an
# empty type is "message"). One string instead of five RESP items per entry:
# the client parses it with a few slices instead of an await per item.
READ = """
local m = redis.call('HMGET', KEYS[1], 's', 'n')
if not m[1] then
  if redis.call('EXISTS', KEYS[3]) == 1 then return {'expired'} end
  return {'unknown'}
end
if tonumber(ARGV[1]) > tonumber(m[2]) then return {m[1], m[2]} end
local parts = {}
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], '(0-' .. ARGV[1], '+')) do
  local f = entry[2]
  if f[1] == 'd' then
    local kind = f[3] == 'e' and f[4] or ''
    local head = string.sub(entry[1], 3) .. ' ' .. #kind .. ' ' .. #f[2] .. '\\n'
    parts[#parts + 1] = head .. kind .. f[2]
  end
end
return {m[1], m[2], table.concat(parts)}
"""

# KEYS meta, gone, cancels; ARGV stream id.
# The status the stream had ('unknown', 'expired' when the store does not hold it).
# A request is kept twice: in the stream's hash (the producer's next lease
# renewal finds it) and on the cancels stream, which every instance tails.
CANCEL = """
local s = redis.call('HGET', KEYS[1], 's')
if not s then
  if redis.call('EXISTS', KEYS[2]) == 1 then return 'expired' end
  return 'unknown'
end
if s == 'open' then
  redis.call('HSET', KEYS[1], 'c', 1)
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 1000, '*', 'id', ARGV[1])
end
return s
"""

# KEYS leases, meta...; ARGV lease ttl ms, stream id... (in the order of the metas).
# {lost ids, ids with a cancel request}: a lost lease was reaped (or its
# stream finished) behind our back; the others are renewed to now + ttl.
RENEW = (
    _NOW
    + """
local deadline = string.format('%d', now + tonumber(ARGV[1]))
local lost, cancelled = {}, {}
for i = 2, #KEYS do
  local id = ARGV[i]
  local m = redis.call('HMGET', KEYS[i], 's', 'c')
  if m[1] == 'open' and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], 'XX', deadline, id)
    if m[2] then cancelled[#cancelled + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
return {lost, cancelled}
"""
)

# KEYS leases; ARGV key prefix, lease ttl ms, batch size.
# The ids of the open streams whose lease ran out, now leased to the caller
# for a fresh ttl: it ends them (or, dying too, lets another caller take them).
# It builds the streams' key names itself, so it needs one Redis, not a Cluster.
TAKE_OVER = (
    _NOW
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[3])
local deadline = string.format('%d', now + tonumber(ARGV[2]))
local taken = {}
for _, id in ipairs(due) do
  if redis.call('HGET', ARGV[1] .. 's:' .. id, 's') == 'open' then
    redis.call('ZADD', KEYS[1], deadline, id)
    taken[#taken + 1] = id
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return taken
"""
)
