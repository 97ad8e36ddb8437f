-- Pass-through GET: a toolkit listing, as an SDK sends it.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

wrk.method = "GET"
wrk.path = "/api/v3/toolkits?limit=5"
wrk.headers["x-api-key"] = "bench-key"
wrk.headers["user-agent"] = "Composio/JS 0.8.1"
