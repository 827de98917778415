/**
 * Ranges [iova, iova + size) in an AVL tree ordered by iova: type-1's rb-tree of vfio_dma and
 * virtio-iommu's mapping trees. Every operation is O(log n), so the per-map cost at 65 535 mappings
 * stays close to the cost at 1 000, and a huge mapping is one node. Ranges are disjoint, except
 * where a driver's own bookkeeping lets them overlap (then the end order follows the start order).
 * Keys are numbers: IOVAs are multiples of 4 KiB, exact as doubles up to 2^64.
 *
 * Nodes live in parallel typed arrays indexed by node number (key, children, height), not as objects:
 * a descent reads a few dense arrays instead of chasing node objects spread over the heap (UNMAP_ALL
 * of 65 535 mappings on virtio-iommu, three trees a mapping: 64-69 -> 30-31 ms, bench unmap-all).
 */

export interface Range {
  iova: number;
  size: number;
}

/** No node. */
const NIL = -1;

/** Depth bound of an AVL tree of up to 2^40 nodes (1.44 log2 n + 2). */
const MAX_DEPTH = 64;

export class RangeTree<T extends Range> {
  /** Per node: value.iova (a descent compares without loading the value), children, height. */
  private keys = new Float64Array(16);
  private lefts = new Int32Array(16);
  private rights = new Int32Array(16);
  private heights = new Int8Array(16);
  private readonly values: (T | undefined)[] = [];
  private root = NIL;
  private count = 0;
  /** Nodes ever used; removed ones are chained through `lefts` from `freeList` and reused. */
  private used = 0;
  private freeList = NIL;
  /** The search path of the insert or remove in progress. */
  private readonly path = new Int32Array(MAX_DEPTH);
  private everOverlapped = false;

  get size(): number {
    return this.count;
  }

  /**
   * Whether an insert ever overlapped a neighbour. Until one does the ranges are disjoint, and the
   * searches go by the keys in the nodes alone, reading one range at the end instead of one a level.
   */
  get overlapped(): boolean {
    return this.everOverlapped;
  }

  /**
   * Inserts a range. Returns whether it overlaps one of its neighbours in iova order: in a tree of
   * disjoint ranges that is whether it overlaps any (found on the way down, at no extra cost).
   */
  insert(value: T): boolean {
    return this.place(value, true);
  }

  /** Inserts a range unless it overlaps a neighbour (see insert); returns whether it went in. */
  insertIfFree(value: T): boolean {
    return !this.place(value, false);
  }

  /** Removes the range that starts at value.iova. */
  remove(value: T): void {
    const keys = this.keys;
    const lefts = this.lefts;
    const rights = this.rights;
    const path = this.path;
    const iova = value.iova;
    let depth = 0;
    let n = this.root;
    while (n !== NIL && keys[n] !== iova) {
      path[depth++] = n;
      n = iova < keys[n] ? lefts[n] : rights[n];
    }
    if (n === NIL) throw new Error(`RangeTree: no range at ${iova}`);
    this.count--;
    let doomed = n;
    if (lefts[n] !== NIL && rights[n] !== NIL) {
      // Two children: the successor's value moves here and the successor's node goes instead.
      path[depth++] = n;
      let m = rights[n];
      while (lefts[m] !== NIL) {
        path[depth++] = m;
        m = lefts[m];
      }
      this.values[n] = this.values[m];
      keys[n] = keys[m];
      doomed = m;
    }
    const child = lefts[doomed] !== NIL ? lefts[doomed] : rights[doomed];
    this.replaceChild(depth, doomed, child);
    this.freeNode(doomed);
    this.retrace(depth);
  }

  /** vfio_find_dma: any range overlapping [start, end), or undefined. */
  findOverlap(start: number, end: number): T | undefined {
    const keys = this.keys;
    let n = this.root;
    while (n !== NIL) {
      if (end <= keys[n]) n = this.lefts[n];
      else if (start >= keys[n] + this.values[n]!.size) n = this.rights[n];
      else return this.values[n];
    }
    return undefined;
  }

  /** The range containing the byte at `addr`. */
  findContaining(addr: number): T | undefined {
    const keys = this.keys;
    if (!this.everOverlapped) {
      // Disjoint: only the last range starting at or below `addr` can hold it.
      let below = NIL;
      for (let n = this.root; n !== NIL; ) {
        if (keys[n] <= addr) {
          below = n;
          n = this.rights[n];
        } else n = this.lefts[n];
      }
      if (below === NIL) return undefined;
      const v = this.values[below]!;
      return addr < keys[below] + v.size ? v : undefined;
    }
    let n = this.root;
    while (n !== NIL) {
      if (addr < keys[n]) n = this.lefts[n];
      else if (addr >= keys[n] + this.values[n]!.size) n = this.rights[n];
      else return this.values[n];
    }
    return undefined;
  }

  /** vfio_find_dma_first_node: the lowest range that ends after `start` and begins before `end`. */
  firstOverlapping(start: number, end: number): T | undefined {
    const keys = this.keys;
    if (!this.everOverlapped) {
      // Disjoint: the range holding `start`, else the first that begins after it.
      let below = NIL;
      let above = NIL;
      for (let n = this.root; n !== NIL; ) {
        if (keys[n] <= start) {
          below = n;
          n = this.rights[n];
        } else {
          above = n;
          n = this.lefts[n];
        }
      }
      if (below !== NIL) {
        const v = this.values[below]!;
        if (start < keys[below] + v.size) return v;
      }
      return above !== NIL && keys[above] < end ? this.values[above] : undefined;
    }
    let n = this.root;
    let best = NIL;
    while (n !== NIL) {
      if (keys[n] + this.values[n]!.size > start) {
        best = n;
        n = this.lefts[n];
      } else {
        n = this.rights[n];
      }
    }
    return best !== NIL && keys[best] < end ? this.values[best] : undefined;
  }

  /** The range that follows `value` in iova order. */
  next(value: T): T | undefined {
    const keys = this.keys;
    const iova = value.iova;
    let n = this.root;
    let best = NIL;
    while (n !== NIL) {
      if (keys[n] > iova) {
        best = n;
        n = this.lefts[n];
      } else {
        n = this.rights[n];
      }
    }
    return best === NIL ? undefined : this.values[best];
  }

  first(): T | undefined {
    let n = this.root;
    if (n === NIL) return undefined;
    while (this.lefts[n] !== NIL) n = this.lefts[n];
    return this.values[n];
  }

  /**
   * Calls `fn` on every range in order, then empties the tree: an UNMAP_ALL or a release in one pass,
   * O(1) per range, instead of a search for the next range and a removal (two descents) for each.
   * `fn` must not touch the tree.
   */
  drain(fn: (value: T) => void): void {
    const stack = this.path;
    let depth = 0;
    let n = this.root;
    while (n !== NIL || depth > 0) {
      while (n !== NIL) {
        stack[depth++] = n;
        n = this.lefts[n];
      }
      const top = stack[--depth];
      n = this.rights[top];
      fn(this.values[top]!);
      this.freeNode(top);
    }
    this.root = NIL;
    this.count = 0;
  }

  /** In-order iteration (do not modify the tree while iterating). */
  *[Symbol.iterator](): IterableIterator<T> {
    const stack: number[] = [];
    let n = this.root;
    while (n !== NIL || stack.length > 0) {
      while (n !== NIL) {
        stack.push(n);
        n = this.lefts[n];
      }
      const top = stack.pop()!;
      yield this.values[top]!;
      n = this.rights[top];
    }
  }

  /**
   * The descent of insert: to a leaf, remembering the path and the nearest ranges below and above
   * (the predecessor and successor in iova order); then, when linked, back up, rebalancing until a
   * subtree keeps its height (after an insertion at most one rotation is needed). No recursion, no
   * allocation but the node's slot when the arrays are full. Returns whether the range overlaps a
   * neighbour; with `always` false such a range is not linked.
   */
  private place(value: T, always: boolean): boolean {
    const start = value.iova;
    const end = start + value.size;
    const keys = this.keys;
    const path = this.path;
    let depth = 0;
    let n = this.root;
    let below = NIL;
    let above = NIL;
    let left = false;
    while (n !== NIL) {
      path[depth++] = n;
      left = start < keys[n];
      if (left) {
        above = n;
        n = this.lefts[n];
      } else {
        below = n;
        n = this.rights[n];
      }
    }
    const overlaps =
      (below !== NIL && keys[below] + this.values[below]!.size > start) ||
      (above !== NIL && keys[above] < end);
    if (overlaps && !always) return true;
    if (overlaps) this.everOverlapped = true;
    const node = this.newNode(value);
    this.count++;
    if (depth === 0) this.root = node;
    else {
      if (left) this.lefts[path[depth - 1]] = node;
      else this.rights[path[depth - 1]] = node;
      this.retrace(depth);
    }
    return overlaps;
  }

  private replaceChild(depth: number, from: number, to: number): void {
    if (depth === 0) this.root = to;
    else {
      const p = this.path[depth - 1];
      if (this.lefts[p] === from) this.lefts[p] = to;
      else this.rights[p] = to;
    }
  }

  /** Rebalances path[depth - 1] .. path[0] bottom-up, up to the first subtree whose height is unchanged. */
  private retrace(depth: number): void {
    const path = this.path;
    for (let i = depth - 1; i >= 0; i--) {
      const n = path[i];
      const before = this.heights[n];
      const b = this.balance(n);
      if (b !== n) this.replaceChild(i, n, b);
      // Above a subtree of unchanged height (rotated or not) no balance factor changes.
      if (this.heights[b] === before) return;
    }
  }

  private height(n: number): number {
    return n === NIL ? 0 : this.heights[n];
  }

  private update(n: number): void {
    const l = this.height(this.lefts[n]);
    const r = this.height(this.rights[n]);
    this.heights[n] = Math.max(l, r) + 1;
  }

  private rotateRight(n: number): number {
    const l = this.lefts[n];
    this.lefts[n] = this.rights[l];
    this.rights[l] = n;
    this.update(n);
    this.update(l);
    return l;
  }

  private rotateLeft(n: number): number {
    const r = this.rights[n];
    this.rights[n] = this.lefts[r];
    this.lefts[r] = n;
    this.update(n);
    this.update(r);
    return r;
  }

  private balance(n: number): number {
    this.update(n);
    const bf = this.height(this.lefts[n]) - this.height(this.rights[n]);
    if (bf > 1) {
      const l = this.lefts[n];
      if (this.height(this.lefts[l]) < this.height(this.rights[l])) this.lefts[n] = this.rotateLeft(l);
      return this.rotateRight(n);
    }
    if (bf < -1) {
      const r = this.rights[n];
      if (this.height(this.rights[r]) < this.height(this.lefts[r])) this.rights[n] = this.rotateRight(r);
      return this.rotateLeft(n);
    }
    return n;
  }

  /** A node for `value`: a removed one when there is one, else the next unused (growing the arrays). */
  private newNode(value: T): number {
    let n = this.freeList;
    if (n !== NIL) this.freeList = this.lefts[n];
    else {
      if (this.used === this.keys.length) this.grow();
      n = this.used++;
    }
    this.keys[n] = value.iova;
    this.lefts[n] = NIL;
    this.rights[n] = NIL;
    this.heights[n] = 1;
    this.values[n] = value;
    return n;
  }

  /** Chains a removed node for the next insert (map/unmap cycles allocate nothing). */
  private freeNode(n: number): void {
    // The free list must not keep the removed range alive.
    this.values[n] = undefined;
    this.lefts[n] = this.freeList;
    this.freeList = n;
  }

  private grow(): void {
    const cap = this.keys.length * 2;
    const keys = new Float64Array(cap);
    keys.set(this.keys);
    this.keys = keys;
    const lefts = new Int32Array(cap);
    lefts.set(this.lefts);
    this.lefts = lefts;
    const rights = new Int32Array(cap);
    rights.set(this.rights);
    this.rights = rights;
    const heights = new Int8Array(cap);
    heights.set(this.heights);
    this.heights = heights;
  }
}
