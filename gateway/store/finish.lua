-- complete / reschedule / dead_letter: leave the leased state if the token still matches.
-- KEYS[1] delivery hash. ARGV: 1 prefix, 2 mode, 3 delivery id, 4 token, 5 attempt json,
-- 6 attempt started_at, 7 next attempt time or dead_at, 8 reason.
local dk, mode, did = KEYS[1], ARGV[2], ARGV[3]
local d = redis.call('HMGET', dk, 'state', 'token', 'dest', 'ev', 'first')
if d[1] ~= 'leased' or d[2] ~= ARGV[4] then return 0 end
local dest, uid = d[3], d[4]
local ek = P .. 'ev:' .. uid
redis.call('ZREM', P .. 'leased', did)
redis.call('RPUSH', P .. 'at:' .. did, ARGV[5])
redis.call('HINCRBY', dk, 'made', 1)
if not d[5] then redis.call('HSET', dk, 'first', ARGV[6]) end
redis.call('HDEL', dk, 'token', 'lexp', 'worker')
depth(dest, 'leased', -1)
if mode == 'complete' then
  redis.call('HSET', dk, 'state', 'delivered')
  redis.call('HINCRBY', ek, 'pending', -1)
elseif mode == 'reschedule' then
  redis.call('HSET', dk, 'state', 'due', 'next', ARGV[7])
  redis.call('ZADD', P .. 'due', ARGV[7], did)
  depth(dest, 'due', 1)
else
  redis.call('HSET', dk, 'state', 'dead', 'dead_at', ARGV[7], 'reason', ARGV[8])
  redis.call('ZADD', P .. 'dead', ARGV[7], did)
  depth(dest, 'dead', 1)
  redis.call('HINCRBY', ek, 'pending', -1)
  redis.call('HINCRBY', ek, 'dead', 1)
end
refresh_status(uid)
return 1
