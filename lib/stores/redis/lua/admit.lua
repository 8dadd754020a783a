-- Run in the slot of the clock and the versions, beside (single Redis: in the same pipeline) or
-- before (Redis Cluster) the SET of the entry in its own slot.
-- KEYS[1] clock, KEYS[2...] the entry's version keys. ARGV[1] its stamp.
-- Returns 1 when the entry may be stored, else 0.
local deps = {}
for i = 2, #KEYS do deps[#deps + 1] = KEYS[i] end
if admit(deps, tonumber(ARGV[1]), KEYS[1]) then return 1 end
return 0
