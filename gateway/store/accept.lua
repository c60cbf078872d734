-- accept (queued mode) and commit (sync mode), one atomic step.
-- KEYS: 1-9 shared, 10 dedupe hash, 11 (source, id) hash, 12 event hash, 13 its delivery
--       list, 14 the source's event index, 15 the id's index, then nd delivery hashes and
--       nd attempt lists.
-- ARGV: 1 mode ('queued'|'sync'), 2 now, 3 expires (now + window), 4 ttl ms, 5 uid,
--       6 event id, 7 received_at, 8 n, 9..8+n event hash fields/values, then nd,
--       nd destinations, nd delivery ids, and for sync: attempt json, started_at.
local mode, now = ARGV[1], ARGV[2]
local uid, eid, received_at = ARGV[5], ARGV[6], ARGV[7]
local ek, evdk = KEYS[12], KEYS[13]
if mode == 'queued' then
  local d = redis.call('HMGET', KEYS[10], 'st', 'exp', 'eid')
  if d[2] and tonumber(d[2]) > tonumber(now) then
    -- A live sync claim has no event id yet: the claimed event is this one.
    return {'duplicate', d[3] or eid}
  end
  local c = redis.call('HGET', KEYS[11], 'exp')
  if c and tonumber(c) > tonumber(now) then
    return {'duplicate', eid}
  end
end
local n = tonumber(ARGV[8])
redis.call('HSET', ek, unpack(ARGV, 9, 8 + n))
local i = 9 + n
local nd = tonumber(ARGV[i])
local state = 'due'
if mode == 'sync' then state = 'delivered' end
for j = 1, nd do
  local did, dk = ARGV[i + nd + j], KEYS[15 + j]
  add_delivery(ek, evdk, dk, uid, ARGV[i + j], did, now, state)
  if mode == 'sync' then
    redis.call('RPUSH', KEYS[15 + nd + j], ARGV[i + 2 * nd + 1])
    redis.call('HSET', dk, 'made', 1, 'first', ARGV[i + 2 * nd + 2])
  end
end
redis.call('ZADD', EVENTS, received_at, uid)
redis.call('ZADD', KEYS[14], received_at, uid)
redis.call('ZADD', KEYS[15], received_at, uid)
refresh_status(ek, uid)
redis.call('DEL', KEYS[10])
redis.call('HSET', KEYS[10], 'st', 'd', 'exp', ARGV[3], 'eid', eid)
redis.call('PEXPIRE', KEYS[10], ARGV[4])
redis.call('HSET', KEYS[11], 'exp', ARGV[3], 'uid', uid)
redis.call('PEXPIRE', KEYS[11], ARGV[4])
return {'queued', eid}
