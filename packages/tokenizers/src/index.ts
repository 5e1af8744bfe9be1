export { BYTE_TO_CHAR, fromByteLevel, toByteLevel } from "./byte-level";
export {
  type ChatMessage,
  type ChatTemplateOptions,
  renderBitnet2b,
  renderBitnetCpp,
  renderChatTemplate,
} from "./chat";
export { StreamingDecoder } from "./decode";
export { TokenizerError, TokenizerErrorCode } from "./errors";
export {
  choosePreTokenizer,
  gpt2PreTokenizer,
  llama3PreTokenizer,
  llamaCppDefaultPreTokenizer,
  type PreTokenizer,
  type PreTokenizerMode,
} from "./pretokenize";
export {
  type DecodeOptions,
  type EncodeOptions,
  Tokenizer,
  type TokenizerOptions,
} from "./tokenizer";
export { TokenType, type Vocab, vocabFromGguf } from "./vocab";
