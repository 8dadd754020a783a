-- Shared by the scripts below (prepended to each). The clock key holds the last version handed
-- out; a stamp is its value when a computation starts (a plain GET, no script), so any version
-- handed out later is above every stamp taken before. Versions also stay above the server's
-- clock in microseconds, so they keep moving forward when Redis restarts empty and the clock key
-- starts again.
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- A version greater than every stamp handed out so far; recorded as the new clock.
local function next_version(clock_key)
  local clock = tonumber(redis.call('GET', clock_key) or '0') + 1
  local now = server_now()
  if clock > now then now = clock end
  local v = string.format('%d', now)
  redis.call('SET', clock_key, v)
  return v
end
