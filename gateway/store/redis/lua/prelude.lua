-- Shared by every store script (prepended by gateway/store/redis/scripts.py).
-- Every key a script touches is passed in KEYS (the Redis Cluster contract); none is built
-- here. All of one call's keys carry the hash tag of one partition, so each script runs on the
-- one node that owns the partition. Scripts that move deliveries or change an event's status
-- take the partition's shared keys first, in this order (``PartitionKeys.shared`` in keys.py):
local DUE, LEASED, DEAD, DEPTH, EVENTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local STATUS = {queued = KEYS[6], delivered = KEYS[7], dead_lettered = KEYS[8],
                unrouted = KEYS[9]}
-- The held events' index (a payment's event kept back from delivery, design.md 5.7) is passed
-- only to the scripts that make one or unmake one (accept, replay, prune): they set
-- STATUS.held. No other script can meet a held event: it has no delivery to move.
-- Times arrive as strings written by Python (repr of a float) and are stored as given: a Lua
-- number turned back into a string would keep only 14 digits.

local function depth(dest, state, by)
  redis.call('HINCRBY', DEPTH, dest .. '\n' .. state, by)
end

-- An event's status from its counters (gateway.store.records.event_status), kept in the status
-- index the event list reads. A status whose index this script was not given fails loudly.
local function refresh_status(ek, uid)
  local v = redis.call('HMGET', ek, 'n', 'pending', 'dead', 'status', 'received_at', 'mark')
  local n, pending, dead = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
  local st
  if n == 0 then
    -- No delivery: kept back (a marked payment event) or no route took it.
    if v[6] then st = 'held' else st = 'unrouted' end
  elseif pending > 0 then st = 'queued'
  elseif dead > 0 then st = 'dead_lettered'
  else st = 'delivered' end
  if v[4] ~= st then
    if v[4] then
      local old = STATUS[v[4]]
      if not old then error('no index given for status ' .. v[4]) end
      redis.call('ZREM', old, uid)
    end
    local new = STATUS[st]
    if not new then error('no index given for status ' .. st) end
    redis.call('ZADD', new, v[5], uid)
    redis.call('HSET', ek, 'status', st)
  end
end

-- A new delivery did (hash dk) of the event uid (hash ek, delivery list evdk): 'due' at now,
-- or 'delivered' (sync mode).
local function add_delivery(ek, evdk, dk, uid, dest, did, now, state)
  redis.call('HSET', dk, 'ev', uid, 'dest', dest, 'state', state, 'made', 0,
    'created', now, 'next', now)
  redis.call('RPUSH', evdk, did)
  redis.call('HINCRBY', ek, 'n', 1)
  if state == 'due' then
    redis.call('ZADD', DUE, now, did)
    depth(dest, 'due', 1)
    redis.call('HINCRBY', ek, 'pending', 1)
  end
end

-- Dashboard figures (gateway.store.stats): add to a per-minute counter hash (sk, one per
-- partition and minute, passed in KEYS), kept two hours.
local function count(sk, name, by)
  redis.call('HINCRBY', sk, name, by)
  redis.call('EXPIRE', sk, 7200)
end
