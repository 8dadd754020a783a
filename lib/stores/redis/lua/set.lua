-- KEYS[1] entry, KEYS[2] clock, KEYS[3...] the entry's version keys.
-- ARGV[1] stamp, ARGV[2] ttl in seconds, ARGV[3] the entry (header and payload).
-- Stores the entry only if no version moved past the stamp. A missing version (never set, or
-- lost to eviction or a restart) may have been bumped after the stamp: it is created anew and
-- the entry refused, so the next computation is stamped after it.
local stamp = tonumber(ARGV[1])
local current = true
for i = 3, #KEYS do
  local v = tonumber(redis.call('GET', KEYS[i]) or '')
  if v == nil then
    redis.call('SET', KEYS[i], next_version(KEYS[2]))
    current = false
  elseif v > stamp then
    current = false
  end
end
if not current then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[2])
return 1
