-- KEYS[1] clock, KEYS[2] floor, KEYS[3...] an entry's version keys. ARGV[1] its stamp, ARGV[2]
-- its ttl in seconds.
-- Returns 1 when the entry may be stored: no version moved past its stamp. Reads check the
-- versions again, so admit only keeps outdated entries out, creates missing versions, and makes
-- row versions outlive the entry (EXPIRE ... GT).
-- A missing version (never bumped, expired, or lost to eviction or a restart) is created at a
-- value proven to be at least every bump it may have had, and the entry is admitted when that
-- value is not above its stamp:
--   * its guard's value: the table version for a finer key (bumped with every one of them), the
--     clock for a table-level key (moved by every bump; recreated above every earlier stamp);
--   * or, for keys that cannot be evicted (they carry no ttl, and Redis evicts nothing or only
--     keys with a ttl), the floor: the clock when it was last created, since no version bumped
--     after that was lost.
-- A stamp above the clock comes from a clock this Redis no longer has (a restart from an older
-- snapshot): refused.
local stamp = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local clock = tonumber(redis.call('GET', KEYS[1]) or '')
if not clock then
  redis.call('SET', KEYS[2], next_version(KEYS[1]))
  return 0
end
if clock < stamp then return 0 end

local keeps_untimed
local function untimed_keys_kept()
  if keeps_untimed == nil then
    local ok, info = pcall(redis.call, 'INFO', 'memory')
    keeps_untimed = false
    if ok then
      local limit = tonumber(string.match(info, 'maxmemory:(%d+)'))
      local policy = string.match(info, 'maxmemory_policy:([%w%-]+)')
      keeps_untimed = limit == 0 or policy == 'noeviction' or (policy ~= nil and string.sub(policy, 1, 9) == 'volatile-')
    end
  end
  return keeps_untimed
end

local function recreate(key)
  local guard = guard_of(key)
  local value
  if guard then
    value = tonumber(redis.call('GET', guard) or '') or recreate(guard)
  else
    value = clock
  end
  if value > stamp and not expires(key) then
    local floor = tonumber(redis.call('GET', KEYS[2]) or '')
    if floor and floor <= stamp and untimed_keys_kept() then value = floor end
  end
  if expires(key) then
    redis.call('SET', key, string.format('%d', value), 'EX', ttl)
  else
    redis.call('SET', key, string.format('%d', value))
  end
  return value
end

local current = 1
for i = 3, #KEYS do
  local key = KEYS[i]
  local v = tonumber(redis.call('GET', key) or '') or recreate(key)
  if v > stamp then
    current = 0
  elseif expires(key) then
    redis.call('EXPIRE', key, ttl, 'GT')
  end
end
return current
