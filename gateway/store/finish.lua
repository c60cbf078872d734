-- complete / reschedule / dead_letter: leave the leased state if the token still matches.
-- KEYS: 1-9 shared, 10 delivery hash, 11 its attempt list, 12 its event hash.
-- ARGV: 1 mode, 2 delivery id, 3 token, 4 attempt json, 5 attempt started_at,
--       6 next attempt time or dead_at, 7 reason.
local dk, ek, mode, did = KEYS[10], KEYS[12], ARGV[1], ARGV[2]
local d = redis.call('HMGET', dk, 'state', 'token', 'dest', 'ev', 'first')
if d[1] ~= 'leased' or d[2] ~= ARGV[3] then return 0 end
local dest, uid = d[3], d[4]
redis.call('ZREM', LEASED, did)
redis.call('RPUSH', KEYS[11], ARGV[4])
redis.call('HINCRBY', dk, 'made', 1)
if not d[5] then redis.call('HSET', dk, 'first', ARGV[5]) end
redis.call('HDEL', dk, 'token', 'lexp', 'worker')
depth(dest, 'leased', -1)
if mode == 'complete' then
  redis.call('HSET', dk, 'state', 'delivered')
  redis.call('HINCRBY', ek, 'pending', -1)
elseif mode == 'reschedule' then
  redis.call('HSET', dk, 'state', 'due', 'next', ARGV[6])
  redis.call('ZADD', DUE, ARGV[6], did)
  depth(dest, 'due', 1)
else
  redis.call('HSET', dk, 'state', 'dead', 'dead_at', ARGV[6], 'reason', ARGV[7])
  redis.call('ZADD', DEAD, ARGV[6], did)
  depth(dest, 'dead', 1)
  redis.call('HINCRBY', ek, 'pending', -1)
  redis.call('HINCRBY', ek, 'dead', 1)
end
refresh_status(ek, uid)
return 1
