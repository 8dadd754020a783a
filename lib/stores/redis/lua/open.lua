-- KEYS[1] clock, KEYS[2] floor. Creates the namespace's clock when it has none, so that the
-- first computation's stamp is not 0 and its versions can be proven (admit.lua); and the floor
-- when it is missing: no version bumped from now on can be lost but by eviction.
if not redis.call('GET', KEYS[1]) then
  redis.call('SET', KEYS[2], next_version(KEYS[1]))
  return 1
end
redis.call('SET', KEYS[2], redis.call('GET', KEYS[1]), 'NX')
return 0
