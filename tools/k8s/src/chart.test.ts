import * as fs from "node:fs";
import * as path from "node:path";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { Service } from "kubernetes-models/v1/Service";
import { describe, expect, it } from "vitest";
import { type Manifest, REPO, render, rendererMissing } from "./render";

/** The Kubernetes API schema of each kind the chart renders (kubernetes-models' validators). */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  "apps/v1/Deployment": Deployment,
  "v1/Service": Service,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
};

function validate(m: Manifest): void {
  const model = MODELS[`${m.apiVersion}/${m.kind}`];
  if (model === undefined) {
    throw new Error(`no schema for ${m.apiVersion} ${m.kind}`);
  }
  new model(m as never).validate();
}

const missing = rendererMissing();
const byKind = (docs: Manifest[], kind: string) => docs.find((d) => d.kind === kind);
// biome-ignore lint/suspicious/noExplicitAny: manifests are deep untyped JSON here
type Any = any;

describe.skipIf(missing !== undefined)(
  `the Helm chart (deploy/helm/bitnet)${missing ? ` — skipped: ${missing}` : ""}`,
  () => {
    it.each([
      ["default values", {}],
      [
        "autoscaling off, no PDB, tenants, a hostPath model",
        {
          autoscaling: { enabled: false },
          replicaCount: 3,
          podDisruptionBudget: null,
          tenantsSecret: "bitnet-tenants",
          model: { volume: { hostPath: { path: "/srv/models", type: "Directory" } } },
          server: { extraArgs: ["--draft", "lookup"] },
          nodeSelector: { "kubernetes.io/arch": "amd64" },
        },
      ],
    ])("renders manifests the Kubernetes API schemas accept: %s", (_what, values) => {
      const docs = render(values);
      expect(docs.length).toBeGreaterThanOrEqual(2);
      for (const doc of docs) {
        expect(() => validate(doc), `${doc.kind} ${doc.metadata.name}`).not.toThrow();
      }
    });

    it("says what the issue asks of a deployment: probes, non-root, read-only, sized, drained", () => {
      const docs = render();
      expect(docs.map((d) => d.kind).sort()).toEqual([
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
      ]);
      const deployment = byKind(docs, "Deployment") as Any;
      const pod = deployment.spec.template.spec;
      const container = pod.containers[0];
      // Ready = model loaded: /health answers 503 until then.
      expect(container.readinessProbe.httpGet).toEqual({ path: "/health", port: "http" });
      expect(container.livenessProbe.httpGet.path).toBe("/health");
      expect(pod.securityContext.runAsNonRoot).toBe(true);
      expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
      expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
      // The model is mounted read-only, not in the image.
      expect(container.volumeMounts).toContainEqual({
        name: "models",
        mountPath: "/models",
        readOnly: true,
      });
      expect(container.args).toEqual(expect.arrayContaining(["serve", "-m", "/models/model.gguf"]));
      // Memory sized from the model file: 1244659712 B = 1187 MiB + 1536 MiB for KV and runtime.
      expect(container.resources.requests.memory).toBe("2723Mi");
      expect(container.resources.limits.memory).toBe("3235Mi");
      // Streams get --grace seconds to finish; the pod's grace period covers it and the preStop.
      const grace = Number(container.args[container.args.indexOf("--grace") + 1]);
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(grace + 5);
      expect(container.lifecycle.preStop.exec.command).toEqual(["sleep", "5"]);
      // With the autoscaler on, it owns the replica count.
      expect(deployment.spec.replicas).toBeUndefined();
      const hpa = byKind(docs, "HorizontalPodAutoscaler") as Any;
      expect(hpa.spec.metrics[0].pods.metric.name).toBe("bitnet_queue_depth");
      expect(hpa.spec.scaleTargetRef.name).toBe(deployment.metadata.name);
      const pdb = byKind(docs, "PodDisruptionBudget") as Any;
      expect(pdb.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
      const service = byKind(docs, "Service") as Any;
      expect(service.spec.selector).toEqual(deployment.spec.selector.matchLabels);
    });

    it("sizes memory from the model, and wires the tenants secret", () => {
      const docs = render({
        model: { fileBytes: 4 * 2 ** 30 },
        resources: { kvAndRuntimeMiB: 1024 },
        tenantsSecret: "keys",
        autoscaling: { enabled: false },
      });
      const deployment = byKind(docs, "Deployment") as Any;
      const container = deployment.spec.template.spec.containers[0];
      expect(container.resources.requests.memory).toBe(`${4096 + 1024}Mi`);
      expect(container.args).toEqual(
        expect.arrayContaining(["--tenants", "/etc/bitnet/tenants.json"]),
      );
      expect(deployment.spec.template.spec.volumes).toContainEqual({
        name: "tenants",
        secret: { secretName: "keys" },
      });
      expect(deployment.spec.replicas).toBe(2);
      expect(byKind(docs, "HorizontalPodAutoscaler")).toBeUndefined();
    });

    it("the validators catch a broken manifest (the check can fail)", () => {
      const deployment = byKind(render(), "Deployment") as Any;
      deployment.spec.template.spec.containers[0].ports[0].containerPort = "eighty";
      expect(() => validate(deployment)).toThrow();
      const noSelector = byKind(render(), "Deployment") as Any;
      delete noSelector.spec.selector;
      expect(() => validate(noSelector)).toThrow();
    });
  },
);

describe("the Dockerfile", () => {
  const text = fs.readFileSync(path.join(REPO, "Dockerfile"), "utf8");
  const instructions = text
    .split("\n")
    .filter((l) => /^[A-Z]+\s/.test(l))
    .map((l) => l.split(/\s+/)[0]);

  it("is multi-stage, runs as non-root, has a HEALTHCHECK on /health and no model inside", () => {
    expect(instructions.filter((i) => i === "FROM")).toHaveLength(2);
    expect(text).toContain("ARG RUNTIME_IMAGE=node:20-bookworm-slim");
    const runtime = text.slice(text.lastIndexOf("\nFROM "));
    expect(runtime).toMatch(/\nUSER 1000:1000\n/);
    expect(runtime).toMatch(/HEALTHCHECK[\s\S]*\/health/);
    expect(runtime).not.toMatch(/\nRUN /); // nothing installed or written at build time
    expect(text).not.toMatch(/COPY[^\n]*\.gguf/);
    expect(runtime).toContain('CMD ["serve", "-m", "/models/model.gguf"');
  });

  it("leaves the build's noise out of the context (.dockerignore)", () => {
    const ignore = fs.readFileSync(path.join(REPO, ".dockerignore"), "utf8").split("\n");
    for (const entry of ["**/node_modules", ".cache", ".git"]) {
      expect(ignore).toContain(entry);
    }
  });
});
