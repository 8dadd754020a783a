-- KEYS[1] clock, KEYS[2...] version keys: each moves past every stamp handed out so far.
local v = next_version(KEYS[1])
for i = 2, #KEYS do redis.call('SET', KEYS[i], v) end
return v
