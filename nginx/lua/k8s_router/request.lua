-- The request path of dynamic nginx: what the documented config does with server blocks,
-- locations, `if` and upstream blocks, done in three handlers.
--
-- route (set_by_lua in the routing server, in the server rewrite phase where the documented
-- default server returns 444): the host, the path and the API key, as the answer nginx
-- then gives with the documented config's own directives (`return 444`, `return 404`,
-- `return 403`, `return 301 LOCATION`), or "" to proxy. A request to a known host whose
-- body is over client_max_body_size gets "" too, so that nginx answers 413 as it does
-- before any location answers.
-- balance (balancer_by_lua, once per try): the pod, and the failure of the try before.
-- log (log phase): whether the last try failed, which no later balancer call can see.

local balancer = require "ngx.balancer"
local peers = require "k8s_router.peers"
local routes = require "k8s_router.routes"
local state = require "k8s_router.state"

local ngx = ngx
local var = ngx.var
local exit = ngx.exit
local byte = string.byte
local bor = bit.bor
local bxor = bit.bxor
local tonumber = tonumber
local ngx_time = ngx.time
local set_current_peer = balancer.set_current_peer
local set_more_tries = balancer.set_more_tries
local get_last_failure = balancer.get_last_failure

local _M = {}

-- nginx's codes for a balancer that found no peer ("no live upstreams": 502) or failed (500).
local NGX_BUSY = -3
local NGX_ERROR = -1

local key_variable = "http_x_routing_api_key"
local max_body_size = 1048576

function _M.configure(settings)
    key_variable = settings.key_variable
    max_body_size = settings.max_body_size
end

-- Compares without leaking, through timing, how much of the key a guess got right.
local function key_matches(sent, key)
    if not sent or #sent ~= #key then
        return false
    end
    local diff = 0
    for i = 1, #key do
        diff = bor(diff, bxor(byte(sent, i), byte(key, i)))
    end
    return diff == 0
end

-- Whether nginx answers 413 once the request reaches a location, as it does before any
-- location answers: the declared body is over client_max_body_size.
local function too_large()
    if max_body_size == 0 then
        return false
    end
    local length = tonumber(var.content_length)
    return length ~= nil and length > max_body_size
end

-- `status` as the answer, unless nginx answers 413 first.
local function answer(status)
    if too_large() then
        return ""
    end
    return status
end

-- The Location of the automatic redirect route() chose, for location() to hand out: both
-- run in the same request's server rewrite phase, one right after the other.
local redirect_to = ""

-- The automatic redirect's Location as nginx writes it: the route's path, with the query
-- when there is one; nginx makes it absolute from $host and the port, as for its own.
local function redirect(route)
    if too_large() then
        return ""
    end
    local args = var.args
    redirect_to = (args and args ~= "") and (route.path .. "?" .. args) or route.path
    return "301"
end

-- What the routing server answers: "444", "404", "403", "301" (then location()), or ""
-- to proxy (the balancer then has the route's pods).
function _M.route()
    local current = state.current()
    local entry = current.hosts[var.host]
    if not entry then
        return "444"
    end
    local route, redirecting = routes.match(entry, var.uri)
    if not route then
        return answer("404")
    end
    if redirecting then
        return redirect(route)
    end
    local key = route.key
    if key and not key_matches(var[key_variable], key) then
        return answer("403")
    end
    ngx.ctx.k8s_group = route.group or routes.group_of(route, current)
    return ""
end

-- The Location of the redirect route() just answered.
function _M.location()
    return redirect_to
end

-- Sends this try to `peer`.
local function use(peer)
    local ok, err = set_current_peer(peer.host, peer.port)
    if not ok then
        ngx.log(ngx.ERR, "k8s-router: cannot use pod ", peer.target, ": ", err)
        return exit(NGX_ERROR)
    end
end

function _M.balance()
    local ctx = ngx.ctx
    local group = ctx.k8s_group
    if not group then
        ngx.log(ngx.ERR, "k8s-router: no route for the balancer")
        return exit(NGX_ERROR)
    end
    local list = group.peers
    if group.single then
        -- nginx's single server: every try (only a stale kept-alive connection gives a
        -- second one) goes to it, and it is never marked failed.
        return use(list[1])
    end
    local now = ngx_time()
    local last = ctx.k8s_last
    local tried = ctx.k8s_tried
    if last then
        if get_last_failure() == "failed" then
            peers.failed(group, last, now)
        else
            peers.succeeded(group, last)
        end
        ctx.k8s_last = nil
        if not tried then
            tried = {}
            ctx.k8s_tried = tried
        end
        tried[last] = true
    else
        -- nginx gives a request one try per server of the upstream.
        set_more_tries(group.n - 1)
    end
    local i
    if group.ring then
        local walk = ctx.k8s_walk
        if not walk then
            walk = { point = peers.hash_start(group, var.remote_addr), tries = 0 }
            ctx.k8s_walk = walk
        end
        i = peers.consistent_hash(group, walk, tried, now)
    else
        i = peers.round_robin(group, tried, now)
    end
    if not i then
        return exit(NGX_BUSY)
    end
    ctx.k8s_last = i
    return use(list[i])
end

-- The last entry of an upstream variable ("502, 504" or "200 : 502").
local function last_entry(value)
    return value and value:match("([^ ]+)$")
end

function _M.log()
    -- nginx marks a try failed when it gives up on it (error or timeout, before a response
    -- head): the request then ends with its 502 or 504, and the try has no header time.
    -- Any other answer is a success, which changes nothing while no pod is marked failed.
    local status = ngx.status
    local gave_up = status == 502 or status == 504
    if not gave_up and not peers.any_failing() then
        return
    end
    local ctx = ngx.ctx
    local last = ctx.k8s_last
    if not last then
        return
    end
    local group = ctx.k8s_group
    if gave_up
        and last_entry(var.upstream_status) == tostring(status)
        and last_entry(var.upstream_header_time) == "-"
    then
        peers.failed(group, last, ngx_time())
    else
        peers.succeeded(group, last)
    end
end

return _M
