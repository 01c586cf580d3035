-- The pods of one route and their balancing state, picked as nginx's upstream modules
-- pick servers with the defaults the documented config relies on (weight=1, max_fails=1,
-- fail_timeout=10s), so that the same requests reach the same pods through dynamic nginx
-- as through the documented upstream blocks (and the in-process proxy, proxy/balancer.ts):
-- - smooth weighted round robin, which with equal weights visits pods in order;
-- - a pod that failed is left out for fail_timeout (nginx counts in whole seconds), and
--   when it comes back its weight starts at 0 and grows by one per pick;
-- - one request tries each pod at most once; none left is "no live upstreams";
-- - a route with one pod is nginx's single-server upstream: never marked failed;
-- - with affinity `ip`, nginx's consistent hash walks the ring from the client's point.

local chash = require "k8s_router.chash"

local _M = {}

-- The groups with a pod marked failed (weak: a group of a table no longer served goes).
-- Empty, a try that did not fail has nothing to clear, which the log phase checks first.
local failing = setmetatable({}, { __mode = "k" })

function _M.any_failing()
    return next(failing) ~= nil
end

local WEIGHT = 1
local MAX_FAILS = 1
local FAIL_TIMEOUT = 10
-- nginx's hash module falls back to round robin after this many points without a pod.
local MAX_HASH_TRIES = 20

-- The group of a route's backends (wire.lua's), with fresh state.
function _M.group(backends, affinity)
    local peers = {}
    local servers = {}
    for i = 1, #backends do
        local b = backends[i]
        peers[i] = {
            host = b.host,
            port = b.port,
            target = b.target,
            current_weight = 0,
            effective_weight = WEIGHT,
            fails = 0,
            checked = ngx.time(),
            accessed = 0,
        }
        servers[i] = b.target
    end
    local group = { peers = peers, n = #peers, single = #peers == 1 }
    if affinity == "ip" and #peers > 1 then
        group.ring = chash.ring(servers)
    end
    return group
end

local function usable(peer, now)
    return peer.fails < MAX_FAILS or now - peer.checked > FAIL_TIMEOUT
end

-- One peer's turn in nginx's smooth weighted choice (ngx_http_upstream_get_peer): its
-- weight grows back by one per turn after a failure; the best so far and the total follow.
local function compete(peer, i, best, best_weight, total)
    local weight = peer.current_weight + peer.effective_weight
    peer.current_weight = weight
    total = total + peer.effective_weight
    if peer.effective_weight < WEIGHT then
        peer.effective_weight = peer.effective_weight + 1
    end
    if not best or weight > best_weight then
        return i, weight, total
    end
    return best, best_weight, total
end

local function chosen(peer, total, now)
    peer.current_weight = peer.current_weight - total
    if now - peer.checked > FAIL_TIMEOUT then
        peer.checked = now
    end
end

-- The index of the next peer for a request that tried those in `tried` (nil: none), or
-- nil when none is left. Not for single groups (their one peer is always the answer).
function _M.round_robin(group, tried, now)
    local peers = group.peers
    local best, best_weight
    local total = 0
    for i = 1, group.n do
        local peer = peers[i]
        if not (tried and tried[i]) and usable(peer, now) then
            best, best_weight, total = compete(peer, i, best, best_weight, total)
        end
    end
    if best then
        chosen(peers[best], total, now)
    end
    return best
end

-- The start of a request's walk round the ring: { point (0-based), tries } for `key`.
function _M.hash_start(group, key)
    return chash.find(group.ring, chash.key_hash(key))
end

-- The next peer on the ring for a request at `walk` ({ point, tries }, advanced in place),
-- as nginx's get_chash_peer; round robin once the walk passed MAX_HASH_TRIES points.
function _M.consistent_hash(group, walk, tried, now)
    if walk.tries > MAX_HASH_TRIES then
        return _M.round_robin(group, tried, now)
    end
    local ring = group.ring
    local peers = group.peers
    while true do
        local server = ring.servers[walk.point % ring.n + 1]
        local best, best_weight
        local total = 0
        for i = 1, group.n do
            local peer = peers[i]
            if peer.target == server and not (tried and tried[i]) and usable(peer, now) then
                best, best_weight, total = compete(peer, i, best, best_weight, total)
            end
        end
        if best then
            chosen(peers[best], total, now)
            return best
        end
        walk.point = walk.point + 1
        walk.tries = walk.tries + 1
        if walk.tries > MAX_HASH_TRIES then
            return _M.round_robin(group, tried, now)
        end
    end
end

-- A try of peer `i` failed (an error or timeout): it is left out for FAIL_TIMEOUT.
function _M.failed(group, i, now)
    if group.single then
        return
    end
    local peer = group.peers[i]
    peer.fails = peer.fails + 1
    failing[group] = true
    peer.accessed = now
    peer.checked = now
    peer.effective_weight = peer.effective_weight - WEIGHT / MAX_FAILS
    if peer.effective_weight < 0 then
        peer.effective_weight = 0
    end
end

-- A try of peer `i` ended without failing: a peer given another chance is live again.
function _M.succeeded(group, i)
    if group.single then
        return
    end
    local peer = group.peers[i]
    if peer.accessed < peer.checked and peer.fails > 0 then
        peer.fails = 0
        local peers = group.peers
        for k = 1, group.n do
            if peers[k].fails > 0 then
                return
            end
        end
        failing[group] = nil
    end
end

return _M
