-- Append entries to the change log the live stream reads: a capped stream whose ids order
-- the entries (a client resumes from one with Last-Event-ID). Called after the script that
-- made the change, never from it (see gateway/store/redis.py, "Change log"); accept.lua
-- appends its own entries when the store has one partition.
-- KEYS[1] the stream. ARGV: 1 the cap, then kind and JSON data for each entry.
local stream = KEYS[1]
for i = 2, #ARGV, 2 do
  redis.call('XADD', stream, 'MAXLEN', '~', ARGV[1], '*', 'kind', ARGV[i], 'data', ARGV[i + 1])
end
return 1
