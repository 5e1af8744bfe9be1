# syntax=docker/dockerfile:1
# bitnet serve as a container: multi-stage, runs as a non-root user, works with a read-only root
# filesystem, the model mounted at /models (nothing is baked in), HEALTHCHECK on /health.
#
#   docker build -t bitnet-ts .          (or: podman build -t bitnet-ts .)
#   docker run --rm -p 8080:8080 --read-only -v "$PWD/models:/models:ro" bitnet-ts \
#     serve -m /models/model.gguf --host 0.0.0.0
#
# The Helm chart in deploy/helm/bitnet runs this image. The base images can be swapped for local
# ones (--build-arg BUILD_IMAGE=… RUNTIME_IMAGE=…): the build stage needs Node.js 20 with npm,
# g++, make and python3; the runtime stage Node.js 20 only.
ARG BUILD_IMAGE=node:20-bookworm
ARG RUNTIME_IMAGE=node:20-bookworm-slim

# --- build: install, compile the native kernels, build every package, then copy the CLI and its
# production dependencies (prebuilt addon included) into /app.
FROM ${BUILD_IMAGE} AS build
RUN npm install -g pnpm@10.34.8
WORKDIR /src
COPY . .
ENV CI=1 TURBO_TELEMETRY_DISABLED=1 NODE_LLAMA_CPP_SKIP_DOWNLOAD=true
RUN pnpm install --frozen-lockfile \
 && node packages/kernels-cpu/scripts/prebuilds.mjs \
 && pnpm --filter @bitnet-ts/cli deploy --legacy --prod /app

# --- runtime: Node.js only; no compiler, no package manager, no source.
FROM ${RUNTIME_IMAGE}
ENV NODE_ENV=production \
    BITNET_CACHE_DIR=/tmp/bitnet-cache
COPY --from=build --chown=root:root /app /app
# The node user (uid 1000) owns nothing it runs: the application is read-only to it.
USER 1000:1000
WORKDIR /app
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "/app/dist/bitnet.js"]
CMD ["serve", "-m", "/models/model.gguf", "--host", "0.0.0.0", "--port", "8080"]
