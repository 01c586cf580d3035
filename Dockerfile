# k8s-router with Debian's nginx, run by tini as an unprivileged user (uid 10001) that needs
# no capability: it listens on 8080 (PORT) and the DaemonSet maps the node's port 80 to it.
#   docker build -t k8s-router .
#   podman build --secret id=npm-ca,src=/etc/ssl/certs/ca-certificates.crt -t k8s-router .
# (the secret only where npm must trust an extra CA to reach its registry: it is read by
# `npm ci` and never stored in a layer.) `npm run test:image` builds and runs this file.
# In a cluster pod, `run` watches the API server and manages nginx (BACKEND=auto picks
# nginx when the service-account token is mounted): see examples/k8s-router-daemonset.yaml.
#
# Node 24 is the LTS line the image runs on (Node 20 is past its end of life); CI runs the
# whole test suite on Node 24 as well as on Node 20, the oldest version package.json allows.
ARG NODE_IMAGE=node:24-bookworm-slim

# Build: every dependency (TypeScript among them), then compile src/, proxy/ and nginx/
# into dist/. npm's download cache is a build cache shared with the next stage and later
# builds, never part of an image.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
RUN --mount=type=cache,target=/root/.npm --mount=type=secret,id=npm-ca \
    NODE_EXTRA_CA_CERTS="$(test -s /run/secrets/npm-ca && echo /run/secrets/npm-ca)" \
    npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
COPY proxy ./proxy
COPY nginx ./nginx
RUN npm run build

# Production dependencies only, from the same lock file; no install scripts are needed.
# Type declarations and source maps are never read at run time: 35 of their 82 MB.
FROM ${NODE_IMAGE} AS production-dependencies
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm --mount=type=secret,id=npm-ca \
    NODE_EXTRA_CA_CERTS="$(test -s /run/secrets/npm-ca && echo /run/secrets/npm-ca)" \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && find node_modules -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' \) -delete

# Runtime: the base image's Node, then one layer per part below; no sources, tests, dev
# dependencies or compilers.
FROM ${NODE_IMAGE} AS runtime
# Debian's nginx (the nginx backend), its Lua module and lua-resty-core (the dynamic nginx
# mode runs Lua in nginx), and tini; apt's lists and caches go in the same layer, which
# also removes Debian's default site and adds the unprivileged user. No file capability
# is set anywhere: nothing in the container binds a port below 1024.
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx libnginx-mod-http-lua lua-resty-core tini \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log \
           /etc/nginx/sites-enabled/default \
 && groupadd --system --gid 10001 k8s-router \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin k8s-router
WORKDIR /app
# package.json says "type": "module", which makes Node load dist/ as ES modules.
COPY --from=build /app/package.json ./
# The dependencies change less often than the code: their layer comes first and is reused.
COPY --from=production-dependencies /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
ENV NODE_ENV=production
# An unprivileged port: the DaemonSet maps the node's port 80 to it (hostPort). nginx's
# prefix (NGINX_PREFIX=auto) is then /tmp/k8s-router-8080, which the router creates.
ENV PORT=8080
# Numeric, so that Kubernetes can check runAsNonRoot against the image.
USER 10001:10001
EXPOSE 8080
# tini as PID 1 forwards signals to the router and reaps nginx workers orphaned by a
# crashed nginx master.
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/src/cli.js"]
CMD ["run"]
