-- The route table as the router sends it (nginx/table-wire.ts writes it): parsed with
-- plain string searches and patterns, checked whole, never run as code. A text with
-- anything this parser does not expect is refused with the line and the reason, so that a
-- table is stored only when every worker can build it.
--
-- A whole table (PUT):
--
--   k8s-router-table 1 VERSION ROUTES
--   HOST \t PATH \t KEY or - \t rr or ip \t IP,PORT,NAMESPACE,POD IP,PORT,NAMESPACE,POD...
--   end VERSION
--
-- A delta (PATCH): what turns the table named BASE into the table VERSION of ROUTES routes.
-- A route line adds the route of its host and path or replaces it; "-" removes one.
--
--   k8s-router-delta 1 BASE VERSION ROUTES
--   HOST \t PATH \t KEY or - \t rr or ip \t PODS       (as in a whole table)
--   - \t HOST \t PATH
--   end VERSION

local new_tab = require "table.new"

local find = string.find
local match = string.match
local sub = string.sub
local concat = table.concat
local tonumber = tonumber

local _M = {}

local HEADER = "^k8s%-router%-table 1 ([%w._-]+) (%d+)$"
-- A route line in one match: a lower-case host, a path of the characters the route table
-- allows (src/core/annotations.ts), the key, the affinity and the pods (checked apart).
local ROUTE = "^([a-z0-9][a-z0-9.-]*)\t(/[%w%-._~!&()*+,=:@/]*)\t([%w+/=-]+)\t(%l%l)\t([^\t]+)$"
local KEY = "^[%w+/]+=?=?$"
local BACKEND = "^([%x:.]+),(%d+),([a-z0-9][a-z0-9-]*),([a-z0-9][a-z0-9.-]*)$"
local IPV4 = "^%d%d?%d?%.%d%d?%d?%.%d%d?%d?%.%d%d?%d?$"
local IPV6 = "^[%x:.]*:[%x:.]*$"
local MAX_BACKENDS = 4096

-- The fields of one pod's text, or nil and what is wrong with it.
local function backend_fields(text)
    local ip, port, namespace, pod = match(text, BACKEND)
    if not ip then
        return nil, "a pod is not IP,PORT,NAMESPACE,POD"
    end
    local v6 = find(ip, IPV6) ~= nil
    if not v6 and not find(ip, IPV4) then
        return nil, "a pod's IP is neither IPv4 nor IPv6"
    end
    port = tonumber(port)
    if port < 1 or port > 65535 then
        return nil, "a pod's port is not 1 to 65535"
    end
    if #namespace > 63 or #pod > 253 then
        return nil, "a pod's namespace or name is too long"
    end
    return ip, port, v6
end

-- Checks the pods of a route; `checked` remembers the pods seen in this table (a pod
-- serves many routes).
local function check_backends(text, checked)
    local at = 1
    local len = #text
    local count = 0
    while at <= len do
        local space = find(text, " ", at, true)
        local last = space and space - 1 or len
        local item = sub(text, at, last)
        if not checked[item] then
            local ok, err = backend_fields(item)
            if not ok then
                return nil, err
            end
            checked[item] = true
        end
        count = count + 1
        if count > MAX_BACKENDS then
            return nil, "a route has more than " .. MAX_BACKENDS .. " pods"
        end
        at = last + 2
        if space and at > len then
            return nil, "a route's pods end with a space"
        end
    end
    return true
end

-- The pods of a route (its `pods` text, checked when it was parsed), for its balancer:
-- IPv6 in brackets as nginx writes addresses, and the text of the documented config's
-- `server` directive (port 80 left out), which the consistent hash reads.
function _M.backends(text)
    local list = {}
    local at = 1
    local len = #text
    while at <= len do
        local space = find(text, " ", at, true)
        local last = space and space - 1 or len
        local ip, port, v6 = backend_fields(sub(text, at, last))
        local host = v6 and ("[" .. ip .. "]") or ip
        list[#list + 1] = { host = host, port = port, target = port == 80 and host or (host .. ":" .. port) }
        at = last + 2
    end
    return list
end

local function route_of(line, checked)
    local host, path, key, affinity, pods = match(line, ROUTE)
    if not host then
        return nil, "not HOST, PATH, KEY, AFFINITY and PODS separated by tabs, each of its characters"
    end
    if #host > 253 or #path > 1024 then
        return nil, "a host or path is too long"
    end
    if key == "-" then
        key = false
    elseif not find(key, KEY) then
        return nil, "an API key is not base64 text"
    end
    if affinity ~= "rr" and affinity ~= "ip" then
        return nil, "an affinity is neither rr nor ip"
    end
    local ok, err = check_backends(pods, checked)
    if not ok then
        return nil, err
    end
    return {
        id = host .. "\n" .. path,
        host = host,
        path = path,
        plen = #path,
        key = key,
        affinity = affinity,
        -- The route's pods: a route whose pods and affinity did not change keeps its
        -- balancing state across tables.
        pods = pods,
        -- Its text, for the whole table a delta leaves (text_after).
        line = line,
    }
end

-- Whether `line` (line `line_no`, ending before `at`) is the end line of `version`'s text:
-- true, or nil and the reason when it is an end line that is wrong; false when it is not one.
local function end_line(text, line, at, version, line_no)
    if sub(line, 1, 4) ~= "end " then
        return false
    end
    if sub(line, 5) ~= version then
        return nil, "line " .. line_no .. ": the end line names another version"
    end
    if at <= #text then
        return nil, "line " .. line_no .. ": text after the end line"
    end
    return true
end

-- The table in `text`: { version, count, routes = { route... } in the order sent, lines
-- (line -> route), ids (id -> route, an id being the host and path), fresh (the routes not
-- in `previous`) }, or nil and the reason. A line that `previous` (an earlier result, or
-- one advanced by deltas since) had is that earlier route, the very object, unchecked
-- again: a new table differs from the last in a few lines, and routes.lua keeps what it
-- built for routes it has seen.
function _M.parse(text, previous)
    if type(text) ~= "string" then
        return nil, "no table"
    end
    local eol = find(text, "\n", 1, true)
    if not eol then
        return nil, "line 1: no header line"
    end
    local version, count = match(sub(text, 1, eol - 1), HEADER)
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
    local checked = {}
    local fresh = {}
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
            local ended, end_err = end_line(text, line, at, version, line_no)
            if ended then
                break
            elseif end_err then
                return nil, end_err
            end
            local err
            route, err = route_of(line, checked)
            if not route then
                return nil, "line " .. line_no .. ": " .. err
            end
            fresh[#fresh + 1] = route
        end
        if seen[route.id] then
            return nil, "line " .. line_no .. ": a host and path are in the table twice"
        end
        seen[route.id] = route
        lines[line] = route
        routes[#routes + 1] = route
    end
    if #routes ~= count then
        return nil, "the header announces " .. count .. " routes, the table has " .. #routes
    end
    return { version = version, count = count, routes = routes, lines = lines, ids = seen, fresh = fresh }
end

local DELTA_HEADER = "^k8s%-router%-delta 1 ([%w._-]+) ([%w._-]+) (%d+)$"
local REMOVAL = "^%-\t([a-z0-9][a-z0-9.-]*)\t(/[%w%-._~!&()*+,=:@/]*)$"

-- The id of the route a removal line names, or nil and the reason.
local function removal_of(line)
    local host, path = match(line, REMOVAL)
    if not host then
        return nil, "not -, HOST and PATH separated by tabs, each of its characters"
    end
    if #host > 253 or #path > 1024 then
        return nil, "a host or path is too long"
    end
    return host .. "\n" .. path
end

-- The delta in `text`, checked on its own: { base, version, count (the routes of the table
-- it leaves), puts = { route... }, removals = { id... } }, or nil and the reason. Whether
-- it fits a table is changes()'s to say.
function _M.parse_delta(text)
    if type(text) ~= "string" then
        return nil, "no delta"
    end
    local eol = find(text, "\n", 1, true)
    if not eol then
        return nil, "line 1: no header line"
    end
    local base, version, count = match(sub(text, 1, eol - 1), DELTA_HEADER)
    if not base then
        return nil, "line 1: not a k8s-router-delta 1 header"
    end
    if base == version then
        return nil, "line 1: the delta's version is its base's"
    end
    local puts, removals, seen, checked = {}, {}, {}, {}
    local at = eol + 1
    local line_no = 1
    while true do
        line_no = line_no + 1
        eol = find(text, "\n", at, true)
        if not eol then
            return nil, "line " .. line_no .. ": the delta ends without its end line"
        end
        local line = sub(text, at, eol - 1)
        at = eol + 1
        local ended, end_err = end_line(text, line, at, version, line_no)
        if ended then
            break
        elseif end_err then
            return nil, end_err
        end
        local id, err
        if sub(line, 1, 2) == "-\t" then
            id, err = removal_of(line)
            removals[#removals + 1] = id
        else
            local route
            route, err = route_of(line, checked)
            id = route and route.id
            puts[#puts + 1] = route
        end
        if not id then
            return nil, "line " .. line_no .. ": " .. err
        end
        if seen[id] then
            return nil, "line " .. line_no .. ": a host and path are in the delta twice"
        end
        seen[id] = true
    end
    return { base = base, version = version, count = tonumber(count), puts = puts, removals = removals }
end

local function named(id)
    local host, path = match(id, "^([^\n]*)\n(.*)$")
    return host .. path
end

-- What `delta` does to `parsed` (parse()'s, or one advanced since): a list of changes
-- { old = the route replaced or removed, new = the route added or replacing it }, either
-- nil, leaving out routes put again unchanged; or nil and the reason when the delta is not
-- for this table: another base, a removal of a route it does not have, another count.
function _M.changes(parsed, delta)
    if parsed.version ~= delta.base then
        return nil, "the delta is for table " .. delta.base .. ", not " .. tostring(parsed.version)
    end
    local ids = parsed.ids
    local list = {}
    local count = parsed.count
    local removals = delta.removals
    for i = 1, #removals do
        local old = ids[removals[i]]
        if not old then
            return nil, "the delta removes " .. named(removals[i]) .. ", which table " .. delta.base .. " does not have"
        end
        list[#list + 1] = { old = old }
        count = count - 1
    end
    local puts = delta.puts
    for i = 1, #puts do
        local route = puts[i]
        local old = ids[route.id]
        if not old then
            count = count + 1
            list[#list + 1] = { new = route }
        elseif old.line ~= route.line then
            list[#list + 1] = { old = old, new = route }
        end
    end
    if count ~= delta.count then
        return nil, "the delta leaves " .. count .. " routes, its header announces " .. delta.count
    end
    return list
end

-- The whole-table text (as parse() reads it) of `parsed` once `changes` of `delta` are made.
function _M.text_after(parsed, delta, changes)
    local gone = {}
    for i = 1, #changes do
        local old = changes[i].old
        if old then
            gone[old.line] = true
        end
    end
    local parts = new_tab(delta.count + 2, 0)
    parts[1] = "k8s-router-table 1 " .. delta.version .. " " .. delta.count
    local n = 1
    for line in pairs(parsed.lines) do
        if not gone[line] then
            n = n + 1
            parts[n] = line
        end
    end
    for i = 1, #changes do
        local new = changes[i].new
        if new then
            n = n + 1
            parts[n] = new.line
        end
    end
    parts[n + 1] = "end " .. delta.version .. "\n"
    return concat(parts, "\n")
end

-- Makes `changes` of `delta` in `parsed`, which then names the table the delta leaves (its
-- lines, ids, count and version; the order of routes a whole text had is not kept).
function _M.advance(parsed, delta, changes)
    local lines, ids = parsed.lines, parsed.ids
    for i = 1, #changes do
        local old = changes[i].old
        if old then
            lines[old.line] = nil
            ids[old.id] = nil
        end
    end
    for i = 1, #changes do
        local new = changes[i].new
        if new then
            lines[new.line] = new
            ids[new.id] = new
        end
    end
    parsed.version = delta.version
    parsed.count = delta.count
    parsed.routes = nil
    parsed.fresh = nil
end

return _M
