-- replay: new deliveries of an existing event, due now (dedupe is not consulted).
-- KEYS: 1-9 shared, 10 event hash, 11 its delivery list, then nd delivery hashes, then the
--       held events' index (a held payment event replayed is held no more).
-- ARGV: 1 now, 2 uid, 3 nd, nd destinations, nd delivery ids.
local ek, evdk = KEYS[10], KEYS[11]
STATUS.held = KEYS[#KEYS]
if redis.call('EXISTS', ek) == 0 then return 0 end
local nd = tonumber(ARGV[3])
for j = 1, nd do
  add_delivery(ek, evdk, KEYS[11 + j], ARGV[2], ARGV[3 + j], ARGV[3 + nd + j], ARGV[1], 'due')
end
refresh_status(ek, ARGV[2])
return 1
