-- Run in the slot of the clock and the versions once an entry has been read, when probe.lua
-- could not be sent with it (Redis Cluster, or a key whose versions this process did not know).
-- KEYS[1] clock, KEYS[2...] the version keys the entry names. ARGV[1] the entry's stamp.
-- Returns 0 when the entry is current, otherwise the current stamp.
local deps = {}
for i = 2, #KEYS do deps[#deps + 1] = KEYS[i] end
if versions_current(deps, tonumber(ARGV[1])) then return 0 end
return current_stamp(KEYS[1])
