-- retry_now: deliveries of one destination waiting out a backoff, due again at now (their
-- attempt counts are kept). The caller reads the candidates, ids in the due set with a later
-- score, and this script re-checks each (a lease or a finish may have moved it meanwhile).
-- KEYS: 1-9 shared, then each candidate's delivery hash.
-- ARGV: 1 now, 2 the destination, 3.. the candidates' delivery ids.
-- Answers {moved, skipped}: skipped ones belong to other destinations (or moved meanwhile)
-- and stay where they are.
local now, dest, moved, skipped = ARGV[1], ARGV[2], 0, 0
for i = 3, #ARGV do
  local did, dk = ARGV[i], KEYS[7 + i]
  local d = redis.call('HMGET', dk, 'state', 'dest', 'next')
  if d[1] == 'due' and d[2] == dest and tonumber(d[3]) > tonumber(now) then
    redis.call('ZADD', DUE, now, did)
    redis.call('HSET', dk, 'next', now)
    moved = moved + 1
  else
    skipped = skipped + 1
  end
end
return {moved, skipped}
