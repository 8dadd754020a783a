-- KEYS[1] entry, KEYS[2] clock. ARGV[1] the client's key prefix, for the version keys named in
-- the entry's header ("ac1 <stamp> <version key>...\n<payload>").
-- Returns the entry when every version it names exists and is not newer than its stamp;
-- otherwise deletes it and returns the current stamp (a number).
-- It reads keys of two slots, so it serves a single Redis; on Redis Cluster, check.lua does the
-- version half.
local entry = redis.call('GET', KEYS[1])
if entry then
  local nl = string.find(entry, '\n', 1, true)
  if nl and string.sub(entry, 1, 4) == 'ac1 ' then
    local stamp = nil
    local deps = {}
    for word in string.gmatch(string.sub(entry, 5, nl - 1), '%S+') do
      if stamp == nil then stamp = tonumber(word) else deps[#deps + 1] = ARGV[1] .. word end
    end
    if stamp and versions_current(deps, stamp) then return entry end
  end
  redis.call('DEL', KEYS[1])
end
return current_stamp(KEYS[2])
