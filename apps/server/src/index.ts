export { Admission, type AdmissionOptions, type KvCapacity } from "./admission";
export { ApiError, type ApiErrorType, ServerListenError } from "./errors";
export { type BitnetServer, type ServerOptions, startServer } from "./server";
export {
  hashKey,
  parseTenants,
  readTenantsFile,
  type TenantConfig,
  type TenantLimits,
  TenantsFileError,
} from "./tenants";
