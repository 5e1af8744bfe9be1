#!/usr/bin/env bash
# Scaffolds a package with the repo's template: scripts/new-package.sh packages/<name> "<one-line description>" [private]
set -euo pipefail
dir=$1; desc=$2; private=${3:-}
name=$(basename "$dir")
mkdir -p "$dir/src"
scope="@bitnet-ts/$name"
priv=""; [ -n "$private" ] && priv='"private": true,'
rel=$(realpath --relative-to="$dir" .)
cat > "$dir/package.json" <<JSON
{
  "name": "$scope",
  "version": "0.0.0",
  $priv
  "description": "$desc",
  "license": "MIT",
  "type": "module",
  "sideEffects": false,
  "engines": { "node": ">=20.10" },
  "exports": {
    ".": {
      "source": "./src/index.ts",
      "types": "./dist/index.d.ts",
      "default": "./dist/index.js"
    },
    "./package.json": "./package.json"
  },
  "main": "./dist/index.js",
  "types": "./dist/index.d.ts",
  "files": ["dist"],
  "scripts": {
    "build": "tsup",
    "typecheck": "tsc -p tsconfig.json"
  },
  "dependencies": {},
  "devDependencies": {
    "@types/node": "catalog:",
    "tsup": "catalog:",
    "typescript": "catalog:",
    "vitest": "catalog:"
  }
}
JSON
cat > "$dir/tsconfig.json" <<JSON
{
  "extends": "$rel/tsconfig.base.json",
  "include": ["src"]
}
JSON
cat > "$dir/tsup.config.ts" <<TS
import { defineConfig } from "tsup";
import { baseConfig } from "$rel/tsup.config.base";

export default defineConfig(baseConfig);
TS
cat > "$dir/vitest.config.ts" <<TS
import { packageProject } from "$rel/vitest.project.ts";

export default packageProject("$name");
TS
echo "scaffolded $dir"
