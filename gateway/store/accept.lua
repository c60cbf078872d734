-- accept (queued mode) and commit (sync mode), one atomic step.
-- KEYS[1] dedupe hash, KEYS[2] (source, id) collision hash, KEYS[3] event hash.
-- ARGV: 1 prefix, 2 mode ('queued'|'sync'), 3 now, 4 expires (now + window), 5 ttl ms,
--       6 uid, 7 source, 8 event id, 9 received_at, 10 n, 11..10+n event hash fields/values,
--       then nd, nd destinations, nd delivery ids, and for sync: attempt json, started_at.
local mode, now = ARGV[2], ARGV[3]
local uid, source, eid, received_at = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
if mode == 'queued' then
  local d = redis.call('HMGET', KEYS[1], 'st', 'exp', 'eid')
  if d[2] and tonumber(d[2]) > tonumber(now) then
    -- A live sync claim has no event id yet: the claimed event is this one.
    return {'duplicate', d[3] or eid}
  end
  local c = redis.call('HGET', KEYS[2], 'exp')
  if c and tonumber(c) > tonumber(now) then
    return {'duplicate', eid}
  end
end
local n = tonumber(ARGV[10])
redis.call('HSET', KEYS[3], unpack(ARGV, 11, 10 + n))
local i = 11 + n
local nd = tonumber(ARGV[i])
local state = 'due'
if mode == 'sync' then state = 'delivered' end
for j = 1, nd do
  local did = ARGV[i + nd + j]
  add_delivery(uid, ARGV[i + j], did, now, state)
  if mode == 'sync' then
    redis.call('RPUSH', P .. 'at:' .. did, ARGV[i + 2 * nd + 1])
    redis.call('HSET', P .. 'dl:' .. did, 'made', 1, 'first', ARGV[i + 2 * nd + 2])
  end
end
redis.call('ZADD', P .. 'events', received_at, uid)
redis.call('ZADD', P .. 'events:src:' .. source, received_at, uid)
redis.call('ZADD', P .. 'id:' .. eid, received_at, uid)
refresh_status(uid)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'st', 'd', 'exp', ARGV[4], 'eid', eid)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('HSET', KEYS[2], 'exp', ARGV[4], 'uid', uid)
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return {'queued', eid}
