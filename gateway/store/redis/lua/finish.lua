-- complete / reschedule / dead_letter: leave the leased state if the token still matches.
-- KEYS: 1-9 shared, 10 delivery hash, 11 its attempt list, 12 its event hash, 13 the stats
--       hash of the minute the attempt ended, and when the entry goes in here (one
--       partition, whose hash tag the log shares): 14 the backoff marks (destination -> 1
--       while a retry was scheduled since its last success; log.lua keeps them otherwise),
--       15 the change log.
-- ARGV: 1 mode, 2 delivery id, 3 token, 4 attempt json, 5 attempt started_at,
--       6 next attempt time or dead_at, 7 reason, 8 the attempt's latency bucket, 9 the change
--       log's cap when this script appends the entry (one partition, whose hash tag the log
--       shares) or '', 10 the attempt's number, 11 the position in KEYS of the analytics
--       hash of the event's source on the day the attempt ended (rollup.lua) or '', 12 that
--       hour of the day, 13 the analytics bin of the time from the event's arrival to now.
-- Answers 0 (the lease was lost), or the result and what the change log records of it:
-- {result, destination, event id, source, type, subject, body status, event status, logged,
-- backlog, payment key}, logged being 1 when this script appended the entry, 0 when that
-- failed or was not asked; backlog 1 when a delivery succeeded after its destination's
-- retries (this script took the mark: the caller releases the backlog), else 0; the payment
-- key absent (nil) for an event about no payment.
local dk, ek, mode, did = KEYS[10], KEYS[12], ARGV[1], ARGV[2]
local d = redis.call('HMGET', dk, 'state', 'token', 'dest', 'ev', 'first', 'made')
if d[1] ~= 'leased' or d[2] ~= ARGV[3] then return 0 end
local dest, uid = d[3], d[4]
redis.call('ZREM', LEASED, did)
redis.call('RPUSH', KEYS[11], ARGV[4])
redis.call('HDEL', dk, 'token', 'lexp', 'worker')
depth(dest, 'leased', -1)
-- The event's counters and what the change log records of it, read once: its writes below are
-- worked out from them (nothing else runs while a script does).
local e = redis.call('HMGET', ek, 'id', 'source', 'type', 'subject', 'body_status', 'status',
  'payment_key', 'n', 'pending', 'dead', 'attempts', 'received_at', 'mark')
local pending, dead = tonumber(e[9]) or 0, tonumber(e[10]) or 0
local made = {'made', (tonumber(d[6]) or 0) + 1}
if not d[5] then made[3], made[4] = 'first', ARGV[5] end
local backlog = 0
local result = 'dead_lettered'
if mode == 'complete' then
  result = 'delivered'
  redis.call('HSET', dk, 'state', 'delivered', unpack(made))
  pending = pending - 1
  if ARGV[9] ~= '' then backlog = redis.call('HDEL', KEYS[14], dest) end
elseif mode == 'reschedule' then
  result = 'retried'
  redis.call('HSET', dk, 'state', 'due', 'next', ARGV[6], unpack(made))
  redis.call('ZADD', DUE, ARGV[6], did)
  depth(dest, 'due', 1)
  if ARGV[9] ~= '' then redis.call('HSET', KEYS[14], dest, 1) end
else
  redis.call('HSET', dk, 'state', 'dead', 'dead_at', ARGV[6], 'reason', ARGV[7], unpack(made))
  redis.call('ZADD', DEAD, ARGV[6], did)
  depth(dest, 'dead', 1)
  pending, dead = pending - 1, dead + 1
end
local status = status_of(tonumber(e[8]) or 0, pending, dead, e[13])
redis.call('HSET', ek, 'pending', pending, 'dead', dead, 'attempts', (tonumber(e[11]) or 0) + 1,
  'status', status)
if status ~= e[6] then move_status(uid, e[6] or nil, status, e[12]) end
e[6] = status  -- the answer and the change log carry the new status
count(KEYS[13], result, 1, 'lat' .. ARGV[8])
if ARGV[11] ~= '' and result ~= 'retried' then
  local an, hh = KEYS[tonumber(ARGV[11])], ARGV[12]
  if result == 'delivered' then
    rollup_count(an, hh, 'dv', 1)
    rollup_count(an, hh, 'dl:' .. ARGV[13], 1)
  else
    rollup_count(an, hh, 'dd', 1)
  end
  redis.call('EXPIRE', an, ROLLUP_TTL)
end
-- The change log last, after every other write: a failed append (pcall) loses that live
-- message only, as when it is appended by a call of its own.
local logged = 0
if ARGV[9] ~= '' then
  local changes = KEYS[15]
  local function value(x) if x then return x end return cjson.null end
  local data = cjson.encode({
    event_id = value(e[1]), source = value(e[2]), type = value(e[3]), subject = value(e[4]),
    status = value(e[5]), event_status = value(e[6]), payment_key = value(e[7]),
    destination = dest,
    attempt = tonumber(ARGV[10]), result = result})
  local r = redis.pcall('XADD', changes, 'MAXLEN', '~', ARGV[9], '*', 'kind', 'delivery',
    'data', data)
  if not (type(r) == 'table' and r.err) then logged = 1 end
end
return {result, dest, e[1], e[2], e[3], e[4], e[5], e[6], logged, backlog, e[7]}
