-- Append entries to the change log the live stream reads: a capped stream whose ids order
-- the entries (a client resumes from one with Last-Event-ID). Called after the script that
-- made the change, never from it (see gateway/store/redis/__init__.py, "Change log"); accept.lua
-- appends its own entries when the store has one partition.
-- After a delivery attempt the same call keeps the store's backoff marks (a hash under the
-- log's hash tag, whose slot the partitions' scripts cannot reach): a retry marks its
-- destination, a success takes the mark.
-- KEYS[1] the stream, KEYS[2] the backoff marks. ARGV: 1 the cap, 2 '' or 'mark' or 'take',
-- 3 the destination (with 'mark' or 'take'), then kind and JSON data for each entry.
-- Answers 1 when a success took a mark (the caller releases the backlog), else 0.
local stream = KEYS[1]
for i = 4, #ARGV, 2 do
  redis.call('XADD', stream, 'MAXLEN', '~', ARGV[1], '*', 'kind', ARGV[i], 'data', ARGV[i + 1])
end
if ARGV[2] == 'mark' then
  redis.call('HSET', KEYS[2], ARGV[3], 1)
elseif ARGV[2] == 'take' then
  return redis.call('HDEL', KEYS[2], ARGV[3])
end
return 0
