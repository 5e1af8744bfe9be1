// Where the Node.js headers are on this machine (npm's nodedir, NODEDIR, or next to the running
// node binary): node-gyp builds against them and never downloads headers.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

/** A directory holding include/node/node_api.h, or undefined. */
export function findNodedir() {
  const candidates = [
    process.env.npm_config_nodedir,
    process.env.NODEDIR,
    spawnSync("npm", ["config", "get", "nodedir"], { encoding: "utf8" }).stdout?.trim(),
    path.resolve(path.dirname(process.execPath), ".."),
  ];
  for (const c of candidates) {
    if (
      c &&
      c !== "undefined" &&
      c !== "null" &&
      fs.existsSync(path.join(c, "include/node/node_api.h"))
    ) {
      return c;
    }
  }
  return undefined;
}
