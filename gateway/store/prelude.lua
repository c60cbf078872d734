-- Shared by every store script (prepended by gateway/store/redis.py).
-- ARGV[1] is the key prefix, "wg:{q}:". Every key starts with it, so every key of every script
-- hashes to the one slot of the tag "{q}" and the scripts run unchanged on Redis Cluster.
-- Times arrive as strings written by Python (repr of a float) and are stored as given: a Lua
-- number turned back into a string would keep only 14 digits.
local P = ARGV[1]

local function depth(dest, state, by)
  redis.call('HINCRBY', P .. 'depth', dest .. '\n' .. state, by)
end

-- An event's status from its counters (gateway.store.base.event_status), kept in the status
-- index the event list reads.
local function refresh_status(uid)
  local ek = P .. 'ev:' .. uid
  local v = redis.call('HMGET', ek, 'n', 'pending', 'dead', 'status', 'received_at')
  local n, pending, dead = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
  local st
  if n == 0 then st = 'unrouted'
  elseif pending > 0 then st = 'queued'
  elseif dead > 0 then st = 'dead_lettered'
  else st = 'delivered' end
  if v[4] ~= st then
    if v[4] then redis.call('ZREM', P .. 'events:st:' .. v[4], uid) end
    redis.call('ZADD', P .. 'events:st:' .. st, v[5], uid)
    redis.call('HSET', ek, 'status', st)
  end
end

-- A new delivery of event uid: 'due' at now, or 'delivered' (sync mode).
local function add_delivery(uid, dest, did, now, state)
  redis.call('HSET', P .. 'dl:' .. did, 'ev', uid, 'dest', dest, 'state', state, 'made', 0,
    'created', now, 'next', now)
  redis.call('RPUSH', P .. 'evd:' .. uid, did)
  local ek = P .. 'ev:' .. uid
  redis.call('HINCRBY', ek, 'n', 1)
  if state == 'due' then
    redis.call('ZADD', P .. 'due', now, did)
    depth(dest, 'due', 1)
    redis.call('HINCRBY', ek, 'pending', 1)
  end
end
