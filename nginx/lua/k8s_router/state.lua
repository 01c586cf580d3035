-- The table each worker serves. The control server stores each table in the shared dict
-- (which survives a reload of nginx, not a restart) under the next serial: a whole table
-- as the snapshot, a delta as the delta from the table before. Every worker compares the
-- serial with its own at each request and on a short timer. When it changed, a worker that
-- serves a table since the snapshot applies the deltas after it, in proportion to what
-- changed; a worker without such a table (started by a reload or in place of one that died)
-- loads the snapshot and the deltas after it. Every DELTAS_KEPT deltas the control server
-- writes the whole table as the snapshot again. So no request that arrives after a PUT or
-- PATCH was answered is routed by an older table. Each worker writes which version it serves into the dict, for
-- the router to read back (control.lua).

local wire = require "k8s_router.wire"
local routes = require "k8s_router.routes"

local _M = {}

local DICT = "k8s_router"
local SERIAL = "serial"
-- The serial of the snapshot: table:SERIAL is its whole text.
local SNAPSHOT = "snapshot"
local STORED_VERSION = "stored-version"
local PUT_LOCK = "put-lock"
local PUT_LOCK_SECONDS = 10
-- The lowest serial whose delta may still be in the dict.
local DELTA_FLOOR = "delta-floor"

-- The deltas of the last DELTAS_KEPT tables stay, for the workers that are behind and
-- those that load the snapshot; each is at most MAX_DELTA_BYTES (nginx/table-wire.ts has
-- the same figure), so that beside two snapshots (while one replaces the other) they take
-- a bounded part of the dict.
_M.DELTAS_KEPT = 16
_M.MAX_DELTA_BYTES = 256 * 1024

-- What keeps a store from being made, as control.lua answers it.
_M.BUSY = "busy"
_M.NOT_BASE = "not the base"
_M.NO_ROOM = "no room"

local dict
local current = routes.empty()
-- The parse of the table installed (advanced by each delta since): the next whole table's
-- parse reuses its routes line by line, and the next delta applies to it.
local parsed_last = nil
local serial = 0

local function table_key(n)
    return "table:" .. n
end

local function delta_key(n)
    return "delta:" .. n
end

function _M.worker_key(id)
    return "worker:" .. id
end

-- The load of nginx.conf whose workers report (its id, set by its first worker to start).
-- A reload starts the new workers some 100 ms before the master tells the old ones to
-- quit, and meanwhile an old worker still loads each new table: it must not write over
-- the report of the new worker that has its id.
local REPORTING_LOAD = "reporting-load"
-- How many times nginx.conf was loaded since nginx started: part of a load's id.
local LOADS = "loads"
-- This load of nginx.conf (init_by_lua runs in the master at each start and reload).
local load_id = nil

-- Tells the router which version this worker serves: not from a worker of an older load
-- of nginx.conf, nor from one shutting down, since its id belongs to a new worker now.
-- Should the dict lose the load's id, every worker reports, as the new ones do again.
local function report()
    if ngx.worker.exiting() then
        return
    end
    local reporting = dict:get(REPORTING_LOAD)
    if reporting and reporting ~= load_id then
        return
    end
    local id = ngx.worker.id()
    if id then
        dict:set(_M.worker_key(id), ngx.worker.pid() .. " " .. (current.version or "-"))
    end
end

-- Reports again when the report under this worker's id is another's: an old worker may
-- write between its check of the load and the write, just after the new worker reported.
local function keep_report()
    local id = ngx.worker.id()
    local reported = id and dict:get(_M.worker_key(id))
    if not reported or tonumber(string.match(reported, "^%d+")) ~= ngx.worker.pid() then
        report()
    end
end

local function install(parsed, n)
    current = routes.build(parsed, parsed_last, current)
    parsed_last = parsed
    serial = n
    report()
end

local function install_delta(delta, changes, n)
    wire.advance(parsed_last, delta, changes)
    current = routes.apply(current, changes, delta.version)
    serial = n
    report()
end

-- `text` parsed and checked, reusing what this worker parsed before; nil and the reason.
function _M.parse(text)
    return wire.parse(text, parsed_last)
end

-- Applies the stored deltas from this worker's table up to table `n`; false when one is
-- not there (a whole table came between, or it is too old to be kept).
local function catch_up(n)
    if not parsed_last or serial == 0 or n <= serial or n - serial > _M.DELTAS_KEPT then
        return false
    end
    -- All read first: a delta trimmed meanwhile leaves this worker's table as it was.
    local texts = {}
    for k = serial + 1, n do
        texts[#texts + 1] = dict:get(delta_key(k))
        if not texts[#texts] then
            return false
        end
    end
    for i = 1, #texts do
        local delta, err = wire.parse_delta(texts[i])
        local changes
        if delta then
            changes, err = wire.changes(parsed_last, delta)
        end
        if not changes then
            -- The control server stores only deltas that fit the table before: a bug.
            ngx.log(ngx.CRIT, "k8s-router: stored delta ", serial + 1, " does not apply: ", err)
            return false
        end
        install_delta(delta, changes, serial + 1)
    end
    return true
end

-- Loads the snapshot, unless this worker serves it; the snapshot's serial, or nil when it
-- changed as it was read.
local function load_snapshot()
    -- A dict kept across a reload from Lua before snapshots has the whole table at SERIAL.
    local n = dict:get(SNAPSHOT) or dict:get(SERIAL)
    if not n then
        return nil
    end
    if n == serial then
        return n
    end
    local text = dict:get(table_key(n))
    if not text then
        return nil
    end
    local parsed, err = _M.parse(text)
    if not parsed then
        -- The control server stores only what parses: this is a bug, said loudly.
        ngx.log(ngx.CRIT, "k8s-router: stored table ", n, " does not parse: ", err)
        -- Not parsed again at every request: the next store replaces it.
        serial = n
        return nil
    end
    install(parsed, n)
    return n
end

-- Brings this worker to table `n` (the dict's serial just read), if it is not there.
local function refresh(n)
    -- A store may replace the snapshot or trim deltas meanwhile: read the serial again.
    for _ = 1, 3 do
        if catch_up(n) then
            return
        end
        local snapshot = load_snapshot()
        if snapshot and (snapshot == n or catch_up(n)) then
            return
        end
        n = dict:get(SERIAL) or 0
        if n == serial then
            return
        end
    end
end

-- The table to route with: the newest stored one. Cheap when it did not change.
function _M.current()
    local n = dict:get(SERIAL) or 0
    if n ~= serial then
        refresh(n)
    end
    return current
end

function _M.init(dict_name)
    dict = ngx.shared[dict_name or DICT]
    if not dict then
        error("no lua_shared_dict " .. (dict_name or DICT))
    end
    -- Unique across loads: a count kept in the dict (which a reload keeps), and the time.
    ngx.update_time()
    load_id = (dict:incr(LOADS, 1, 0) or 0) .. "@" .. ngx.now()
end

-- In each worker as it starts: the table stored before (a reload keeps it), and its report.
function _M.start_worker(poll_seconds)
    -- Only a load whose workers run reports: a reload that fails after init_by_lua starts none.
    dict:set(REPORTING_LOAD, load_id)
    _M.current()
    report()
    local ok, err = ngx.timer.every(poll_seconds, function(premature)
        if not premature then
            _M.current()
            keep_report()
        end
    end)
    if not ok then
        ngx.log(ngx.CRIT, "k8s-router: cannot start the table timer: ", err)
    end
end

-- Runs `fn` holding the store lock (kept at most PUT_LOCK_SECONDS should this worker die);
-- returns what it returns, or nil, the reason and BUSY when another store holds the lock.
local function locked(fn)
    local ok, err = dict:add(PUT_LOCK, true, PUT_LOCK_SECONDS)
    if not ok then
        if err == "exists" then
            return nil, "another table is being stored", _M.BUSY
        end
        return nil, "cannot lock: " .. tostring(err), _M.NO_ROOM
    end
    local done, a, b, c = pcall(fn)
    dict:delete(PUT_LOCK)
    if not done then
        error(a, 0)
    end
    return a, b, c
end

-- Deletes the deltas too old to be kept once table `n` is stored.
local function trim_deltas(n)
    local floor = dict:get(DELTA_FLOOR) or 1
    local keep_from = n - _M.DELTAS_KEPT + 1
    for k = floor, keep_from - 1 do
        dict:delete(delta_key(k))
    end
    if keep_from > floor then
        dict:set(DELTA_FLOOR, keep_from)
    end
end

-- Makes the next serial the stored table, named `version`: `delta_text` when given (the
-- delta from the table stored now), and `whole()`'s text as the snapshot when there is no
-- delta or the snapshot is DELTAS_KEPT tables old. Returns the serial, or nil, the reason
-- and NO_ROOM. Under the lock: no other store runs meanwhile.
local function commit(version, delta_text, whole)
    local n = (dict:get(SERIAL) or 0) + 1
    -- safe_set evicts nothing: the tables in use stay until the new one is in.
    local ok, err = dict:safe_set(delta_key(n), delta_text)
    if not ok then
        return nil, "the shared dict cannot hold the delta: " .. tostring(err), _M.NO_ROOM
    end
    local snapshot = dict:get(SNAPSHOT)
    local snapshot_now = not delta_text or not snapshot or n - snapshot >= _M.DELTAS_KEPT
    if snapshot_now then
        ok, err = dict:safe_set(table_key(n), whole())
        if not ok then
            dict:delete(delta_key(n))
            return nil, "the shared dict cannot hold the table: " .. tostring(err), _M.NO_ROOM
        end
        dict:set(SNAPSHOT, n)
    end
    dict:set(STORED_VERSION, version)
    dict:set(SERIAL, n)
    if snapshot_now and snapshot then
        dict:delete(table_key(snapshot))
    end
    trim_deltas(n)
    return n
end

-- Stores a parsed and checked whole table for every worker; nil, the reason and BUSY or
-- NO_ROOM when it cannot.
function _M.store(text, parsed)
    local n, err, why = locked(function()
        return commit(parsed.version, nil, function()
            return text
        end)
    end)
    if not n then
        return nil, err, why
    end
    install(parsed, n)
    return true
end

-- Applies a delta (`text`, parsed as `delta`) to the stored table, for every worker; nil,
-- the reason and BUSY, NOT_BASE (nginx does not hold the table it is for) or NO_ROOM.
function _M.patch(text, delta)
    local changes
    local n, err, why = locked(function()
        -- This worker applies the delta to the stored table: it serves that one first.
        _M.current()
        local stored = dict:get(STORED_VERSION)
        if not parsed_last or stored ~= parsed_last.version or stored ~= delta.base then
            return nil, "nginx holds table " .. tostring(stored or "none") .. ", not " .. delta.base, _M.NOT_BASE
        end
        local changes_err
        changes, changes_err = wire.changes(parsed_last, delta)
        if not changes then
            return nil, changes_err, _M.NOT_BASE
        end
        return commit(delta.version, text, function()
            return wire.text_after(parsed_last, delta, changes)
        end)
    end)
    if not n then
        return nil, err, why
    end
    install_delta(delta, changes, n)
    return true
end

-- The version of the stored table, or nil.
function _M.stored_version()
    return dict:get(STORED_VERSION)
end

function _M.dict()
    return dict
end

return _M
