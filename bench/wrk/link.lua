-- Guarded link: POST /api/v3/connected_accounts/link for users cycling over
-- 10,000 ids, so concurrent requests rarely wait on the same per-key lock and
-- the pending-link leases stay bounded. The auth config id is the script's
-- first argument: the tiny upstream lists one ACTIVE account (409) when it
-- starts with "ac_active", none (forwarded, 201) otherwise.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local ac = "ac_bench"
local n = 0
local headers = {
  ["x-api-key"] = "bench-key",
  ["user-agent"] = "Composio/JS 0.8.1",
  ["content-type"] = "application/json",
}

function init(args)
  if args[1] then ac = args[1] end
end

function request()
  n = n + 1
  local body = '{"auth_config_id":"' .. ac .. '","user_id":"user_' .. (n % 10000) ..
    '","callback_url":"https://app.example/cb","alias":"work"}'
  return wrk.format("POST", "/api/v3/connected_accounts/link", headers, body)
end
