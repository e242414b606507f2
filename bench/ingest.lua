-- wrk script for the ingest phases: every request is a POST of a ~500-byte JSON body with
-- a unique event id (in X-Event-Id and in the body's "id"), so no request is deduplicated.
--
-- Usage: wrk -t1 -c64 -d10s -s bench/ingest.lua http://127.0.0.1:PORT/webhook -- RUNTAG
-- RUNTAG keeps ids unique across phases that share a database.
--
-- At the end it prints one machine-readable line that loadbench parses:
--   WRK_RESULT sent=… completed=… non2xx=… socket_errors=… duration_us=… rps=… p50_us=… p99_us=… p999_us=… max_us=…
-- "completed" counts responses wrk read; "sent" counts requests written, so
-- sent - completed is what was still in flight when wrk stopped (those may be stored
-- without wrk ever seeing the 200).

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

local tag = "run"
local prefix
-- Global, not local: done() reads it from each thread with thread:get("sent").
sent = 0
-- The body is built from a fixed head and tail around the id, so the per-request cost on
-- the client is one string concatenation: wrk shares the 2 cores with the server.
local head = '{"id":"'
local tail = '","type":"order.created","api_version":"2024-06-01","created":1718000000,'
  .. '"livemode":false,"data":{"order":{"number":"SO-000123","currency":"EUR","total":12999,'
  .. '"customer":{"email":"jane.doe@example.com","name":"Jane Doe","locale":"de-DE"},'
  .. '"lines":[{"sku":"WIDGET-RED-42","qty":2,"unit_price":4999},'
  .. '{"sku":"GADGET-BLUE-7","qty":1,"unit_price":3001}],'
  .. '"shipping":{"method":"standard","address":{"line1":"Musterstrasse 1","city":"Berlin",'
  .. '"postal_code":"10115","country":"DE"}}},"note":"benchmark payload padding ........"}}'

function init(args)
  if args[1] ~= nil then
    tag = args[1]
  end
  prefix = "bench-" .. tag .. "-t" .. tid .. "-"
end

function request()
  sent = sent + 1
  local id = prefix .. sent
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["X-Event-Id"] = id,
  }, head .. id .. tail)
end

function done(summary, latency, requests)
  local total_sent = 0
  for _, t in ipairs(threads) do
    total_sent = total_sent + (t:get("sent") or 0)
  end
  local e = summary.errors
  local socket_errors = e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    "WRK_RESULT sent=%d completed=%d non2xx=%d socket_errors=%d duration_us=%d rps=%.1f "
      .. "p50_us=%d p99_us=%d p999_us=%d max_us=%d\n",
    total_sent, summary.requests, e.status, socket_errors, summary.duration,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
