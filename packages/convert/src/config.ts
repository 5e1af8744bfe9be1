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
  // null is what transformers writes for "same as num_attention_heads".
  num_key_value_heads: positive.nullable().optional(),
  hidden_act: z.string().optional(),
  max_position_embeddings: positive.optional(),
  rms_norm_eps: z.number().positive().optional(),
  rope_theta: z.number().positive().optional(),
  // transformers ≥ 4.56 saves the RoPE base here instead of in rope_theta.
  rope_parameters: z.looseObject({ rope_theta: z.number().positive().optional() }).nullish(),
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
  return c;
}

/**
 * Which transformers config class reads the checkpoint's config.json, and so which defaults
 * apply to the keys it leaves out: `BitNetConfig` (models/bitnet/configuration_bitnet.py) for
 * the microsoft/bitnet-b1.58-2B-4T layouts (packed and bf16, `model_type: "bitnet"`), and
 * `LlamaConfig` for 1bitLLM/bitnet_b1_58 (`model_type: "llama"`; its remote-code BitnetConfig
 * is a copy of LlamaConfig with the same defaults).
 */
export type ConfigClass = "BitNetConfig" | "LlamaConfig";

export interface ConfigDefaults {
  readonly rope_theta: number;
  readonly rms_norm_eps: number;
  readonly max_position_embeddings: number;
  readonly hidden_act: string;
  /** A number, or "num_attention_heads" where the class copies that. */
  readonly num_key_value_heads: number | "num_attention_heads";
  readonly tie_word_embeddings: boolean;
}

/**
 * transformers' defaults for the keys bitnet convert reads and does not require. They differ:
 * BitNetConfig's RoPE base is 500000 (`default_theta`), LlamaConfig's 10000; BitNetConfig's
 * rms_norm_eps is 1e-5, LlamaConfig's 1e-6; BitNetConfig's activation is relu2, LlamaConfig's
 * silu; BitNetConfig's num_key_value_heads default is 5 (the 2B-4T value; an explicit null means
 * num_attention_heads), LlamaConfig's is num_attention_heads. Both default max_position_embeddings
 * to 2048 and tie_word_embeddings to false. The dimensions (vocab_size, hidden_size, …) are
 * required instead of defaulted: a config without them is not a checkpoint's own config.
 */
export const CONFIG_DEFAULTS: Readonly<Record<ConfigClass, ConfigDefaults>> = {
  BitNetConfig: {
    rope_theta: 500000,
    rms_norm_eps: 1e-5,
    max_position_embeddings: 2048,
    hidden_act: "relu2",
    num_key_value_heads: 5,
    tie_word_embeddings: false,
  },
  LlamaConfig: {
    rope_theta: 10000,
    rms_norm_eps: 1e-6,
    max_position_embeddings: 2048,
    hidden_act: "silu",
    num_key_value_heads: "num_attention_heads",
    tie_word_embeddings: false,
  },
};

/** The hyperparameters a conversion uses: config.json's values, else the config class's defaults. */
export interface ResolvedConfig {
  readonly configClass: ConfigClass;
  readonly ropeTheta: number;
  readonly rmsNormEps: number;
  readonly contextLength: number;
  readonly hiddenAct: string;
  readonly nHeadKv: number;
  readonly tieWordEmbeddings: boolean;
  /** The keys config.json leaves out, with the default each got (e.g. "rope_theta 500000"). */
  readonly defaulted: readonly string[];
}

/** Fills in what config.json leaves out as `configClass` does, and checks the head counts. */
export function resolveConfig(c: HfConfig, configClass: ConfigClass): ResolvedConfig {
  const d = CONFIG_DEFAULTS[configClass];
  const defaulted: string[] = [];
  function pick<T>(key: string, value: T | undefined, fallback: T): T {
    if (value !== undefined) {
      return value;
    }
    defaulted.push(`${key} ${String(fallback)}`);
    return fallback;
  }
  const nHeadKv =
    c.num_key_value_heads === null
      ? c.num_attention_heads
      : pick(
          "num_key_value_heads",
          c.num_key_value_heads,
          d.num_key_value_heads === "num_attention_heads"
            ? c.num_attention_heads
            : d.num_key_value_heads,
        );
  const resolved: ResolvedConfig = {
    configClass,
    ropeTheta: pick("rope_theta", c.rope_theta ?? c.rope_parameters?.rope_theta, d.rope_theta),
    rmsNormEps: pick("rms_norm_eps", c.rms_norm_eps, d.rms_norm_eps),
    contextLength: pick(
      "max_position_embeddings",
      c.max_position_embeddings,
      d.max_position_embeddings,
    ),
    hiddenAct: pick("hidden_act", c.hidden_act, d.hidden_act),
    nHeadKv,
    tieWordEmbeddings: pick("tie_word_embeddings", c.tie_word_embeddings, d.tie_word_embeddings),
    defaulted,
  };
  if (c.num_attention_heads % nHeadKv !== 0) {
    const why =
      c.num_key_value_heads === undefined
        ? ` (config.json has no num_key_value_heads; ${configClass}'s default is ${nHeadKv} - set it, or null for num_attention_heads)`
        : "";
    throw new ConvertError(
      ConvertErrorCode.BAD_CONFIG,
      `could not convert - num_attention_heads ${c.num_attention_heads} is not a multiple of num_key_value_heads ${nHeadKv}${why}.`,
    );
  }
  return resolved;
}
