-- accept (queued mode) and commit (sync mode), one atomic step: dedupe, the payment's state
-- (design.md 5.7), the event, its deliveries and its indexes.
-- KEYS: 1-9 shared, 10 dedupe hash, 11 (source, id) hash, 12 event hash, 13 its delivery
--       list, 14 the source's event index, 15 the id's index, 16 lex:id, 17 lex:subj,
--       18 stats of the minute of now, 19 stats of the minute the sync attempt ended (18
--       again in queued mode), 20 the held events' index, then nd delivery hashes and nd
--       attempt lists, then the keys named by position in ``at``: type (the type's index),
--       pay (the payment's 13 keys, below), log (the change log, when the entries go in here:
--       one partition only, whose hash tag the log shares), limit (the rate limit's key, a
--       single Redis only), first (a limit decided before it: the per-IP one), an (the
--       analytics hash of the source's day, rollup.lua).
--       The payment's keys, from ``at.pay``: +0 its hash, +1 its events (uids by received_at),
--       +2 payments (members "<source>\n<key>" by last update), +3 payments:src:<source>,
--       +4 payments:conflict, +5 lex:paykey ("<key>\n<member>"), +6 lex:payref
--       ("<reference>\n<member>"), +7..+12 payments:st:<state> in the order of STATE_KEYS.
-- ARGV: 1 everything but the payload, as one JSON object (one argument is much cheaper for
--       the client to send than dozens): mode ('queued'|'sync'), now, expires (now +
--       window), ttl (ms), uid, id (the event id), received_at, fields (the event hash's text
--       fields and values, flat), dests and dids (the nd destinations and delivery ids), at
--       (the positions above), pay when the event is about a payment ({source, key, member,
--       state (or absent), reference (or absent), amount {value, scale, currency} (or absent),
--       order}), hh (the hour of the day of now, for the analytics), and for sync: attempt
--       (json), started_at, bucket (the attempt's latency bucket), dlbin (the analytics bin
--       of the time from arrival to delivery); with log, cap and the entries as {kind, data},
--       each data a JSON object without its closing brace, which this script closes after
--       adding the event's status;
--       limit, {interval (us), burst} of the per-source rate limit to decide first; first,
--       the same of the per-IP limit, decided before it. Every
--       value is a string: a Lua number turned back into text keeps only 14 digits.
--       2 the body, 3 the headers (bytes when sealed, so not in the JSON).
-- Answers {'duplicate', event id} or {'queued', event id, the event's status, logged, mark,
-- held}, where logged is 0 when an entry could not be appended (the event is stored all the
-- same), mark '' or 'superseded' or 'conflict', held 1 when the event was kept back from
-- delivery; or {'rate_limited' (or 'rate_limited_first'), the gcra answer's fields}: that
-- limit refused and nothing was written. A duplicate is counted in the minute's stats too.
-- Being a write, that also moves this connection's replication offset past the original's,
-- so the WAIT that follows a durable call (store.wait_replicas) covers the original before
-- the duplicate is answered.
local a = cjson.decode(ARGV[1])
-- Both limits are decided at one instant of the server's clock (one TIME for the two).
local now_us = ''
if a.at.first or a.at.limit then
  local t = redis.call('TIME')
  now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
if a.at.first then
  -- The per-IP limit, before the per-source one (the request path's order): a request it
  -- refuses counts against neither the per-source limit nor anything else.
  local r = gcra(KEYS[a.at.first], a.first[1], a.first[2], now_us)
  if r[1] == 0 then return {'rate_limited_first', r[1], r[2], r[3], r[4], r[5]} end
end
if a.at.limit then
  -- Before anything is written (a duplicate counts against the limit too, as a separate
  -- limiter call before this script would have counted it), on the server's clock.
  local r = gcra(KEYS[a.at.limit], a.limit[1], a.limit[2], now_us)
  if r[1] == 0 then return {'rate_limited', r[1], r[2], r[3], r[4], r[5]} end
end
STATUS.held = KEYS[20]
local mode, now = a.mode, a.now
local uid, eid, received_at = a.uid, a.id, a.received_at
local ek, evdk = KEYS[12], KEYS[13]
if mode == 'queued' then
  local d = redis.call('HMGET', KEYS[10], 'st', 'exp', 'eid')
  if d[2] and tonumber(d[2]) > tonumber(now) then
    -- A live sync claim has no event id yet: the claimed event is this one.
    count(KEYS[18], 'duplicate', 1)
    return {'duplicate', d[3] or eid}
  end
  local c = redis.call('HGET', KEYS[11], 'exp')
  if c and tonumber(c) > tonumber(now) then
    count(KEYS[18], 'duplicate', 1)
    return {'duplicate', eid}
  end
end
local nd = #a.dests
local mark, held = nil, false
if a.pay then
  mark = payment(a.pay, a.at.pay, uid, now, received_at, KEYS[a.at.an], a.hh)
  -- Kept back under order: enforce (a sync event was forwarded already: only marked).
  if mark and a.pay.order == 'enforce' and mode == 'queued' then
    nd, held = 0, true
  end
end
-- The event is new (its uid is fresh), so its counters and its status are known before
-- anything is written: they go in with its fields in one write, and nothing is read back.
local state, pending = 'due', nd
if mode == 'sync' then state, pending = 'delivered', 0 end
local status = status_of(nd, pending, 0, mark)
local f, subject = a.fields, nil
for i = 1, #f, 2 do
  if f[i] == 'subject' then subject = f[i + 1] end
end
local nf = #f
f[nf + 1], f[nf + 2], f[nf + 3], f[nf + 4], f[nf + 5], f[nf + 6] = 'n', nd, 'pending', pending,
  'dead', 0
f[nf + 7], f[nf + 8] = 'status', status
if mark then f[nf + 9], f[nf + 10] = 'mark', mark end
if mode == 'sync' then f[#f + 1], f[#f + 2] = 'attempts', nd end
redis.call('HSET', ek, 'body', ARGV[2], 'headers', ARGV[3], unpack(f))
local first = nil
if mode == 'sync' then first = a.started_at end
local nkeys = #a.dests
for j = 1, nd do
  write_delivery(KEYS[20 + j], uid, a.dests[j], a.dids[j], now, state, first)
  if first then redis.call('RPUSH', KEYS[20 + nkeys + j], a.attempt) end
end
if nd > 0 then redis.call('RPUSH', evdk, unpack(a.dids, 1, nd)) end
redis.call('ZADD', EVENTS, received_at, uid)
redis.call('ZADD', KEYS[14], received_at, uid)
redis.call('ZADD', KEYS[15], received_at, uid)
move_status(uid, nil, status, received_at)
-- Dashboard indexes: by type (its key is passed when the event has one), and id and subject
-- prefixes (lex order).
if a.at.type then redis.call('ZADD', KEYS[a.at.type], received_at, uid) end
redis.call('ZADD', KEYS[16], 0, eid .. '\n' .. uid)
if subject then redis.call('ZADD', KEYS[17], 0, subject .. '\n' .. uid) end
if nd == 0 and not held then count(KEYS[18], 'accepted', 1, 'unrouted')
else count(KEYS[18], 'accepted', 1) end
if mode == 'sync' then
  count(KEYS[19], 'delivered', nd, 'lat' .. a.bucket)
  if nd > 0 then
    local an, hh = KEYS[a.at.an], a.hh
    rollup_count(an, hh, 'dv', nd)
    rollup_count(an, hh, 'dl:' .. a.dlbin, nd)
    redis.call('EXPIRE', an, ROLLUP_TTL)
  end
end
-- Every field of the dedupe entry is written (a claim's st and exp, with the event's id), so
-- what an earlier claim left needs no DEL first.
redis.call('HSET', KEYS[10], 'st', 'd', 'exp', a.expires, 'eid', eid)
redis.call('PEXPIRE', KEYS[10], a.ttl)
redis.call('HSET', KEYS[11], 'exp', a.expires, 'uid', uid)
redis.call('PEXPIRE', KEYS[11], a.ttl)
-- The change log last, after every write of the event: an entry that cannot be appended
-- (pcall) loses that live message only, as when it is appended by a call of its own.
local logged = 1
if a.log then
  local changes, tail = KEYS[a.at.log], ',"event_status":"' .. status .. '"}'
  for _, entry in ipairs(a.log) do
    local r = redis.pcall('XADD', changes, 'MAXLEN', '~', a.cap, '*', 'kind', entry[1],
      'data', entry[2] .. tail)
    if type(r) == 'table' and r.err then logged = 0 end
  end
end
local held_flag = 0
if held then held_flag = 1 end
return {'queued', eid, status, logged, mark or '', held_flag}
