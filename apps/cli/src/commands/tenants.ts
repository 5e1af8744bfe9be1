/**
 * `bitnet tenants add|remove <file>`: edits the tenants file `bitnet serve --tenants` reads. A new
 * key is random (32 bytes), printed once and stored only as its SHA-256. The file is rewritten
 * through a temporary file and a rename, so a failed write never leaves it half written, and is
 * readable by its owner only.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import { hashKey, parseTenants } from "@bitnet-ts/server";
import { CliInputError } from "../errors";
import { writeFileAtomic } from "../output-file";
import type { CliIo } from "../program";

export interface TenantsAddOptions {
  name: string;
  rpm?: number;
  tpm?: number;
  streams?: number;
}

interface FileTenant {
  name: string;
  key_sha256: string;
  limits?: Record<string, number>;
}

function load(file: string): FileTenant[] {
  if (!fs.existsSync(file)) {
    return [];
  }
  const text = fs.readFileSync(file, "utf8");
  try {
    parseTenants(text, file); // the same checks as the server's
  } catch (error) {
    throw new CliInputError((error as Error).message);
  }
  return (JSON.parse(text) as { tenants: FileTenant[] }).tenants;
}

function save(file: string, tenants: FileTenant[]): void {
  const text = `${JSON.stringify({ tenants }, null, 2)}\n`;
  writeFileAtomic(file, text, "tenants file", 0o600);
}

export function runTenantsAdd(file: string, options: TenantsAddOptions, io: CliIo): void {
  const tenants = load(file);
  if (tenants.some((t) => t.name === options.name)) {
    throw new CliInputError(
      `could not add tenant "${options.name}" - ${file} has one of that name (remove it first to replace its key).`,
    );
  }
  const key = `sk-bitnet-${randomBytes(32).toString("base64url")}`;
  const limits: Record<string, number> = {
    ...(options.rpm === undefined ? {} : { requests_per_minute: options.rpm }),
    ...(options.tpm === undefined ? {} : { tokens_per_minute: options.tpm }),
    ...(options.streams === undefined ? {} : { concurrent_streams: options.streams }),
  };
  const entry: FileTenant = {
    name: options.name,
    key_sha256: hashKey(key),
    ...(Object.keys(limits).length === 0 ? {} : { limits }),
  };
  const next = [...tenants, entry];
  try {
    parseTenants(JSON.stringify({ tenants: next }), file);
  } catch (error) {
    throw new CliInputError((error as Error).message);
  }
  save(file, next);
  io.stderr(
    `added tenant "${options.name}" to ${file}; its key (shown once, stored only as its SHA-256):\n`,
  );
  io.stdout(`${key}\n`);
  io.stderr("a running `bitnet serve --tenants` takes it on SIGHUP (kill -HUP <pid>).\n");
}

export function runTenantsRemove(file: string, name: string, io: CliIo): void {
  const tenants = load(file);
  const next = tenants.filter((t) => t.name !== name);
  if (next.length === tenants.length) {
    throw new CliInputError(
      `could not remove tenant "${name}" - ${file} has no tenant of that name.`,
    );
  }
  save(file, next);
  io.stderr(`removed tenant "${name}" from ${file}; a running server drops its key on SIGHUP.\n`);
}
