-- KEYS[1] clock, KEYS[2...] the version keys an entry is expected to name.
-- Returns { current stamp, version or false for each key }. Sent in one pipeline after the GET of
-- the entry, it reads the versions after the entry was read: since versions only move forward,
-- versions no newer than the entry's stamp mean the entry is current now. The entry itself never
-- passes through Lua, which would copy it twice.
local out = { current_stamp(KEYS[1]) }
for i = 2, #KEYS do out[i] = redis.call('GET', KEYS[i]) end
return out
