-- Pass-through POST: a tool execution with a small JSON body.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

wrk.method = "POST"
wrk.path = "/api/v3/tools/execute/GITHUB_GET_A_REPOSITORY"
wrk.headers["x-api-key"] = "bench-key"
wrk.headers["user-agent"] = "Composio/JS 0.8.1"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"arguments":{"owner":"composio","repo":"composio"},"user_id":"user_123","version":"20250909_00"}'
