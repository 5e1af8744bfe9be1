/**
 * Runs the longest test files first. With two workers, vitest's default order (projects by name,
 * then larger files first, when it has no durations cached, as on a fresh clone) can leave one
 * worker on a long file near the end while the other idles; longest first bounds that tail by
 * the shortest files. Durations come from vitest's own cache when it has them, else from
 * scripts/test-durations.json (recorded per architecture by scripts/test-durations.mjs from a
 * run's JSON reports); files in neither run first, as vitest runs unknown files first. Where
 * nothing is recorded for this architecture, vitest's own order stands: under qemu (the arm64
 * phase of CI) the two longest files together, each running the native kernels on threads of
 * its own, slowed each other by 15-45% and the phase took 751 s instead of 704.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { BaseSequencer, type TestSpecification } from "vitest/node";

const REPO = path.dirname(fileURLToPath(import.meta.url));
const RECORDED = path.join(REPO, "scripts/test-durations.json");

function recordedDurations(): Record<string, number> {
  try {
    const all = JSON.parse(fs.readFileSync(RECORDED, "utf8")) as Record<
      string,
      Record<string, number>
    >;
    return all[process.arch] ?? {};
  } catch {
    return {};
  }
}

export class LongestFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const recorded = recordedDurations();
    if (Object.keys(recorded).length === 0) {
      return super.sort(files);
    }
    const root = this.ctx.config.root;
    // Milliseconds: vitest caches them so; the recorded file keeps seconds.
    const duration = (spec: TestSpecification): number => {
      const key = `${spec.project.name}:${path.relative(root, spec.moduleId)}`;
      const cached = this.ctx.cache.getFileTestResults(key)?.duration;
      const seconds = recorded[path.relative(REPO, spec.moduleId)];
      return cached ?? (seconds === undefined ? Number.POSITIVE_INFINITY : seconds * 1000);
    };
    const order = new Map(files.map((spec) => [spec, duration(spec)]));
    return [...files].sort((a, b) => {
      const da = order.get(a)!;
      const db = order.get(b)!;
      return da === db ? 0 : db > da ? 1 : -1;
    });
  }
}
