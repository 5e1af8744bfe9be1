/**
 * Renders the Helm chart with tools/k8s/render (Go: text/template + sprig + Helm's additions,
 * built here from Debian's Go packages since the helm binary cannot be installed) and parses
 * the documents.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO: string = path.resolve(here, "../../..");
export const CHART: string = path.join(REPO, "deploy/helm/bitnet");
const GOPATH = "/usr/share/gocode";

/** Why the renderer cannot be built here, or undefined. */
export function rendererMissing(): string | undefined {
  if (spawnSync("go", ["version"]).status !== 0) {
    return "no Go toolchain (apt-get install golang-go)";
  }
  for (const dir of ["github.com/Masterminds/sprig", "gopkg.in/yaml.v3"]) {
    if (!fs.existsSync(path.join(GOPATH, "src", dir))) {
      return `Go package ${dir} missing (apt-get install golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev)`;
    }
  }
  return undefined;
}

let built: string | undefined;

/** Builds the renderer once (GOPATH mode, offline). */
export function buildRenderer(): string {
  if (built !== undefined) {
    return built;
  }
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "bitnet-render-")), "render");
  const r = spawnSync("go", ["build", "-o", out, "main.go"], {
    cwd: path.join(here, "../render"),
    encoding: "utf8",
    env: {
      ...process.env,
      GO111MODULE: "off",
      GOPATH,
      GOFLAGS: "",
      GOCACHE: path.join(os.tmpdir(), "bitnet-render-gocache"),
    },
  });
  if (r.status !== 0) {
    throw new Error(`could not build the renderer:\n${r.stderr}`);
  }
  built = out;
  return out;
}

export interface Manifest {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly labels?: Record<string, string> };
  readonly spec: Record<string, unknown>;
  readonly [key: string]: unknown;
}

/** `helm template` of the chart with these values merged over values.yaml. */
export function render(values: Record<string, unknown> = {}, release = "demo"): Manifest[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bitnet-values-"));
  const file = path.join(dir, "values.json"); // JSON is YAML
  fs.writeFileSync(file, JSON.stringify(values));
  const r = spawnSync(buildRenderer(), ["-f", file, "--release", release, CHART], {
    encoding: "utf8",
  });
  fs.rmSync(dir, { recursive: true, force: true });
  if (r.status !== 0) {
    throw new Error(`render failed: ${r.stderr}`);
  }
  return parseAllDocuments(r.stdout)
    .map((d) => {
      if (d.errors.length > 0) {
        throw new Error(`rendered YAML does not parse: ${d.errors[0]!.message}`);
      }
      return d.toJS() as Manifest | null;
    })
    .filter((m): m is Manifest => m !== null);
}
