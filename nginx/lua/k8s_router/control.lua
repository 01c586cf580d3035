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

local state = require "k8s_router.state"
local wire = require "k8s_router.wire"

local _M = {}

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
    return respond(200, "stored " .. parsed.version)
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
    return respond(200, "stored " .. delta.version)
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
    local dict = state.dict()
    local count = ngx.worker.count()
    local lines = { "k8s-router-versions 1", "workers " .. count, "stored " .. (state.stored_version() or "-") }
    for id = 0, count - 1 do
        local report = dict:get(state.worker_key(id))
        if report then
            lines[#lines + 1] = "worker " .. id .. " " .. report
        end
    end
    return respond(200, table.concat(lines, "\n"))
end

return _M
