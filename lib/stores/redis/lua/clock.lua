-- Shared by the scripts below (prepended to each). Stamps and versions are microseconds of the
-- Redis server's clock, kept strictly increasing by the clock key, so they keep moving forward
-- even after Redis restarts empty.
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- The stamp of a value whose computation starts now: no version bumped later can be below it.
-- It is recorded as the clock, so that holds even if the server's clock steps backwards.
local function current_stamp(clock_key)
  local clock = tonumber(redis.call('GET', clock_key) or '0')
  local now = server_now()
  if clock >= now then return clock end
  redis.call('SET', clock_key, string.format('%d', now))
  return now
end

-- A version greater than every stamp handed out so far; recorded as the new clock.
local function next_version(clock_key)
  local clock = tonumber(redis.call('GET', clock_key) or '0') + 1
  local now = server_now() + 1
  if clock > now then now = clock end
  local v = string.format('%d', now)
  redis.call('SET', clock_key, v)
  return v
end
