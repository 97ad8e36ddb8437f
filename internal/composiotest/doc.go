// Package composiotest owns the fake Composio: an in-memory stand-in for the
// Composio API (https://backend.composio.dev) that speaks the wire contract of
// the real one closely enough for the real SDKs (@composio/core 0.8.x and
// 0.21.x) to run against it, with faults and a request log for tests.
//
// Use it in-process, in a test, with package fakeserver (kept apart, so that
// this package imports neither testing nor net/http/httptest):
//
//	fake, srv := fakeserver.New(t)
//	fake.AddAccount(composiotest.Account{Credential: "key_1", UserID: "u1", AuthConfigID: "ac_1"})
//	// point the code under test at srv.URL, then look at fake.Requests()
//
// or serve the Fake that New returns (an http.Handler) with a plain
// http.Server, as cmd/proxy -demo does, or run it as a process (go build
// ./cmd/fakecomposio), which prints {"msg":"listening","addr":"127.0.0.1:PORT"}
// on stdout and is driven through the control API below.
//
// # What it serves
//
// Every route exists under /api/v3, /api/v3.1 and any /api/v3.N:
//
//	POST   .../connected_accounts/link          link(): 201 {link_token, redirect_url, expires_at, connected_account_id}
//	POST   .../connected_accounts               legacy create, initiate(): 201 {id, connectionData, status, redirect_url, ...}
//	GET    .../connected_accounts               list, filters below
//	GET    .../connected_accounts/{id}          one account
//	DELETE .../connected_accounts/{id}          delete
//	POST   .../tool_router/session              create a Tool Router session: 201
//	GET    .../tool_router/session/{id}         the session
//	PATCH  .../tool_router/session/{id}         update (workbench: null clears the override): 200
//	POST   .../tool_router/session/{id}/link    session.authorize(toolkit): 201
//
// Anything else is a 404 in Composio's error envelope. Links and creates make
// an INITIATED account; it turns ACTIVE only when a test says so (Complete,
// SetStatus or POST /_fake/accounts/{id}/status), the way a user finishing
// OAuth would.
//
// State is partitioned by credential: each credential value is one project
// (see ProjectOf). A request needs exactly one of x-api-key, x-user-api-key
// (with x-org-id / x-project-id) or x-org-api-key, or it gets a 401. A
// credential that starts with "scoped_nolist_" may do everything but list
// (403 on the list route), like a scoped key allowed to link only.
//
// List filters follow the SDKs' encoding: user_ids, auth_config_ids,
// statuses, toolkit_slugs and connected_account_ids are each ONE parameter,
// comma-joined (user_ids=a%2Cb). A repeated key (user_ids=a&user_ids=b) or a
// bracketed one (user_ids[]=a) is recorded but filters nothing, so a test can
// tell a wrong encoding by its result. account_type is PRIVATE (the default
// when omitted), SHARED or ALL. limit defaults to 20 (at most 1000); cursor is
// opaque and comes from next_cursor. Items are newest first
// (order_direction=asc reverses); order_by is ignored.
//
// Every answer carries X-RateLimit, X-RateLimit-Remaining (counting down per
// credential in a one-minute window, never below 0) and
// X-RateLimit-Window-Size: 60s, and echoes an inbound X-Request-Id.
// WithRateLimitEnforced makes a spent window answer 429 with Retry-After.
//
// # Faults
//
// A Fault, set per route (RouteList, RouteLink, RouteCreate, RouteGet,
// RouteDelete, RouteSessionCreate, RouteSessionUpdate, RouteSessionGet,
// RouteSessionLink, or RouteAny for every Composio route), adds latency, or
// answers a fixed status and body, a body that is not JSON, a truncated JSON
// body (the request took effect), a reset connection, or a hang until the
// client goes away. Times limits it to the next N requests. On the list
// route, cursor_null_after misreports pagination (next_cursor: null once a
// page reaches that many items, total_items still counting every match). A route's own
// fault wins over the RouteAny one. Faults play before the credential check
// and every faulted request is still logged and charged to the rate limit.
//
// # Control API
//
// Under /_fake/ (never rate limited, never in the request log):
//
//	GET    /_fake/accounts[?credential=K]   accounts, oldest first (JSON array of Account)
//	POST   /_fake/accounts                  add one Account (JSON); 201 with the stored account
//	POST   /_fake/accounts/bulk             add many accounts at once (JSON Seed); 201 {"added": N}
//	DELETE /_fake/accounts                  remove every account
//	POST   /_fake/accounts/{id}/status      {"status":"ACTIVE"}; 200 with the account, 404 if unknown
//	GET    /_fake/requests[?route=R&method=M] the request log (JSON array of Request; body as text)
//	DELETE /_fake/requests                  empty the request log and its counts
//	GET    /_fake/counts                    {"GET list": 3, ...}: requests per method and route
//	PUT    /_fake/faults/{route}            set a Fault (JSON, e.g. {"status":429,"headers":{"Retry-After":"2"},"times":1})
//	DELETE /_fake/faults[/{route}]          clear faults
//	GET    /_fake/sessions                  Tool Router sessions with their create and last bodies
//	POST   /_fake/sessions                  seed one (SessionSeed JSON: id, credential, create_body); 201 with it
//	POST   /_fake/reset                     forget everything
//
// Fault JSON members: latency ("250ms"), status, body, headers, not_json,
// truncate, reset, hang, times.
//
// The request log keeps credential headers as they arrived, because tests
// check that they were forwarded unchanged: the fake is for test keys only.
package composiotest
