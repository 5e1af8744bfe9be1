export function findNvcc():
  | { nvcc: string; version: string; reason?: undefined }
  | { reason: string; nvcc?: undefined; version?: undefined };
