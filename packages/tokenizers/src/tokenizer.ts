/**
 * The Tokenizer: built from a GGUF file's metadata alone, encodes and decodes like llama.cpp.
 */
import type { GgufMetadata } from "@bitnet-ts/gguf";
import { BpeModel } from "./bpe";
import { fromByteLevel, toByteLevel } from "./byte-level";
import { type ChatMessage, type ChatTemplateOptions, renderChatTemplate } from "./chat";
import { StreamingDecoder, utf8 } from "./decode";
import { TokenizerError, TokenizerErrorCode } from "./errors";
import { choosePreTokenizer, type PreTokenizerChoice, type PreTokenizerMode } from "./pretokenize";
import { type Fragment, SpecialTokenMatcher } from "./special";
import { SpmModel } from "./spm";
import { TokenType, type Vocab, vocabFromGguf } from "./vocab";

export interface TokenizerOptions {
  /**
   * Pre-tokenizer for byte-level BPE files without `tokenizer.ggml.pre` (the released 2B-4T
   * file): "llama3" (default) uses LLaMA-3's pattern as the model was trained with; "llama.cpp"
   * uses llama.cpp's default patterns, bit-compatible with bitnet.cpp's tokenization.
   */
  readonly preTokenizer?: PreTokenizerMode;
}

export interface EncodeOptions {
  /** Prepend BOS (default: the file's `tokenizer.ggml.add_bos_token`). */
  readonly addBos?: boolean;
  /** Append EOS (default: the file's `tokenizer.ggml.add_eos_token`, usually false). */
  readonly addEos?: boolean;
  /** Match control tokens such as `<|eot_id|>` written in the text (default false: plain text). */
  readonly parseSpecial?: boolean;
}

export interface DecodeOptions {
  /** Render control tokens (BOS, `<|eot_id|>`, …) as their text (default false: omitted). */
  readonly special?: boolean;
  /**
   * SentencePiece only: drop the space the encoder prefixed to the text (default true when
   * the vocabulary adds a space prefix), so decode(encode(x)) === x.
   */
  readonly stripPrefixSpace?: boolean;
}

/** Pre-token → ids cache size; cleared when full (typical text reuses a few thousand words). */
const CACHE_LIMIT = 65_536;

const SPACE_MARKER = "\u2581"; // ▁

export class Tokenizer {
  readonly vocab: Vocab;
  /** The pre-tokenizer in use ("llama3", "llama.cpp-default", "gpt-2", or "sentencepiece"). */
  readonly preTokenizerName: string;
  readonly #bpe: BpeModel | undefined;
  readonly #spm: SpmModel | undefined;
  readonly #pre: PreTokenizerChoice | undefined;
  readonly #special: SpecialTokenMatcher;
  readonly #cache = new Map<string, number[]>();
  readonly #pieces: (Uint8Array | undefined)[];

  private constructor(vocab: Vocab, options: TokenizerOptions) {
    this.vocab = vocab;
    if (vocab.model === "gpt2") {
      this.#pre = choosePreTokenizer(vocab.pre, options.preTokenizer ?? "llama3");
      this.preTokenizerName = this.#pre.name;
      this.#bpe = new BpeModel(vocab.tokens, vocab.merges);
    } else {
      this.preTokenizerName = "sentencepiece";
      this.#spm = new SpmModel(vocab.tokens, vocab.scores, vocab.unk);
    }
    this.#special = new SpecialTokenMatcher(vocab.tokens, vocab.types);
    this.#pieces = new Array(vocab.tokens.length);
  }

  /**
   * Builds the tokenizer a GGUF file describes.
   *
   * @example
   * const file = await readGgufFile("model.gguf");
   * const tokenizer = Tokenizer.fromGguf(file.metadata);
   * tokenizer.encode("Hello world"); // [128000, 9906, 1917]
   */
  static fromGguf(metadata: GgufMetadata, options: TokenizerOptions = {}): Tokenizer {
    return new Tokenizer(vocabFromGguf(metadata), options);
  }

  get vocabSize(): number {
    return this.vocab.tokens.length;
  }

  get bos(): number | undefined {
    return this.vocab.bos;
  }

  get eos(): number | undefined {
    return this.vocab.eos;
  }

  get eot(): number | undefined {
    return this.vocab.eot;
  }

  /** True for tokens that end generation: EOS, EOT and EOM (llama.cpp's end-of-generation set). */
  isEndOfGeneration(id: number): boolean {
    return id === this.vocab.eos || id === this.vocab.eot || id === this.vocab.eom;
  }

  /** The ids of {@link isEndOfGeneration}. */
  endOfGenerationIds(): number[] {
    return [
      ...new Set([this.vocab.eos, this.vocab.eot, this.vocab.eom].filter((id) => id !== undefined)),
    ];
  }

  /** Drops the pre-token cache (it is bounded anyway; this frees it at once). */
  clearCache(): void {
    this.#cache.clear();
  }

  /** Text → token ids. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (!text.isWellFormed()) {
      const at = findLoneSurrogate(text);
      throw new TokenizerError(
        TokenizerErrorCode.INVALID_TEXT,
        `could not tokenize the text - it contains an unpaired surrogate (U+${text.charCodeAt(at).toString(16).toUpperCase()}) at character ${at}, which is not valid Unicode.`,
      );
    }
    const out: number[] = [];
    const addBos = options.addBos ?? this.vocab.addBos;
    if (addBos && this.vocab.bos !== undefined) {
      out.push(this.vocab.bos);
    }
    const fragments = this.#special.partition(text, options.parseSpecial ?? false);
    if (this.#spm !== undefined) {
      this.#encodeSpm(fragments, out);
    } else {
      for (const fragment of fragments) {
        if ("token" in fragment) {
          out.push(fragment.token);
        } else {
          this.#encodeBpe(fragment.text, out);
        }
      }
    }
    if ((options.addEos ?? this.vocab.addEos) && this.vocab.eos !== undefined) {
      out.push(this.vocab.eos);
    }
    return out;
  }

  #encodeBpe(text: string, out: number[]): void {
    const bpe = this.#bpe!;
    const { split, ignoreMerges } = this.#pre!;
    for (const piece of split(text)) {
      let ids = this.#cache.get(piece);
      if (ids === undefined) {
        ids = [];
        bpe.encodeWord(toByteLevel(piece), ignoreMerges, ids);
        if (this.#cache.size >= CACHE_LIMIT) {
          this.#cache.clear();
        }
        this.#cache.set(piece, ids);
      }
      for (const id of ids) {
        out.push(id);
      }
    }
  }

  #encodeSpm(fragments: Fragment[], out: number[]): void {
    // llama.cpp: a space is prefixed to the first raw fragment and to any raw fragment that
    // follows a special token; spaces become ▁.
    let previousSpecial = true;
    for (const fragment of fragments) {
      if ("token" in fragment) {
        out.push(fragment.token);
        previousSpecial = true;
        continue;
      }
      const prefixed =
        this.vocab.addSpacePrefix && previousSpecial ? ` ${fragment.text}` : fragment.text;
      this.#spm!.encode(prefixed.replaceAll(" ", SPACE_MARKER), out);
      previousSpecial = false;
    }
  }

  /** The bytes token `id` stands for (llama.cpp token_to_piece). */
  tokenBytes(id: number, options: { special?: boolean } = {}): Uint8Array {
    this.#checkId(id);
    const type = this.vocab.types[id]!;
    const text = this.vocab.tokens.get(id);
    if (type === TokenType.CONTROL || type === TokenType.UNKNOWN) {
      return options.special ? new TextEncoder().encode(text) : new Uint8Array(0);
    }
    let piece = this.#pieces[id];
    if (piece === undefined) {
      piece = this.#piece(type, text);
      this.#pieces[id] = piece;
    }
    return piece;
  }

  #piece(type: number, text: string): Uint8Array {
    if (type === TokenType.USER_DEFINED) {
      return new TextEncoder().encode(text);
    }
    if (this.vocab.model === "llama") {
      if (type === TokenType.BYTE) {
        const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(text);
        return m ? Uint8Array.of(Number.parseInt(m[1]!, 16)) : new Uint8Array(0);
      }
      return type === TokenType.NORMAL
        ? new TextEncoder().encode(text.replaceAll(SPACE_MARKER, " "))
        : new Uint8Array(0);
    }
    if (type !== TokenType.NORMAL) {
      return new Uint8Array(0);
    }
    // Byte-level vocabularies: map characters back to bytes (a foreign character is kept as UTF-8).
    return fromByteLevel(text) ?? new TextEncoder().encode(text);
  }

  /** Token ids → text (bytes joined first, so characters split across tokens come out whole). */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const parts: Uint8Array[] = [];
    let total = 0;
    let strip = this.#stripsPrefixSpace(options);
    for (const id of ids) {
      let piece = this.tokenBytes(id, options);
      if (strip && piece.length > 0) {
        if (piece[0] === 0x20) {
          piece = piece.subarray(1);
        }
        strip = false;
      }
      parts.push(piece);
      total += piece.length;
    }
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      bytes.set(p, at);
      at += p.length;
    }
    return utf8(bytes);
  }

  #stripsPrefixSpace(options: DecodeOptions): boolean {
    return this.vocab.model === "llama" && (options.stripPrefixSpace ?? this.vocab.addSpacePrefix);
  }

  /** A streaming decoder for generated tokens (never emits half a character). */
  createDecoder(options: DecodeOptions = {}): StreamingDecoder {
    let strip = this.#stripsPrefixSpace(options);
    return new StreamingDecoder((id) => {
      let piece = this.tokenBytes(id, options);
      if (strip && piece.length > 0) {
        if (piece[0] === 0x20) {
          piece = piece.subarray(1);
        }
        strip = false;
      }
      return piece;
    });
  }

  /** The vocabulary string of a token (byte-level form for BPE, e.g. "Ġthe"). */
  tokenText(id: number): string {
    this.#checkId(id);
    return this.vocab.tokens.get(id);
  }

  /** The id of an exact vocabulary string, or undefined. */
  tokenId(text: string): number | undefined {
    return this.#bpe?.tokenId(text) ?? this.#spm?.tokenId(text);
  }

  /** Renders a chat as prompt text (see {@link renderChatTemplate}). */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    const name = (id: number | undefined) => (id === undefined ? "" : this.vocab.tokens.get(id));
    return renderChatTemplate(
      this.vocab.chatTemplate,
      messages,
      { bos: name(this.vocab.bos), eos: name(this.vocab.eos) },
      options,
    );
  }

  /**
   * Renders and tokenizes a chat: special tokens in the rendered template are parsed, and BOS
   * is not added twice when the template already starts with it.
   */
  encodeChat(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): number[] {
    const text = this.applyChatTemplate(messages, options);
    const bosText =
      this.vocab.bos === undefined ? undefined : this.vocab.tokens.get(this.vocab.bos);
    const startsWithBos = bosText !== undefined && bosText.length > 0 && text.startsWith(bosText);
    return this.encode(text, { parseSpecial: true, addBos: this.vocab.addBos && !startsWithBos });
  }

  #checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocab.tokens.length) {
      throw new TokenizerError(
        TokenizerErrorCode.INVALID_TOKEN,
        `could not decode token ${id} - token ids must be integers from 0 to ${this.vocab.tokens.length - 1}.`,
      );
    }
  }
}

function findLoneSurrogate(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) {
        i++;
        continue;
      }
      return i;
    }
    if (c >= 0xdc00 && c < 0xe000) {
      return i;
    }
  }
  return -1;
}
