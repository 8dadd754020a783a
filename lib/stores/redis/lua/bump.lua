-- KEYS[1] clock, KEYS[2...] version keys: each moves past every stamp handed out so far, and so
-- does the table version guarding each finer one (see clock.lua).
-- ARGV[1] a pub/sub channel ("" for none) told "<version> <key>..." so other processes can drop
-- what they hold in memory for those keys. ARGV[2] seconds a bumped row version lives: an entry
-- stamped before the bump finds it, or finds it gone and its guard above its stamp.
local v = next_version(KEYS[1])
local row_ttl = tonumber(ARGV[2])
local told = {}
local seen = {}
local function set(key)
  if seen[key] then return end
  seen[key] = true
  if expires(key) then
    redis.call('SET', key, v, 'EX', row_ttl)
  else
    redis.call('SET', key, v)
  end
  told[#told + 1] = key
end
for i = 2, #KEYS do
  set(KEYS[i])
  local guard = guard_of(KEYS[i])
  if guard then set(guard) end
end
if ARGV[1] ~= '' then
  redis.call('PUBLISH', ARGV[1], v .. ' ' .. table.concat(told, ' '))
end
return v
