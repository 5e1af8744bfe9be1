/**
 * Cutting special tokens out of raw text, as llama.cpp's tokenizer_st_partition does: every
 * special token (longest first) is searched in every remaining raw fragment and cut out.
 */
import type { GgufStringList } from "@bitnet-ts/gguf";
import { TokenType } from "./vocab";

/** A piece of input: raw text still to tokenize, or a token already decided. */
export type Fragment = { readonly text: string } | { readonly token: number };

interface SpecialToken {
  readonly text: string;
  readonly id: number;
  /** CONTROL and UNKNOWN tokens are only matched when special parsing is requested. */
  readonly onlyWhenParsingSpecial: boolean;
}

export class SpecialTokenMatcher {
  readonly #specials: SpecialToken[];

  constructor(tokens: GgufStringList, types: Int32Array) {
    const specials: SpecialToken[] = [];
    for (let id = 0; id < tokens.length; id++) {
      const type = types[id];
      if (
        (type === TokenType.CONTROL ||
          type === TokenType.USER_DEFINED ||
          type === TokenType.UNKNOWN) &&
        tokens.end(id) > tokens.start(id)
      ) {
        specials.push({
          text: tokens.get(id),
          id,
          onlyWhenParsingSpecial: type !== TokenType.USER_DEFINED,
        });
      }
    }
    // Longest first; stable for equal lengths (lower id first), as llama.cpp's sort.
    specials.sort((a, b) => b.text.length - a.text.length || a.id - b.id);
    this.#specials = specials;
  }

  partition(text: string, parseSpecial: boolean): Fragment[] {
    let fragments: Fragment[] = [{ text }];
    for (const special of this.#specials) {
      if (special.onlyWhenParsingSpecial && !parseSpecial) {
        continue;
      }
      if (!text.includes(special.text)) {
        continue; // cheap whole-input check: most specials never occur
      }
      const next: Fragment[] = [];
      for (const fragment of fragments) {
        if (!("text" in fragment)) {
          next.push(fragment);
          continue;
        }
        let from = 0;
        for (
          let at = fragment.text.indexOf(special.text);
          at >= 0;
          at = fragment.text.indexOf(special.text, from)
        ) {
          if (at > from) {
            next.push({ text: fragment.text.slice(from, at) });
          }
          next.push({ token: special.id });
          from = at + special.text.length;
        }
        if (from < fragment.text.length) {
          next.push({ text: fragment.text.slice(from) });
        }
      }
      fragments = next;
    }
    return fragments;
  }
}
