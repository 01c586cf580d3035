-- The route table as the router sends it (nginx/table-wire.ts writes it): parsed with
-- plain string searches, checked whole, never run as code. A text with anything this
-- parser does not expect is refused with the line and the reason, so that a table is
-- stored only when every worker can build it.
--
--   k8s-router-table 1 VERSION ROUTES
--   HOST \t PATH \t KEY or - \t rr or ip \t IP,PORT,NAMESPACE,POD IP,PORT,NAMESPACE,POD...
--   end VERSION

local new_tab = require "table.new"

local find = string.find
local sub = string.sub
local tonumber = tonumber

local _M = {}

local HEADER = "^k8s%-router%-table 1 ([%w._-]+) (%d+)$"
local HOST = "^[a-z0-9][a-z0-9.-]*$"
-- The characters the route table allows in a path (src/core/annotations.ts).
local PATH = "^/[%w%-._~!&()*+,=:@/]*$"
local KEY = "^[%w+/]+=?=?$"
local IPV4 = "^%d%d?%d?%.%d%d?%d?%.%d%d?%d?%.%d%d?%d?$"
local IPV6 = "^[%x:.]*:[%x:.]*$"
local POD = "^[a-z0-9][a-z0-9.-]*$"
local NAMESPACE = "^[a-z0-9][a-z0-9-]*$"
local MAX_BACKENDS = 4096

local function backend_of(text)
    local c1 = find(text, ",", 1, true)
    local c2 = c1 and find(text, ",", c1 + 1, true)
    local c3 = c2 and find(text, ",", c2 + 1, true)
    if not c3 then
        return nil, "a pod is not IP,PORT,NAMESPACE,POD"
    end
    local ip = sub(text, 1, c1 - 1)
    local port = tonumber(sub(text, c1 + 1, c2 - 1))
    local namespace = sub(text, c2 + 1, c3 - 1)
    local pod = sub(text, c3 + 1)
    local v6 = find(ip, IPV6) ~= nil
    if not v6 and not find(ip, IPV4) then
        return nil, "a pod's IP is neither IPv4 nor IPv6"
    end
    if not find(sub(text, c1 + 1, c2 - 1), "^%d+$") or port < 1 or port > 65535 then
        return nil, "a pod's port is not 1 to 65535"
    end
    if not find(namespace, NAMESPACE) or #namespace > 63 then
        return nil, "a pod's namespace is not a namespace name"
    end
    if not find(pod, POD) or #pod > 253 then
        return nil, "a pod's name is not a pod name"
    end
    -- nginx's address syntax: IPv6 in brackets; the consistent hash reads the same text
    -- as the `server` directive of the documented config, port 80 left out.
    local host = v6 and ("[" .. ip .. "]") or ip
    return {
        ip = ip,
        port = port,
        namespace = namespace,
        pod = pod,
        host = host,
        target = port == 80 and host or (host .. ":" .. port),
    }
end

-- `cache` maps a pod's text to its parsed form within one parse: a pod serves many routes.
local function backends_of(text, cache)
    local list = {}
    local at = 1
    local len = #text
    while at <= len do
        local space = find(text, " ", at, true)
        local last = space and space - 1 or len
        local item = sub(text, at, last)
        local backend = cache[item]
        if not backend then
            local err
            backend, err = backend_of(item)
            if not backend then
                return nil, err
            end
            cache[item] = backend
        end
        list[#list + 1] = backend
        if #list > MAX_BACKENDS then
            return nil, "a route has more than " .. MAX_BACKENDS .. " pods"
        end
        at = last + 2
        if space and at > len then
            return nil, "a route's pods end with a space"
        end
    end
    if #list == 0 then
        return nil, "a route has no pods"
    end
    return list
end

local function route_of(line, cache)
    local t1 = find(line, "\t", 1, true)
    local t2 = t1 and find(line, "\t", t1 + 1, true)
    local t3 = t2 and find(line, "\t", t2 + 1, true)
    local t4 = t3 and find(line, "\t", t3 + 1, true)
    if not t4 or find(line, "\t", t4 + 1, true) then
        return nil, "a route is not five fields separated by tabs"
    end
    local host = sub(line, 1, t1 - 1)
    local path = sub(line, t1 + 1, t2 - 1)
    local key = sub(line, t2 + 1, t3 - 1)
    local affinity = sub(line, t3 + 1, t4 - 1)
    local backends_text = sub(line, t4 + 1)
    if not find(host, HOST) or #host > 253 then
        return nil, "a host is not a lower-case host name"
    end
    if not find(path, PATH) or #path > 1024 then
        return nil, "a path is not a route path"
    end
    if key == "-" then
        key = false
    elseif not find(key, KEY) then
        return nil, "an API key is not base64 text"
    end
    if affinity ~= "rr" and affinity ~= "ip" then
        return nil, "an affinity is neither rr nor ip"
    end
    local backends, err = backends_of(backends_text, cache)
    if not backends then
        return nil, err
    end
    return {
        id = host .. "\n" .. path,
        host = host,
        path = path,
        plen = #path,
        key = key,
        affinity = affinity,
        -- The identity of the route's pods: a route whose pods did not change keeps its
        -- balancing state across tables.
        backends_text = affinity .. "\t" .. backends_text,
        backends = backends,
    }
end

-- The table in `text`: { version, routes = { route... } in the order sent, lines }, or nil
-- and the reason. A line that `previous` (an earlier result) had is that earlier route,
-- the very object, unchecked again: a new table differs from the last in a few lines, and
-- routes.lua keeps what it built for routes it has seen.
function _M.parse(text, previous)
    if type(text) ~= "string" then
        return nil, "no table"
    end
    local eol = find(text, "\n", 1, true)
    if not eol then
        return nil, "line 1: no header line"
    end
    local version, count = sub(text, 1, eol - 1):match(HEADER)
    if not version then
        return nil, "line 1: not a k8s-router-table 1 header"
    end
    count = tonumber(count)
    local known = previous and previous.lines or {}
    -- Sized for the routes announced (within reason): a table of 10,000 routes would
    -- otherwise be rehashed a dozen times as it grows.
    local size = count < 1000000 and count or 0
    local lines = new_tab(0, size)
    local routes = new_tab(size, 0)
    local seen = new_tab(0, size)
    local cache = {}
    local at = eol + 1
    local line_no = 1
    while true do
        line_no = line_no + 1
        eol = find(text, "\n", at, true)
        if not eol then
            return nil, "line " .. line_no .. ": the table ends without its end line"
        end
        local line = sub(text, at, eol - 1)
        at = eol + 1
        local route = known[line]
        if not route then
            if sub(line, 1, 4) == "end " then
                if sub(line, 5) ~= version then
                    return nil, "line " .. line_no .. ": the end line names another version"
                end
                if at <= #text then
                    return nil, "line " .. line_no .. ": text after the end line"
                end
                break
            end
            local err
            route, err = route_of(line, cache)
            if not route then
                return nil, "line " .. line_no .. ": " .. err
            end
        end
        if seen[route.id] then
            return nil, "line " .. line_no .. ": a host and path are in the table twice"
        end
        seen[route.id] = true
        lines[line] = route
        routes[#routes + 1] = route
    end
    if #routes ~= count then
        return nil, "the header announces " .. count .. " routes, the table has " .. #routes
    end
    return { version = version, routes = routes, lines = lines }
end

return _M
