/**
 * An iommufd context: one open of /dev/iommu (struct iommufd_ctx, main.c). Objects live in an xarray
 * of IDs allocated lowest-free from 1 (XA_FLAGS_ALLOC1): an ID is reserved when an allocation starts,
 * published when it succeeds and freed when it fails, so a failed IOMMU_HWPT_ALLOC uses up no ID
 * (oracle a-nested-happy: HWPT 3, vIOMMU 4, nested HWPT 5 after four refused allocations). A vDEVICE
 * destroyed because its device was unbound leaves its ID reserved (a tombstone).
 *
 * The context lives as long as its file is referenced: the fd, every bound device, every vEVENTQ fd.
 * The last reference destroys every object, leaves first.
 */

import type { IommuGroup } from '../iommu/group.ts';
import { EBUSY, ENOENT } from '../uapi/errno.ts';
import type { IommufdCore } from './core.ts';
import type { AccountMode } from './io-pagetable.ts';
import type { IommufdObject, IommufdObjType } from './object.ts';
import { type Ioas, IommufdGroup } from './objects.ts';

const XA_LIMIT_31B = 0x7fff_ffff;

export class IommufdCtx {
  /** ID -> object, or 'reserved' while being allocated, or 'tombstone'. */
  readonly entries = new Map<number, IommufdObject | 'reserved' | 'tombstone'>();
  /** IOMMU_OPTION_RLIMIT_MODE: the user's locked_vm (default) or the mm's ('mm', as VFIO). */
  accountMode: AccountMode = 'user';
  /** References to the context's file (fd, bound devices, vEVENTQ and fault fds). */
  refs = 1;
  /** The IOAS of the VFIO compatibility container (IOMMU_VFIO_IOAS). */
  vfioIoas: Ioas | null = null;
  private readonly groups = new Map<IommuGroup, { ig: IommufdGroup; refs: number }>();

  constructor(readonly core: IommufdCore) {}

  /** _iommufd_object_alloc: reserves the lowest free ID (-EBUSY when none is left). */
  alloc<T extends IommufdObject>(obj: T): T | number {
    let id = 1;
    while (this.entries.has(id)) id++;
    if (id > XA_LIMIT_31B) return -EBUSY;
    obj.id = id;
    this.entries.set(id, 'reserved');
    return obj;
  }

  /** iommufd_object_finalize: the object becomes visible to user space. */
  finalize(obj: IommufdObject): void {
    this.entries.set(obj.id, obj);
  }

  /** iommufd_object_abort_and_destroy: the type's abort op, then the ID is free again. */
  abortAndDestroy(obj: IommufdObject): void {
    obj.abort();
    this.entries.delete(obj.id);
  }

  /** iommufd_get_object: a published object of that type (any type when omitted), or undefined (ENOENT). */
  get(id: number, type?: IommufdObjType): IommufdObject | undefined {
    const o = this.entries.get(id);
    if (o === undefined || typeof o === 'string') return undefined;
    if (type !== undefined && o.type !== type) return undefined;
    return o;
  }

  /** The compatibility IOAS while it is still a live IOAS object (iommufd_vfio_compat_ioas_get), else null. */
  compatIoas(): Ioas | null {
    const ioas = this.vfioIoas;
    return ioas !== null && this.get(ioas.id, 'ioas') === ioas ? ioas : null;
  }

  /** IOMMU_DESTROY (iommufd_object_remove without a caller reference): ENOENT, EBUSY, or gone. */
  destroyId(id: number): number {
    const o = this.entries.get(id);
    if (o === undefined || typeof o === 'string') return -ENOENT;
    if (o.users !== 1) return -EBUSY;
    this.entries.delete(id);
    o.users = 0;
    o.destroy();
    return 0;
  }

  /**
   * iommufd_object_remove with the caller's reference (put_and_try_destroy, destroy_user,
   * tombstone_user): that reference is dropped, then the object goes if nobody else uses it.
   */
  removeWithRef(obj: IommufdObject, tombstone = false): number {
    obj.users--;
    if (obj.users !== 1) return -EBUSY;
    if (tombstone) this.entries.set(obj.id, 'tombstone');
    else this.entries.delete(obj.id);
    obj.users = 0;
    obj.destroy();
    return 0;
  }

  /** iommufd_get_group: the context's state for an IOMMU group, shared by its devices. */
  getGroup(group: IommuGroup): IommufdGroup {
    let e = this.groups.get(group);
    if (e === undefined) {
      e = { ig: new IommufdGroup(group), refs: 0 };
      this.groups.set(group, e);
    }
    e.refs++;
    return e.ig;
  }

  dropGroup(ig: IommufdGroup): void {
    const e = this.groups.get(ig.group);
    if (e !== undefined && --e.refs === 0) this.groups.delete(ig.group);
  }

  /** iommufd_ctx_get: another reference to the context's file. */
  ref(): void {
    this.refs++;
  }

  /** iommufd_ctx_put: the last reference releases the context. */
  put(): void {
    if (--this.refs === 0) this.release();
  }

  /** iommufd_fops_release: destroy every object whose only user is the xarray, until none is left. */
  private release(): void {
    for (;;) {
      let destroyed = 0;
      let left = false;
      for (const [id, o] of [...this.entries]) {
        if (typeof o === 'string') continue;
        left = true;
        if (o.users !== 1) continue;
        this.entries.delete(id);
        o.users = 0;
        o.destroy();
        destroyed++;
      }
      if (!left || destroyed === 0) break;
    }
    this.entries.clear();
  }
}
