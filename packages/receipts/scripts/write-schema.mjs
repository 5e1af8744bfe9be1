// Regenerates schema/receipt-<version>.schema.json from the zod schema (run after `pnpm build`).
import * as fs from "node:fs";
import * as path from "node:path";
import { RECEIPT_SCHEMA_VERSION, receiptJsonSchema } from "../dist/index.js";

const file = path.resolve(
  import.meta.dirname,
  `../schema/receipt-${RECEIPT_SCHEMA_VERSION}.schema.json`,
);
fs.writeFileSync(file, `${JSON.stringify(receiptJsonSchema(), null, 2)}\n`);
console.log(`wrote ${file}`);
