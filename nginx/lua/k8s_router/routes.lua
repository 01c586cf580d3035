-- A worker's routing table, built from a parsed table (wire.lua): per host, the routes by
-- path for nginx's prefix location match, and the balancing state of each route's pods
-- (each route object carries its group).

local ffi = require "ffi"
local new_tab = require "table.new"
local peers = require "k8s_router.peers"
local wire = require "k8s_router.wire"

local sort = table.sort
local sub = string.sub

pcall(ffi.cdef, "int memcmp(const void *s1, const void *s2, size_t n);")
local memcmp = ffi.C.memcmp

local _M = {}

-- Up to this many paths on a host, trying each path beats a lookup per path length.
local SCAN_LIMIT = 8

local function by_length(a, b)
    return #a.path > #b.path
end

local function host_entry(list)
    sort(list, by_length)
    local entry = { list = list, scan = #list <= SCAN_LIMIT }
    local by_path = {}
    for i = 1, #list do
        by_path[list[i].path] = list[i]
    end
    if not entry.scan then
        local lengths, seen = {}, {}
        for i = 1, #list do
            local n = #list[i].path
            if not seen[n] then
                seen[n] = true
                lengths[#lengths + 1] = n
            end
        end
        entry.by_path = by_path
        entry.lengths = lengths
    end
    -- nginx's automatic redirect: a prefix location ending in "/" that proxies answers
    -- its path without the "/" with a 301 to the path, unless a location is that path.
    for i = 1, #list do
        local path = list[i].path
        local bare = sub(path, 1, -2)
        if #path > 1 and sub(path, -1) == "/" and not by_path[bare] then
            entry.redirects = entry.redirects or {}
            entry.redirects[bare] = list[i]
        end
    end
    return entry
end

-- The routes of each host, in table order; of the hosts in `only` when given.
local function routes_by_host(routes, only)
    local lists = {}
    for i = 1, #routes do
        local r = routes[i]
        if not only or only[r.host] then
            local list = lists[r.host]
            if not list then
                list = {}
                lists[r.host] = list
            end
            list[#list + 1] = r
        end
    end
    return lists
end

-- A route takes the balancing state of the route it replaces when its pods and affinity
-- are the same (the balancer would be the same), as the in-process proxy's balancers do.
local function keep_group(groups, r)
    local old = groups[r.id]
    if old and old.pods == r.pods and old.affinity == r.affinity then
        r.group = old
    end
    groups[r.id] = r.group
end

local function full_build(parsed)
    local routes = parsed.routes
    local hosts = {}
    for host, list in pairs(routes_by_host(routes)) do
        hosts[host] = host_entry(list)
    end
    return { version = parsed.version, hosts = hosts, groups = new_tab(0, #routes) }
end

-- The routing table of `parsed` (wire.lua's), made from `previous` (the table built from
-- `previous_parsed`) where the two differ: the hosts of routes added, changed or removed
-- get new entries, the others keep theirs. A route the last table had (the same line, so
-- the same object) keeps its balancing state; a route whose pods (and affinity) are
-- unchanged takes the state of the route it replaces, as the in-process proxy's balancers
-- do; other routes get theirs when first routed (group_of): a table of 10,000 routes is
-- mostly routes no request has reached yet. `previous` is taken apart: only the table
-- returned may be used afterwards.
function _M.build(parsed, previous_parsed, previous)
    if not previous or not previous_parsed then
        return full_build(parsed)
    end
    local hosts, groups = previous.hosts, previous.groups
    local lines, ids = parsed.lines, parsed.ids
    local changed = {}
    for line, r in pairs(previous_parsed.lines) do
        if lines[line] ~= r then
            changed[r.host] = true
            if not ids[r.id] then
                groups[r.id] = nil
            end
        end
    end
    local fresh = parsed.fresh
    for i = 1, #fresh do
        local r = fresh[i]
        changed[r.host] = true
        keep_group(groups, r)
    end
    if next(changed) then
        local lists = routes_by_host(parsed.routes, changed)
        for host in pairs(changed) do
            hosts[host] = lists[host] and host_entry(lists[host]) or nil
        end
    end
    return { version = parsed.version, hosts = hosts, groups = groups }
end

-- The routing table `previous` becomes with `changes` (wire.lua's changes(): { old, new }
-- pairs), named `version`: the work is in proportion to the change. The hosts of the
-- routes changed get new entries, made from their old entry's routes; the others keep
-- theirs. Balancing state carries over as build() carries it. `previous` is taken apart.
function _M.apply(previous, changes, version)
    local hosts, groups = previous.hosts, previous.groups
    local gone = {}
    local lists = {}
    for i = 1, #changes do
        local old, r = changes[i].old, changes[i].new
        if old then
            gone[old.id] = true
            lists[old.host] = lists[old.host] or {}
            if not r then
                groups[old.id] = nil
            end
        end
        if r then
            local list = lists[r.host] or {}
            lists[r.host] = list
            list[#list + 1] = r
            keep_group(groups, r)
        end
    end
    for host, list in pairs(lists) do
        local entry = hosts[host]
        if entry then
            local kept = entry.list
            for i = 1, #kept do
                if not gone[kept[i].id] then
                    list[#list + 1] = kept[i]
                end
            end
        end
        hosts[host] = #list > 0 and host_entry(list) or nil
    end
    return { version = version, hosts = hosts, groups = groups }
end

-- The balancing state of `route` in `tbl` (the table that routed the request), made on
-- first use.
function _M.group_of(route, tbl)
    local group = route.group
    if not group then
        group = peers.group(wire.backends(route.pods), route.affinity)
        group.pods = route.pods
        group.affinity = route.affinity
        route.group = group
        tbl.groups[route.id] = group
    end
    return group
end

-- An empty table: every host unknown.
function _M.empty()
    return { version = false, hosts = {}, groups = {} }
end

-- The route of `uri` (nginx's normalized $uri) on a host, as prefix locations match: the
-- longest route path that starts `uri`, compared byte for byte. Returns the route, and
-- true when the answer is the automatic redirect to it instead.
function _M.match(entry, uri)
    local redirects = entry.redirects
    if redirects then
        local route = redirects[uri]
        if route then
            return route, true
        end
    end
    local length = #uri
    if entry.scan then
        local list = entry.list
        for i = 1, #list do
            local route = list[i]
            local n = route.plen
            if n <= length and memcmp(uri, route.path, n) == 0 then
                return route, false
            end
        end
        return nil
    end
    local by_path = entry.by_path
    local lengths = entry.lengths
    for i = 1, #lengths do
        local n = lengths[i]
        if n <= length then
            local route = by_path[n == length and uri or sub(uri, 1, n)]
            if route then
                return route, false
            end
        end
    end
    return nil
end

return _M
