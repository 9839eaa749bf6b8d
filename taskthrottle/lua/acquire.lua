-- acquire.lua — one admission decision for one throttle, atomically.
--
-- Algorithm: GCRA (the virtual-scheduling form of a token bucket) kept twice in one hash:
--   tat  the schedule: the theoretical arrival time after every grant *and reservation*.
--        A denied caller reserves the next free slot here, so a backlog is deferred once.
--   sat  the start gate: the same GCRA over admissions that actually start. Reserved tasks
--        may arrive late and bunched (a stalled worker, a broker hiccup); the gate keeps the
--        starts themselves within burst + rate, whatever the schedule promised.
-- A value in the past is the same as no value (a full bucket), so the key may expire at
-- max(tat, sat): it lives exactly as long as the bucket needs to refill.
--
-- KEYS[1]  the throttle's hash (fields tat, sat: microseconds on the Redis clock)
-- ARGV[1]  interval  microseconds per token (ceil(period / count))
-- ARGV[2]  burst     tokens the bucket holds
-- ARGV[3]  cost      tokens this decision takes (1 <= cost <= burst)
-- ARGV[4]  slot      microseconds: the reservation the caller holds; 0 for a fresh request
-- ARGV[5]  horizon   microseconds: a slot further ahead than this is not reserved; < 0: never reserve
-- ARGV[6]  inline    microseconds: a start at most this far ahead is GRANTED (caller sleeps it out)
--
-- Returns {code, wait, slot, now}, all integers (microseconds):
--   1 GRANTED   the start is recorded; begin after `wait` (0 <= wait <= inline)
--   2 RESERVED  `slot` is held on the schedule; come back after `wait` with it
--   3 DENIED    nothing taken; try again after `wait`
--   4 GATED     `slot` is kept but the start gate is behind; come back after `wait`
-- Clock: redis.call('TIME') only; never the caller's.

local key = KEYS[1]
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local slot = tonumber(ARGV[4])
local horizon = tonumber(ARGV[5])
local inline = tonumber(ARGV[6])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local state = redis.call('HMGET', key, 'tat', 'sat')
local tat = tonumber(state[1]) or now
local sat = tonumber(state[2]) or now
-- How far ahead of a token's theoretical arrival a conforming admission may come.
local tolerance = (burst - cost) * interval
local increment = cost * interval

local function save(new_tat, new_sat)
  redis.call('HSET', key, 'tat', new_tat, 'sat', new_sat)
  redis.call('PEXPIRE', key, math.ceil((math.max(new_tat, new_sat) - now) / 1000) + 1)
end

local schedule_moved = false
if slot == 0 then
  local earliest = math.max(now, tat - tolerance)
  if earliest - now > inline and (horizon < 0 or earliest - now > horizon) then
    return {3, earliest - now, 0, now}
  end
  tat = math.max(tat, earliest) + increment
  schedule_moved = true
  slot = earliest
  if earliest - now > inline then
    save(tat, sat)
    return {2, earliest - now, slot, now}
  end
elseif slot - now > inline then
  -- Arrived early by the Redis clock (skewed worker clocks): keep the reservation.
  return {2, slot - now, slot, now}
end

local start = math.max(now, slot, sat - tolerance)
if start - now > inline then
  if schedule_moved then save(tat, sat) end
  return {4, start - now, slot, now}
end
save(tat, math.max(sat, start) + increment)
return {1, start - now, slot, now}
