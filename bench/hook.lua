-- wrk: POST the body in $BENCH_BODY to the hook URL, counting answers by status class.
local file = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
