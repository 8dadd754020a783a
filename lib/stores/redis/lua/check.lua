-- Redis Cluster's half of lookup.lua, run in the slot of the clock and the versions once the
-- entry has been read from its own slot.
-- KEYS[1] clock, KEYS[2...] the version keys the entry names. ARGV[1] the entry's stamp.
-- Returns 0 when the entry is current, otherwise the current stamp.
local deps = {}
for i = 2, #KEYS do deps[#deps + 1] = KEYS[i] end
if versions_current(deps, tonumber(ARGV[1])) then return 0 end
return current_stamp(KEYS[1])
