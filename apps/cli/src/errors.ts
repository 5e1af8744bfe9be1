/** The CLI's own input errors (a bad flag combination, a missing file, …). */
import { BitnetError } from "@bitnet-ts/errors";

export class CliInputError extends BitnetError {
  constructor(message: string) {
    super("CLI_INVALID_INPUT", message);
  }
}
