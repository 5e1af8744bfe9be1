import type { VerifyReport } from "./verify";

/** The gates as an aligned table and a one-line verdict. */
export function formatVerifyReport(report: VerifyReport, file: string): string {
  const width = Math.max(...report.gates.map((g) => g.gate.length), 4);
  const lines = [
    `${"gate".padEnd(width)}  result  detail`,
    `${"-".repeat(width)}  ------  ${"-".repeat(40)}`,
  ];
  for (const g of report.gates) {
    lines.push(`${g.gate.padEnd(width)}  ${g.status.toUpperCase().padEnd(6)}  ${g.detail}`);
  }
  const failed = report.gates.filter((g) => g.status === "fail").map((g) => g.gate);
  lines.push(
    "",
    report.ok
      ? `VERIFIED: ${file} passed ${report.gates.filter((g) => g.status === "pass").length} gates (${report.gates.filter((g) => g.status === "skip").length} skipped)`
      : `REJECTED: ${file} failed ${failed.join(", ")}`,
  );
  return lines.join("\n");
}
