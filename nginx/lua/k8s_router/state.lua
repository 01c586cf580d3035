-- The table each worker serves. The control server stores a table in the shared dict
-- (which survives a reload of nginx, not a restart) under a new serial; every worker
-- compares the serial with its own at each request and on a short timer, and builds the
-- new table when it changed, so no request that arrives after a PUT was answered is routed
-- by an older table. Each worker writes which version it serves into the dict, for the
-- router to read back (control.lua).

local wire = require "k8s_router.wire"
local routes = require "k8s_router.routes"

local _M = {}

local DICT = "k8s_router"
local SERIAL = "serial"
local NEXT_SERIAL = "next-serial"
local STORED_VERSION = "stored-version"
local PUT_LOCK = "put-lock"
local PUT_LOCK_SECONDS = 10

local dict
local current = routes.empty()
-- The parse of the table installed: the next parse reuses its routes line by line.
local parsed_last = nil
local serial = 0

local function table_key(n)
    return "table:" .. n
end

function _M.worker_key(id)
    return "worker:" .. id
end

-- Tells the router which version this worker serves. A worker that shuts down after a
-- reload says nothing: its id belongs to a new worker now.
local function report()
    if ngx.worker.exiting() then
        return
    end
    local id = ngx.worker.id()
    if id then
        dict:set(_M.worker_key(id), ngx.worker.pid() .. " " .. (current.version or "-"))
    end
end

local function install(parsed, n)
    current = routes.build(parsed, parsed_last, current)
    parsed_last = parsed
    serial = n
    report()
end

-- `text` parsed and checked, reusing what this worker parsed before; nil and the reason.
function _M.parse(text)
    return wire.parse(text, parsed_last)
end

-- Loads the table the dict holds now, if it is not the one this worker has.
local function refresh(n)
    -- A PUT may replace the table between the serial and the text: read the serial again.
    for _ = 1, 3 do
        local text = dict:get(table_key(n))
        if text then
            local parsed, err = _M.parse(text)
            if not parsed then
                -- The control server stores only what parses: this is a bug, said loudly.
                ngx.log(ngx.CRIT, "k8s-router: stored table ", n, " does not parse: ", err)
                serial = n
                return
            end
            return install(parsed, n)
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
end

-- In each worker as it starts: the table stored before (a reload keeps it), and its report.
function _M.start_worker(poll_seconds)
    _M.current()
    report()
    local ok, err = ngx.timer.every(poll_seconds, function(premature)
        if not premature then
            _M.current()
        end
    end)
    if not ok then
        ngx.log(ngx.CRIT, "k8s-router: cannot start the table timer: ", err)
    end
end

-- Stores a parsed and checked table for every worker; nil and the reason when the dict
-- cannot take it, or another store is under way.
function _M.store(text, parsed)
    local locked, lock_err = dict:add(PUT_LOCK, true, PUT_LOCK_SECONDS)
    if not locked then
        return nil, lock_err == "exists" and "another table is being stored" or ("cannot lock: " .. tostring(lock_err))
    end
    local n, err = dict:incr(NEXT_SERIAL, 1, 0)
    if n then
        -- safe_set evicts nothing: the table in use stays until the new one is in.
        local ok, set_err = dict:safe_set(table_key(n), text)
        if ok then
            local previous = dict:get(SERIAL)
            dict:set(STORED_VERSION, parsed.version)
            dict:set(SERIAL, n)
            if previous then
                dict:delete(table_key(previous))
            end
        else
            err = "the shared dict cannot hold the table: " .. tostring(set_err)
            n = nil
        end
    end
    dict:delete(PUT_LOCK)
    if not n then
        return nil, err
    end
    install(parsed, n)
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
