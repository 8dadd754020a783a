-- KEYS[1] entry, KEYS[2] clock, KEYS[3...] the entry's version keys.
-- ARGV[1] stamp, ARGV[2] ttl in seconds, ARGV[3] the entry (header and payload).
-- Stores the entry only if no version moved past the stamp (see admit). It writes keys of two
-- slots, so it serves a single Redis; on Redis Cluster, admit.lua then a SET do its work.
local deps = {}
for i = 3, #KEYS do deps[#deps + 1] = KEYS[i] end
if not admit(deps, tonumber(ARGV[1]), KEYS[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[2])
return 1
