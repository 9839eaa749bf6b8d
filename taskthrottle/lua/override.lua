-- override.lua — set or remove an operator's override of a throttle's limits.
--
-- acquire.lua reads the control hash's `spec` on every decision, so an override is obeyed by
-- every worker at its next decision, survives worker restarts and lasts until removed.
--
-- KEYS[1]  the throttle's control hash
-- ARGV[1]  the spec ("" removes the override)   ARGV[2]  the limits as the operator wrote them
-- Returns 1 if an override was set or removed, else 0.

local key = KEYS[1]
if ARGV[1] == '' then
  local removed = redis.call('HDEL', key, 'spec', 'text', 'since')
  local pause = tonumber(redis.call('HGET', key, 'pause'))
  if pause then  -- a pause outlives the override only until it ends
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    if pause > now then
      redis.call('PEXPIRE', key, math.ceil((pause - now) / 1000) + 1)
    else
      redis.call('DEL', key)
    end
  end
  return removed > 0 and 1 or 0
end
local t = redis.call('TIME')
redis.call('HSET', key, 'spec', ARGV[1], 'text', ARGV[2], 'since', t[1])
redis.call('PERSIST', key)
return 1
