-- Shared by the scripts below (prepended to each). The clock key holds the last version handed
-- out; a stamp is its value when a computation starts (a plain GET, no script), so any version
-- handed out later is above every stamp taken before. Versions also stay above the server's
-- clock in microseconds, so they keep moving forward when Redis restarts empty and the clock key
-- starts again.
--
-- Version keys, after the namespace's version prefix and database scope:
--   "<table>"              any write to the table (what table-wide readers depend on)
--   "<table>#<suffix>"     a finer version of the table: rows unknown ("#*"), a column ("#col",
--                          "#col!", "#col~") or rows by value ("#col=value", the only kind that
--                          expires). Whenever one is bumped, "<table>" is bumped with it, in the
--                          same script: "<table>" is the guard of its finer versions.
--   "*"                    every entry of the database
-- The floor key ("<clock>:floor") holds the clock's value when it was last created: no version
-- bumped after it was lost, except by eviction.
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

-- The table version that guards a finer version key, or nil for a table-level key.
local function guard_of(key)
  local at = string.find(key, '#', 1, true)
  if at then return string.sub(key, 1, at - 1) end
  return nil
end

-- Versions of rows by value expire; every other version lives until deleted.
local function expires(key)
  local at = string.find(key, '#', 1, true)
  return at ~= nil and string.find(key, '=', at, true) ~= nil
end
