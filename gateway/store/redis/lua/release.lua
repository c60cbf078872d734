-- release (sync mode): drop a claim, never a key already done. KEYS[1] dedupe hash.
if redis.call('HGET', KEYS[1], 'st') == 'p' then
  redis.call('DEL', KEYS[1])
end
return 1
