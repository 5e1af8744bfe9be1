/** config.json of a BitNet checkpoint, validated with a message naming the key. */
import * as fs from "node:fs";
import * as path from "node:path";
import { z } from "zod";
import { ConvertError, ConvertErrorCode } from "./errors";

const positive = z.number().int().positive();

export const HfConfigSchema = z.looseObject({
  architectures: z.array(z.string()).optional(),
  model_type: z.string().optional(),
  vocab_size: positive,
  hidden_size: positive,
  intermediate_size: positive,
  num_hidden_layers: positive,
  num_attention_heads: positive,
  num_key_value_heads: positive.optional(),
  hidden_act: z.string().optional(),
  max_position_embeddings: positive.optional(),
  rms_norm_eps: z.number().positive(),
  rope_theta: z.number().positive().optional(),
  tie_word_embeddings: z.boolean().optional(),
  bos_token_id: z.number().int().nonnegative().optional(),
  eos_token_id: z
    .union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative())])
    .optional(),
  _name_or_path: z.string().optional(),
});

export type HfConfig = z.infer<typeof HfConfigSchema>;

export function readJson(file: string, what: string): unknown {
  if (!fs.existsSync(file)) {
    throw new ConvertError(
      ConvertErrorCode.MISSING_FILE,
      `could not convert - ${what} ${file} is missing.`,
    );
  }
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (error) {
    throw new ConvertError(
      ConvertErrorCode.MISSING_FILE,
      `could not read ${what} ${file} - ${(error as Error).message}.`,
      { cause: error },
    );
  }
}

export function readConfig(dir: string): HfConfig {
  const raw = readJson(path.join(dir, "config.json"), "the config");
  const parsed = HfConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = issue.path.join(".") || "(root)";
    throw new ConvertError(
      ConvertErrorCode.BAD_CONFIG,
      `could not convert - config.json key "${key}": ${issue.message}.`,
    );
  }
  const c = parsed.data;
  if (c.hidden_size % c.num_attention_heads !== 0) {
    throw new ConvertError(
      ConvertErrorCode.BAD_CONFIG,
      `could not convert - hidden_size ${c.hidden_size} is not a multiple of num_attention_heads ${c.num_attention_heads}.`,
    );
  }
  if (c.num_attention_heads % (c.num_key_value_heads ?? c.num_attention_heads) !== 0) {
    throw new ConvertError(
      ConvertErrorCode.BAD_CONFIG,
      "could not convert - num_attention_heads is not a multiple of num_key_value_heads.",
    );
  }
  return c;
}
