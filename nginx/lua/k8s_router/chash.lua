-- nginx 1.22's consistent hash (`hash $remote_addr consistent;`, the session affinity of
-- the documented config), so that a client address reaches the same pod through dynamic
-- nginx as through the documented upstream block. Each server gets 160 points on a ring
-- of 32-bit CRCs (160 per weight, all weights 1), from crc32(HOST "\0" PORT PREV) where
-- PREV is the point before it as 4 little-endian bytes; the ring is sorted by hash (glibc's
-- qsort is a merge sort: equal hashes keep server order) and a hash that repeats keeps its
-- first point. A request starts at the first point at or after crc32 of its address.

local char = string.char
local find = string.find
local sub = string.sub
local floor = math.floor
local sort = table.sort
local crc32 = ngx.crc32_long

local _M = {}

local POINTS_PER_SERVER = 160

local function le32(n)
    return char(n % 256, floor(n / 256) % 256, floor(n / 65536) % 256, floor(n / 16777216) % 256)
end

-- HOST and PORT of a server text as nginx splits them: at the last ":" followed only by
-- digits; no port at all when there is none (port 80 is left out of the text, and "[::1]"
-- is a host alone).
local function host_and_port(server)
    local colon = find(server, ":[0-9]*$")
    if colon then
        return sub(server, 1, colon - 1), sub(server, colon + 1)
    end
    return server, ""
end

-- The ring of `servers` (server texts, in peer order): { hashes = {...}, servers = {...} }
-- sorted by hash, with a server text per point.
function _M.ring(servers)
    local points = {}
    for s = 1, #servers do
        local host, port = host_and_port(servers[s])
        local base = host .. "\0" .. port
        local prev = 0
        for _ = 1, POINTS_PER_SERVER do
            local hash = crc32(base .. le32(prev))
            points[#points + 1] = { hash, #points, servers[s] }
            prev = hash
        end
    end
    sort(points, function(a, b)
        if a[1] ~= b[1] then
            return a[1] < b[1]
        end
        return a[2] < b[2]
    end)
    local hashes, texts = {}, {}
    for i = 1, #points do
        local point = points[i]
        if i == 1 or point[1] ~= hashes[#hashes] then
            hashes[#hashes + 1] = point[1]
            texts[#texts + 1] = point[3]
        end
    end
    return { hashes = hashes, servers = texts, n = #hashes }
end

-- The 0-based index of the first point whose hash is at or after `hash` (n when none is:
-- the lookup wraps around).
function _M.find(ring, hash)
    local hashes = ring.hashes
    local i, j = 0, ring.n
    while i < j do
        local k = floor((i + j) / 2)
        local at = hashes[k + 1]
        if hash > at then
            i = k + 1
        elseif hash < at then
            j = k
        else
            return k
        end
    end
    return i
end

-- crc32 of a client address, where a request's walk round the ring starts.
_M.key_hash = crc32

return _M
