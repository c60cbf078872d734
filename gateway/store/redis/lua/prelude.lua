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

-- An event's status from its counters (gateway.store.records.event_status): with no delivery,
-- kept back (a marked payment event) or no route took it.
local function status_of(n, pending, dead, mark)
  if n == 0 then
    if mark then return 'held' end
    return 'unrouted'
  elseif pending > 0 then return 'queued'
  elseif dead > 0 then return 'dead_lettered' end
  return 'delivered'
end

-- Move the event uid (received at received_at) from the index of status old (nil: none) to
-- that of status new, which the event list reads. A status whose index this script was not
-- given fails loudly.
local function move_status(uid, old, new, received_at)
  if old then
    local from = STATUS[old]
    if not from then error('no index given for status ' .. old) end
    redis.call('ZREM', from, uid)
  end
  local to = STATUS[new]
  if not to then error('no index given for status ' .. new) end
  redis.call('ZADD', to, received_at, uid)
end

-- An event's status from its counters, kept in its hash and in the status indexes.
local function refresh_status(ek, uid)
  local v = redis.call('HMGET', ek, 'n', 'pending', 'dead', 'status', 'received_at', 'mark')
  local st = status_of(tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0, v[6])
  if v[4] ~= st then
    move_status(uid, v[4] or nil, st, v[5])
    redis.call('HSET', ek, 'status', st)
  end
end

-- The hash of a new delivery did (hash dk) of the event uid: 'due' at now, in the due set and
-- the queue depth; or 'delivered' (sync mode), its one attempt made, first at first.
local function write_delivery(dk, uid, dest, did, now, state, first)
  if first then
    redis.call('HSET', dk, 'ev', uid, 'dest', dest, 'state', state, 'made', 1,
      'created', now, 'next', now, 'first', first)
  else
    redis.call('HSET', dk, 'ev', uid, 'dest', dest, 'state', state, 'made', 0,
      'created', now, 'next', now)
  end
  if state == 'due' then
    redis.call('ZADD', DUE, now, did)
    depth(dest, 'due', 1)
  end
end

-- A new delivery, as write_delivery, added to the event's delivery list evdk and counters (hash
-- ek). accept.lua writes a new event's list and counters whole instead.
local function add_delivery(ek, evdk, dk, uid, dest, did, now, state)
  write_delivery(dk, uid, dest, did, now, state)
  redis.call('RPUSH', evdk, did)
  redis.call('HINCRBY', ek, 'n', 1)
  if state == 'due' then redis.call('HINCRBY', ek, 'pending', 1) end
end

-- Dashboard figures (gateway.store.stats): add by to name (and to name2, when given) in a
-- per-minute counter hash (sk, one per partition and minute, passed in KEYS), kept two hours.
local function count(sk, name, by, name2)
  redis.call('HINCRBY', sk, name, by)
  if name2 then redis.call('HINCRBY', sk, name2, by) end
  redis.call('EXPIRE', sk, 7200)
end
