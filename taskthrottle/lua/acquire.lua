-- acquire.lua — one admission decision for one throttle, atomically.
--
-- Algorithm: GCRA (the virtual-scheduling form of a token bucket) kept twice in one key:
--   tat  the schedule: the theoretical arrival time after every grant *and reservation*.
--        A denied caller reserves the next free slot here, so a backlog is deferred once.
--   sat  the start gate: the same GCRA over admissions that actually start. Reserved tasks
--        may arrive late and bunched (a stalled worker, a broker hiccup); the gate keeps the
--        starts themselves within burst + rate, whatever the schedule promised.
-- A value in the past is the same as no value (a full bucket), so the key may expire at
-- max(tat, sat): it lives exactly as long as the bucket needs to refill.
--
-- KEYS[1]  the throttle's state: the string "<tat> <sat>" (microseconds on the Redis clock)
-- ARGV[1]  interval  microseconds per token (ceil(period / count))
-- ARGV[2]  burst     tokens the bucket holds
-- ARGV[3]  cost      tokens this decision takes (1 <= cost <= burst)
-- ARGV[4]  slot      microseconds: the reservation the caller holds; 0 for a fresh request
-- ARGV[5]  horizon   microseconds: a slot further ahead than this is not reserved; < 0: never reserve
-- ARGV[6]  inline    microseconds: a start at most this far ahead is GRANTED (caller sleeps it out)
--
-- Returns the string "<code> <wait> <slot> <now>", integers (microseconds; one bulk reply is
-- cheaper to carry and parse than an array of four):
--   1 GRANTED   the start is recorded; begin after `wait` (0 <= wait <= inline)
--   2 RESERVED  `slot` is held on the schedule; come back after `wait` with it
--   3 DENIED    nothing taken; try again after `wait`
--   4 GATED     `slot` is kept but the start gate is behind; come back after `wait`
-- Clock: redis.call('TIME') only; never the caller's.
-- Cost: one TIME, one GET and at most one SET ... PX per decision (the hot path is 3 calls).

local key = KEYS[1]
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local slot = tonumber(ARGV[4])
local horizon = tonumber(ARGV[5])
local inline = tonumber(ARGV[6])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local tat, sat = now, now
local stored = redis.call('GET', key)
if stored then
  local a, b = string.match(stored, '^(%d+) (%d+)$')
  tat, sat = tonumber(a), tonumber(b)
end
-- How far ahead of a token's theoretical arrival a conforming admission may come.
local tolerance = (burst - cost) * interval
local increment = cost * interval
-- new_tat, new_sat: what to store (nil: nothing changes)
local new_tat, new_sat, code, wait

if slot == 0 then
  local earliest = math.max(now, tat - tolerance)
  if earliest - now > inline and (horizon < 0 or earliest - now > horizon) then
    return string.format('3 %d 0 %d', earliest - now, now)
  end
  new_tat = math.max(tat, earliest) + increment
  slot = earliest
  if earliest - now > inline then
    new_sat, code, wait = sat, 2, earliest - now
  end
elseif slot - now > inline then
  -- Arrived early by the Redis clock (skewed worker clocks): keep the reservation.
  return string.format('2 %d %d %d', slot - now, slot, now)
end

if code == nil then
  local start = math.max(now, slot, sat - tolerance)
  if start - now > inline then
    code, wait = 4, start - now
    if new_tat then new_sat = sat end
  else
    code, wait = 1, start - now
    new_tat, new_sat = new_tat or tat, math.max(sat, start) + increment
  end
end

if new_tat then
  redis.call('SET', key, string.format('%d %d', new_tat, new_sat),
             'PX', math.ceil((math.max(new_tat, new_sat) - now) / 1000) + 1)
end
return string.format('%d %d %d %d', code, wait, slot, now)
