-- KEYS[1] clock, KEYS[2...] an entry's version keys. ARGV[1] its stamp.
-- Returns 1 when the entry may be stored: no version moved past its stamp. A missing version
-- (never set, or lost to eviction or a restart) may have been bumped after the stamp, so it is
-- created anew, above every stamp handed out so far, and the entry refused: the next computation
-- is stamped after it.
-- Run in the slot of the clock and the versions, beside (single Redis: in the same pipeline) or
-- before (Redis Cluster) the SET of the entry in its own slot. Reads check the versions again:
-- admit only keeps outdated entries out and creates missing versions.
local stamp = tonumber(ARGV[1])
local current = 1
-- Without a clock (evicted, or never bumped), every stamp reads 0 and nothing could be admitted.
if not redis.call('GET', KEYS[1]) then
  next_version(KEYS[1])
  current = 0
end
for i = 2, #KEYS do
  local v = tonumber(redis.call('GET', KEYS[i]) or '')
  if v == nil then
    redis.call('SET', KEYS[i], next_version(KEYS[1]))
    current = 0
  elseif v > stamp then
    current = 0
  end
end
return current
