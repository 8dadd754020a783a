-- KEYS[1] clock, KEYS[2...] version keys: each moves past every stamp handed out so far.
-- ARGV[1] a pub/sub channel ("" for none) told "<version> <key>..." so other processes can drop
-- what they hold in memory for those keys.
local v = next_version(KEYS[1])
for i = 2, #KEYS do redis.call('SET', KEYS[i], v) end
if ARGV[1] ~= '' then
  redis.call('PUBLISH', ARGV[1], v .. ' ' .. table.concat(KEYS, ' ', 2))
end
return v
