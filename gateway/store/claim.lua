-- claim (sync mode). KEYS[1] dedupe hash. ARGV: 1 now, 2 expires, 3 ttl ms.
local d = redis.call('HMGET', KEYS[1], 'st', 'exp')
if d[2] and tonumber(d[2]) > tonumber(ARGV[1]) then
  if d[1] == 'p' then return 'in_progress' end
  return 'done'
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'st', 'p', 'exp', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 'claimed'
