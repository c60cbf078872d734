-- claim (sync mode). KEYS: 1 dedupe hash, then the rate limit's key when there is a limit
-- (a single Redis only). ARGV: 1 now, 2 expires, 3 ttl ms, then with a limit 4 its interval
-- (us) and 5 its burst, decided first.
-- Answers 'claimed', 'in_progress' or 'done', or {'rate_limited', the gcra answer's fields}:
-- the limit refused and nothing was written.
if ARGV[4] then
  -- Before the key is looked at (a resend counts against the limit too, as a separate
  -- limiter call before this script would have counted it), on the server's clock.
  local r = gcra(KEYS[2], ARGV[4], ARGV[5], '')
  if r[1] == 0 then return {'rate_limited', r[1], r[2], r[3], r[4], r[5]} end
end
local d = redis.call('HMGET', KEYS[1], 'st', 'exp')
if d[2] and tonumber(d[2]) > tonumber(ARGV[1]) then
  if d[1] == 'p' then return 'in_progress' end
  return 'done'
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'st', 'p', 'exp', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 'claimed'
