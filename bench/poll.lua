-- wrk script for the hot-path benchmark: cycles through users, each with its own token and
-- ETag, and counts answers by status so the run proves which path it measured.
-- usage: wrk ... -s bench/poll.lua URL -- USERS_FILE MODE
--   USERS_FILE: one "user_id token etag" line per user; MODE: "304" (send If-None-Match) or "200"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  users = {}
  for line in io.lines(args[1]) do
    local id, token, etag = line:match("(%S+) (%S+) (%S+)")
    table.insert(users, {id = id, token = token, etag = etag})
  end
  conditional = args[2] == "304"
  index = math.random(#users)
  n200, n304, nother = 0, 0, 0
end

function request()
  index = index % #users + 1
  local user = users[index]
  local headers = {Authorization = "Bearer " .. user.token}
  if conditional then
    headers["If-None-Match"] = '"' .. user.etag .. '"'
  end
  return wrk.format("GET", "/v1/users/" .. user.id .. "/unread-counts", headers)
end

function response(status, headers, body)
  if status == 200 then
    n200 = n200 + 1
  elseif status == 304 then
    n304 = n304 + 1
  else
    nother = nother + 1
  end
end

function done(summary, latency, requests)
  local s200, s304, sother = 0, 0, 0
  for _, thread in ipairs(threads) do
    s200 = s200 + thread:get("n200")
    s304 = s304 + thread:get("n304")
    sother = sother + thread:get("nother")
  end
  local errors = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "s200": %d, "s304": %d, "sother": %d, ' ..
    '"errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, s200, s304, sother,
    errors.connect + errors.read + errors.write + errors.status + errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
