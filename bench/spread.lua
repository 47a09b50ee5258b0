-- wrk script: the shared 1 KiB JSON POST, each request to the next of eight webhooks
-- (uuids ...8d10 to ...8d17, created by bench/ab.sh with LOAD=spread): webhooks whose messages
-- interleave, the worst case for the per-webhook spans message.list walks.
local head = '{"event":"push","delivery":"bench","ref":"refs/heads/main",'
  .. '"repository":{"id":123456,"full_name":"acme/widgets","private":false},'
  .. '"sender":{"login":"bench-bot","id":42},"padding":"'
local tail = '"}'
local body = head .. string.rep("x", 1024 - #head - #tail) .. tail
local headers = { ["Content-Type"] = "application/json", ["X-Bench-Event"] = "push" }
local n = 0
request = function()
  n = n + 1
  local path = "/api/v3/command/webhook.receive?uuid=0193e7c2-6f1a-7c3e-9b7d-2f4c1a9e8d1" .. (n % 8)
  return wrk.format("POST", path, headers, body)
end
