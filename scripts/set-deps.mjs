// Usage: node scripts/set-deps.mjs <pkgdir> dep=<range> ... [--dev dep=<range> ...]
import fs from "node:fs";

const [dir, ...args] = process.argv.slice(2);
const file = `${dir}/package.json`;
const pkg = JSON.parse(fs.readFileSync(file, "utf8"));
let field = "dependencies";
for (const arg of args) {
  if (arg === "--dev") {
    field = "devDependencies";
    continue;
  }
  const i = arg.lastIndexOf("=");
  const name = arg.slice(0, i),
    range = arg.slice(i + 1);
  pkg[field] ??= {};
  pkg[field][name] = range;
  pkg[field] = Object.fromEntries(
    Object.entries(pkg[field]).sort(([a], [b]) => a.localeCompare(b)),
  );
}
fs.writeFileSync(file, `${JSON.stringify(pkg, null, 2)}\n`);
