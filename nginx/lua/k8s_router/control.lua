-- The control server, on a unix socket only the router can reach: PUT /table stores a
-- table (checked whole first: 400 and the reason when it is not usable), GET /versions
-- says which table each worker serves.
--
--   k8s-router-versions 1
--   workers COUNT
--   stored VERSION or -
--   worker ID PID VERSION or -      (one line per worker id that reported)

local state = require "k8s_router.state"

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

function _M.table()
    if ngx.req.get_method() ~= "PUT" then
        ngx.header["Allow"] = "PUT"
        return respond(405, "PUT a table here")
    end
    local text = body()
    if not text then
        return respond(400, "no table in the request body")
    end
    local parsed, err = state.parse(text)
    if not parsed then
        return respond(400, err)
    end
    local ok, store_err = state.store(text, parsed)
    if not ok then
        return respond(store_err == "another table is being stored" and 409 or 507, store_err)
    end
    return respond(200, "stored " .. parsed.version)
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
