-- accept (queued mode) and commit (sync mode), one atomic step.
-- KEYS: 1-9 shared, 10 dedupe hash, 11 (source, id) hash, 12 event hash, 13 its delivery
--       list, 14 the source's event index, 15 the id's index, 16 lex:id, 17 lex:subj,
--       18 subjects, 19 the subject's (or lone event's) subj: hash, 20 stats of the minute of
--       now, 21 stats of the minute the sync attempt ended (20 again in queued mode), then nd
--       delivery hashes and nd attempt lists, then the type's index if the event has a type
--       and the subject's event index if it has a subject.
-- ARGV: 1 mode ('queued'|'sync'), 2 now, 3 expires (now + window), 4 ttl ms, 5 uid,
--       6 event id, 7 received_at, 8 n, 9..8+n event hash fields/values, then nd,
--       nd destinations, nd delivery ids, then the subjects member ("s:<subject>" or
--       "e:<uid>"), and for sync: attempt json, started_at, the attempt's latency bucket.
-- Answers {'duplicate', event id} or {'queued', event id, the event's status}.
-- A duplicate is counted in the minute's stats too. Being a write, that also moves this
-- connection's replication offset past the original's, so the WAIT that follows a durable
-- call (store.wait_replicas) covers the original before the duplicate is answered 2xx.
local mode, now = ARGV[1], ARGV[2]
local uid, eid, received_at = ARGV[5], ARGV[6], ARGV[7]
local ek, evdk = KEYS[12], KEYS[13]
if mode == 'queued' then
  local d = redis.call('HMGET', KEYS[10], 'st', 'exp', 'eid')
  if d[2] and tonumber(d[2]) > tonumber(now) then
    -- A live sync claim has no event id yet: the claimed event is this one.
    count(KEYS[20], 'duplicate', 1)
    return {'duplicate', d[3] or eid}
  end
  local c = redis.call('HGET', KEYS[11], 'exp')
  if c and tonumber(c) > tonumber(now) then
    count(KEYS[20], 'duplicate', 1)
    return {'duplicate', eid}
  end
end
local n = tonumber(ARGV[8])
redis.call('HSET', ek, unpack(ARGV, 9, 8 + n))
local i = 9 + n
local nd = tonumber(ARGV[i])
local skey = ARGV[i + 2 * nd + 1]
local state = 'due'
if mode == 'sync' then state = 'delivered' end
for j = 1, nd do
  local did, dk = ARGV[i + nd + j], KEYS[21 + j]
  add_delivery(ek, evdk, dk, uid, ARGV[i + j], did, now, state)
  if mode == 'sync' then
    redis.call('RPUSH', KEYS[21 + nd + j], ARGV[i + 2 * nd + 2])
    redis.call('HSET', dk, 'made', 1, 'first', ARGV[i + 2 * nd + 3])
  end
end
redis.call('ZADD', EVENTS, received_at, uid)
redis.call('ZADD', KEYS[14], received_at, uid)
redis.call('ZADD', KEYS[15], received_at, uid)
refresh_status(ek, uid)
-- Dashboard indexes: by type, id and subject prefixes (lex order), a subject's events, and the
-- subjects by their latest event (each partition has its own; readers merge them).
local e = redis.call('HMGET', ek, 'type', 'subject')
local k = 21 + 2 * nd
if e[1] then
  k = k + 1
  local typek = KEYS[k]
  redis.call('ZADD', typek, received_at, uid)
end
redis.call('ZADD', KEYS[16], 0, eid .. '\n' .. uid)
local subjects, hk = KEYS[18], KEYS[19]
if e[2] then
  k = k + 1
  local subjevk = KEYS[k]
  redis.call('ZADD', KEYS[17], 0, e[2] .. '\n' .. uid)
  redis.call('ZADD', subjevk, received_at, uid)
  redis.call('HSET', hk, 'subject', e[2])
end
local latest = redis.call('ZSCORE', subjects, skey)
if not latest or tonumber(received_at) >= tonumber(latest) then
  redis.call('ZADD', subjects, received_at, skey)
  redis.call('HSET', hk, 'latest', uid)
end
redis.call('HINCRBY', hk, 'n', 1)
count(KEYS[20], 'accepted', 1)
if mode == 'sync' then
  redis.call('HSET', ek, 'attempts', nd)
  count(KEYS[21], 'delivered', nd)
  count(KEYS[21], 'lat' .. ARGV[i + 2 * nd + 4], nd)
end
redis.call('DEL', KEYS[10])
redis.call('HSET', KEYS[10], 'st', 'd', 'exp', ARGV[3], 'eid', eid)
redis.call('PEXPIRE', KEYS[10], ARGV[4])
redis.call('HSET', KEYS[11], 'exp', ARGV[3], 'uid', uid)
redis.call('PEXPIRE', KEYS[11], ARGV[4])
return {'queued', eid, redis.call('HGET', ek, 'status')}
