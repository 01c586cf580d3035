-- Loaded by the nginx master (init_by_lua_block) with the router's settings: every module
-- is required here, so that workers, which may run as another user, never read a file.

local control = require "k8s_router.control"
local request = require "k8s_router.request"
local state = require "k8s_router.state"

local _M = {}

local poll_seconds = 0.005

-- settings: key_variable (the API-key header as nginx names its variable, e.g.
-- "http_x_routing_api_key"), max_body_size (client_max_body_size in bytes, 0: none),
-- poll_ms (how often a worker looks for a new table), dict (the shared dict's name).
function _M.init(settings)
    state.init(settings.dict)
    request.configure(settings)
    poll_seconds = settings.poll_ms / 1000
    return { control = control, request = request, state = state }
end

function _M.start_worker()
    state.start_worker(poll_seconds)
end

return _M
