-- The control server, on a unix socket only the router can reach. At /table, PUT stores a
-- whole table and PATCH a delta (wire.lua has both texts), each checked whole first: 400
-- and the reason when it is not usable, 409 while another store is under way, 412 when a
-- delta is not for the table nginx holds (the router then puts the whole table), 413 for a
-- delta over MAX_DELTA_BYTES, 507 when the shared dict cannot hold it. GET /versions says
-- which table each worker serves:
--
--   k8s-router-versions 1
--   workers COUNT
--   stored VERSION or -
--   worker ID PID VERSION or -      (one line per worker id that reported)
--
-- A store answers 200 "stored VERSION" and, on the next lines, the same report, made once
-- every worker serves the table or after CONFIRM_WAIT_SECONDS: the router, which must
-- know that every worker serves it, most often needs no other question.

local state = require "k8s_router.state"
local wire = require "k8s_router.wire"

local _M = {}

-- The other workers look for a new table every few ms (main.lua's poll): a store waits
-- about that long for them, no longer than this.
local CONFIRM_WAIT_SECONDS = 0.05

local function respond(status, text)
    ngx.status = status
    ngx.header["Content-Type"] = "text/plain"
    ngx.print(text, "\n")
end

local function body()
    ngx.req.read_body()
    local text = ngx.req.get_body_data()
    if text then
        return text
    end
    -- A body larger than client_body_buffer_size waits in a file.
    local path = ngx.req.get_body_file()
    if not path then
        return nil
    end
    local file = io.open(path, "rb")
    if not file then
        return nil
    end
    text = file:read("*a")
    file:close()
    return text
end

-- What each worker serves, as GET /versions says it.
local function report_text()
    local dict = state.dict()
    local count = ngx.worker.count()
    local lines = { "k8s-router-versions 1", "workers " .. count, "stored " .. (state.stored_version() or "-") }
    for id = 0, count - 1 do
        local report = dict:get(state.worker_key(id))
        if report then
            lines[#lines + 1] = "worker " .. id .. " " .. report
        end
    end
    return table.concat(lines, "\n")
end

-- Whether every worker id's last report names `version`.
local function all_serve(version)
    local dict = state.dict()
    local tail = " " .. version
    for id = 0, ngx.worker.count() - 1 do
        local report = dict:get(state.worker_key(id))
        if not report or string.sub(report, -#tail) ~= tail then
            return false
        end
    end
    return true
end

-- Answers a store of `version`: once every worker serves it, or CONFIRM_WAIT_SECONDS passed.
local function stored(version)
    local deadline = ngx.now() + CONFIRM_WAIT_SECONDS
    while not all_serve(version) and ngx.now() < deadline do
        ngx.sleep(0.001)
    end
    return respond(200, "stored " .. version .. "\n" .. report_text())
end

local STATUS = { [state.BUSY] = 409, [state.NOT_BASE] = 412, [state.NO_ROOM] = 507 }

local function put()
    local text = body()
    if not text then
        return respond(400, "no table in the request body")
    end
    local parsed, err = state.parse(text)
    if not parsed then
        return respond(400, err)
    end
    local ok, store_err, why = state.store(text, parsed)
    if not ok then
        return respond(STATUS[why] or 500, store_err)
    end
    return stored(parsed.version)
end

local function patch()
    local text = body()
    if not text then
        return respond(400, "no delta in the request body")
    end
    if #text > state.MAX_DELTA_BYTES then
        return respond(413, "a delta is at most " .. state.MAX_DELTA_BYTES .. " bytes: put the whole table")
    end
    local delta, err = wire.parse_delta(text)
    if not delta then
        return respond(400, err)
    end
    local ok, store_err, why = state.patch(text, delta)
    if not ok then
        return respond(STATUS[why] or 500, store_err)
    end
    return stored(delta.version)
end

function _M.table()
    local method = ngx.req.get_method()
    if method == "PUT" then
        return put()
    elseif method == "PATCH" then
        return patch()
    end
    ngx.header["Allow"] = "PUT, PATCH"
    return respond(405, "PUT a table or PATCH a delta here")
end

function _M.versions()
    if ngx.req.get_method() ~= "GET" then
        ngx.header["Allow"] = "GET"
        return respond(405, "GET the versions here")
    end
    return respond(200, report_text())
end

return _M
