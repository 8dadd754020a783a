-- Shared by the scripts below (prepended to each, after clock.lua): the rule that decides whether
-- an entry stamped `stamp` is still current. A missing version (never set, or lost to eviction or
-- a restart) may have been bumped after the stamp, so it counts as newer: the entry is outdated.
local function versions_current(version_keys, stamp)
  if #version_keys == 0 then return true end
  local versions = redis.call('MGET', unpack(version_keys))
  for i = 1, #versions do
    local v = tonumber(versions[i] or '')
    if v == nil or v > stamp then return false end
  end
  return true
end

-- Whether an entry stamped `stamp` may be stored. A missing version is created anew, above every
-- stamp handed out so far, and the entry refused, so the next computation is stamped after it.
local function admit(version_keys, stamp, clock_key)
  local current = true
  for i = 1, #version_keys do
    local v = tonumber(redis.call('GET', version_keys[i]) or '')
    if v == nil then
      redis.call('SET', version_keys[i], next_version(clock_key))
      current = false
    elseif v > stamp then
      current = false
    end
  end
  return current
end
