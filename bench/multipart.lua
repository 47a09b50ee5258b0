-- wrk script: POST a multipart/form-data body with three 10 KiB binary files (target 3).
local boundary = "hookdbench"
local parts = {}
for i = 1, 3 do
  local bytes = {}
  for j = 1, 10240 do bytes[j] = string.char((i * 31 + j * 7) % 256) end
  parts[#parts + 1] = "--" .. boundary .. "\r\n"
    .. 'Content-Disposition: form-data; name="file"; filename="f' .. i .. '.bin"\r\n'
    .. "Content-Type: application/octet-stream\r\n\r\n"
    .. table.concat(bytes) .. "\r\n"
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = table.concat(parts) .. "--" .. boundary .. "--\r\n"
