-- daemon_http.lua -- wrk's script for bench/daemon.sh: every connection asks
-- in turn for /metrics, /api/v1/bitlengths and /api/v1/workers (the whole
-- job: every series, every worker), pausing PAUSE_MS between two requests
-- (env DAEMON_BENCH_HTTP_PAUSE_MS; 0: as fast as sfpd answers). At the end
-- it prints "key value" lines for the script.
local paths = {"/metrics", "/api/v1/bitlengths", "/api/v1/workers"}
local next_path = 0
local pause = tonumber(os.getenv("DAEMON_BENCH_HTTP_PAUSE_MS") or "0") or 0

request = function()
	next_path = next_path % #paths + 1
	return wrk.format("GET", paths[next_path])
end

if pause > 0 then
	delay = function()
		return pause
	end
end

done = function(summary, latency, requests)
	local e = summary.errors
	local s = summary.duration / 1e6
	io.write(string.format("http_requests %d\n", summary.requests))
	io.write(string.format("http_seconds %.1f\n", s))
	io.write(string.format("http_requests_per_s %.1f\n", summary.requests / s))
	io.write(string.format("http_bytes %d\n", summary.bytes))
	io.write(string.format("http_latency_ms_p50 %.3f\n", latency:percentile(50) / 1000))
	io.write(string.format("http_latency_ms_p99 %.3f\n", latency:percentile(99) / 1000))
	io.write(string.format("http_latency_ms_max %.3f\n", latency.max / 1000))
	io.write(string.format("http_errors %d\n", e.connect + e.read + e.write + e.timeout))
	io.write(string.format("http_non_2xx %d\n", e.status))
end
