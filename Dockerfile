# k8s-router with Debian's nginx. Build: docker build -t k8s-router .
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY nginx ./nginx
COPY proxy ./proxy
# `npm ci` runs the prepare script, which compiles to dist/.
RUN npm ci && npm prune --omit=dev

FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx tini \
 && rm -rf /var/lib/apt/lists/* \
 && rm -f /etc/nginx/sites-enabled/default
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
ENV NODE_ENV=production
EXPOSE 80
# tini as PID 1 reaps nginx workers orphaned by a crashed nginx master and forwards signals.
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/src/cli.js"]
# In a cluster pod, `run` watches the API server and manages nginx (BACKEND=auto picks
# nginx when the service-account token is mounted).
CMD ["run"]
