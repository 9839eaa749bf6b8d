-- acquire.lua — one admission decision for one throttle, atomically.
--
-- Algorithm: GCRA (the virtual-scheduling form of a token bucket) kept twice in one key:
--   tat  the schedule: the theoretical arrival time after every grant *and reservation*.
--        A denied caller reserves the next free slot here, so a backlog is deferred once.
--   sat  the start gate: the same GCRA over admissions that actually start. It is what keeps
--        the bound on *starts*: a reserved task may arrive late (a busy pool, a stalled
--        worker) and would otherwise start bunched with the tasks after it.
-- A start may be moved by up to `inline` (the caller sleeps it out). A claim the gate would
-- hold back longer is bumped: it takes a fresh slot behind the gate and the schedule, so the
-- one late task pays, not every task after it (no cascade, no polling).
-- A value in the past is the same as no value (a full bucket), so the key may expire at
-- max(tat, sat): it lives exactly as long as the bucket needs to refill.
--
-- KEYS[1]  the throttle's state: the string "<tat> <sat>" (microseconds on the Redis clock)
-- ARGV[1]  interval  microseconds per token (ceil(period / count))
-- ARGV[2]  burst     tokens the bucket holds
-- ARGV[3]  cost      tokens this decision takes (1 <= cost <= burst)
-- ARGV[4]  slot      microseconds: the reservation the caller holds; 0 for a fresh request
-- ARGV[5]  horizon   microseconds: a slot further ahead than this is not reserved; < 0: never
-- ARGV[6]  inline    microseconds: a start at most this far ahead is GRANTED (caller sleeps)
--
-- Returns the string "<code> <wait> <slot> <now>", integers (microseconds; one bulk reply is
-- cheaper to carry and parse than an array of four):
--   1 GRANTED   the start is recorded; begin after `wait` (0 <= wait <= inline)
--   2 RESERVED  `slot` is held; come back after `wait` with it (the same slot as the caller's
--               if it came early; a new one if it was bumped)
--   3 DENIED    nothing is held (a claimed slot is given up); try again after `wait`
-- Clock: redis.call('TIME') only; never the caller's.
-- Cost: one TIME, one GET and at most one SET ... PX per decision.

local key = KEYS[1]
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local slot = tonumber(ARGV[4])
local horizon = tonumber(ARGV[5])
local inline = tonumber(ARGV[6])
local max = math.max

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

-- The answer, and what to store (new_tat == nil: nothing changes).
local code, wait, at, new_tat, new_sat

if slot ~= 0 and horizon >= 0 and slot - now > horizon then
  slot = 0  -- no reservation lies that far ahead: a forged or corrupted header, ask afresh
end
if slot ~= 0 then
  local start = max(now, slot, sat - tolerance)
  if slot - now > inline then
    -- Early by the Redis clock (skewed worker clocks): keep the reservation, nothing changes.
    code, wait, at = 2, slot - now, slot
  elseif start - now <= inline then
    code, wait, at, new_tat, new_sat = 1, start - now, slot, tat, max(sat, start) + increment
  end
  -- else bumped: starting this late claim would hold back every start after it.
end

if code == nil then
  -- A fresh slot: the earliest time both the schedule and the start gate allow.
  at = max(now, tat - tolerance, sat - tolerance)
  wait = at - now
  if wait <= inline then
    code, new_tat, new_sat = 1, max(tat, at) + increment, max(sat, at) + increment
  elseif horizon < 0 or wait > horizon then
    code, at = 3, 0
  else
    code, new_tat, new_sat = 2, max(tat, at) + increment, sat
  end
end

if new_tat then
  redis.call('SET', key, string.format('%d %d', new_tat, new_sat),
             'PX', math.ceil((max(new_tat, new_sat) - now) / 1000) + 1)
end
return string.format('%d %d %d %d', code, wait, at, now)
