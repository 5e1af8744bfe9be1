export {
  CONTRACT_OTHER,
  CONTRACT_PROMPT,
  type ContractOptions,
  describeBackendContract,
  logitsBatched,
  logitsOneByOne,
  sameBits,
} from "./contract";
