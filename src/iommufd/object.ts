/**
 * iommufd objects (drivers/iommu/iommufd/main.c): every object has an ID in its context's xarray and a
 * `users` count, 1 for the xarray's own reference plus one per object or attachment that uses it.
 * IOMMU_DESTROY succeeds only when that count is exactly 1 (refcount_dec_if_one), else EBUSY; a
 * missing ID is ENOENT.
 */

export type IommufdObjType =
  | 'device'
  | 'ioas'
  | 'hwpt_paging'
  | 'hwpt_nested'
  | 'viommu'
  | 'vdevice'
  | 'veventq'
  | 'fault';

export abstract class IommufdObject {
  /** The ID user space sees (0 until allocated). */
  id = 0;
  /** 1 for the xarray, plus one per user (refcount `users`). */
  users = 1;
  abstract readonly type: IommufdObjType;
  /** The type's destroy op: release what the object holds (its users are gone). */
  abstract destroy(): void;
  /** The type's abort op (undo a failed allocation); destroy unless the type has its own. */
  abort(): void {
    this.destroy();
  }
}
