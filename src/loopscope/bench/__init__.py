"""``loopscope bench``: what one request/response costs on each loopback path (servers, runner, reference tools, plots)."""
