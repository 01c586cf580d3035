# k8s-router with Debian's nginx, run by tini as an unprivileged user (uid 10001).
#   docker build -t k8s-router .
# In a cluster pod, `run` watches the API server and manages nginx (BACKEND=auto picks
# nginx when the service-account token is mounted): see examples/k8s-router-daemonset.yaml.
#
# Node 24 is the LTS line the image runs on (Node 20 is past its end of life); CI runs the
# whole test suite on Node 24 as well as on Node 20, the oldest version package.json allows.
ARG NODE_IMAGE=node:24-bookworm-slim

# Build: every dependency (TypeScript among them), then compile src/, proxy/ and nginx/
# into dist/.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
RUN npm ci --ignore-scripts
COPY src ./src
COPY proxy ./proxy
COPY nginx ./nginx
RUN npm run build

# Production dependencies only, from the same lock file; no install scripts are needed.
FROM ${NODE_IMAGE} AS production-dependencies
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

# Runtime: Node, Debian's nginx and tini, the compiled router and its production
# dependencies; no sources, tests or dev dependencies.
FROM ${NODE_IMAGE} AS runtime
# nginx (for the nginx backend) and node (for the in-process proxy) get the
# NET_BIND_SERVICE file capability: they bind port 80 as an unprivileged user. With
# hostNetwork they bind the node's own port 80, where neither a hostPort nor the
# ip_unprivileged_port_start sysctl (refused for hostNetwork pods) can help. The
# container needs NET_BIND_SERVICE in its capabilities and privilege escalation allowed
# (no_new_privs disables file capabilities); or set PORT above 1024 and neither is needed.
# nginx writes only in its prefix (NGINX_PREFIX=auto: k8s-router-<PORT> in /tmp, which
# the router creates for its user); Debian's default site is removed all the same. The Lua
# module and lua-resty-core are what NGINX_MODE=dynamic runs on (the router's own Lua is
# in dist/nginx/lua).
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx libnginx-mod-http-lua lua-resty-core tini libcap2-bin \
 && setcap cap_net_bind_service=+ep /usr/sbin/nginx \
 && setcap cap_net_bind_service=+ep "$(readlink -f /usr/local/bin/node)" \
 && apt-get purge -y --auto-remove libcap2-bin \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default \
 && groupadd --system --gid 10001 k8s-router \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin k8s-router
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=production-dependencies /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
ENV NODE_ENV=production
# Numeric, so that Kubernetes can check runAsNonRoot against the image.
USER 10001:10001
EXPOSE 80
# tini as PID 1 forwards signals to the router and reaps nginx workers orphaned by a
# crashed nginx master.
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/src/cli.js"]
CMD ["run"]
