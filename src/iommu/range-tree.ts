/**
 * Ranges [iova, iova + size) in an AVL tree ordered by iova: type-1's rb-tree of vfio_dma and
 * virtio-iommu's mapping trees. Every operation is O(log n), and a huge mapping is one node. Ranges
 * are disjoint, except where a driver's own bookkeeping lets them overlap (then the end order follows
 * the start order). Keys are numbers: IOVAs are multiples of 4 KiB, exact as doubles up to 2^64.
 *
 * Nodes live in parallel typed arrays indexed by node number (key, children, parent, height), not as
 * objects: a descent reads a few dense arrays instead of chasing node objects spread over the heap
 * (UNMAP_ALL of 65 535 mappings on virtio-iommu, three trees a mapping: 64-69 -> 30-31 ms).
 *
 * A finger: the tree remembers the node its last operation touched, and the highest node. An
 * operation next to either (a VMM maps and unmaps guest RAM in iova order; a device's DMA walks a
 * buffer) starts there instead of at the root, and parent links let an insert or removal rebalance
 * upwards from where it happened. A descent of a binary tree costs a mispredicted branch a level or
 * so; with a finger the per-map cost at 65 535 mappings stays near the cost at 1 000 (bench
 * map-dma-scaling).
 */

export interface Range {
  iova: number;
  size: number;
}

/** No node. */
const NIL = -1;

export class RangeTree<T extends Range> {
  /** Per node: value.iova (a descent compares without loading the value), links, height. */
  private keys = new Float64Array(16);
  private lefts = new Int32Array(16);
  private rights = new Int32Array(16);
  private parents = new Int32Array(16);
  private heights = new Int8Array(16);
  private readonly values: (T | undefined)[] = [];
  private root = NIL;
  private count = 0;
  /** Nodes ever used; removed ones are chained through `lefts` from `freeList` and reused. */
  private used = 0;
  private freeList = NIL;
  /** The node with the highest key (the last in order), NIL when empty. */
  private last = NIL;
  /** The node the last operation touched (or its successor after a removal); NIL or a live node. */
  private finger = NIL;
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
   * Inserts a range (after any that start at the same iova). Returns whether it overlaps one of its
   * neighbours in iova order: in a tree of disjoint ranges that is whether it overlaps any.
   */
  insert(value: T): boolean {
    return this.place(value, true);
  }

  /** Inserts a range unless it overlaps a neighbour (see insert); returns whether it went in. */
  insertIfFree(value: T): boolean {
    return !this.place(value, false);
  }

  /** Removes `value`, which must be in the tree. */
  remove(value: T): void {
    const n = this.nodeOf(value);
    if (n === NIL) throw new Error(`RangeTree: no range at ${value.iova}`);
    const lefts = this.lefts;
    const rights = this.rights;
    this.count--;
    let doomed = n;
    let after: number;
    if (lefts[n] !== NIL && rights[n] !== NIL) {
      // Two children: the successor's value moves here and the successor's node goes instead; the
      // range after the removed one is then in this node.
      const m = this.leftmost(rights[n]);
      this.values[n] = this.values[m];
      this.keys[n] = this.keys[m];
      if (this.last === m) this.last = n;
      doomed = m;
      after = n;
    } else {
      after = this.next1(n);
      if (this.last === n) this.last = this.prev1(n);
    }
    const child = lefts[doomed] !== NIL ? lefts[doomed] : rights[doomed];
    const parent = this.parents[doomed];
    this.replaceChild(parent, doomed, child);
    if (child !== NIL) this.parents[child] = parent;
    this.freeNode(doomed);
    this.finger = after;
    this.retrace(parent);
  }

  /** vfio_find_dma: any range overlapping [start, end), or undefined. */
  findOverlap(start: number, end: number): T | undefined {
    const keys = this.keys;
    if (!this.everOverlapped) {
      // Disjoint: only the last range starting before `end` can overlap. A map above every range
      // (the VMM's usual order) or next to the last one touched is decided there.
      const last = this.last;
      if (last !== NIL && keys[last] < end) return this.endsAfter(last, start);
      const f = this.finger;
      if (f !== NIL && keys[f] < end) {
        const s = this.next1(f);
        if (s === NIL || keys[s] >= end) return this.endsAfter(f, start);
      }
    }
    let n = this.root;
    while (n !== NIL) {
      if (end <= keys[n]) n = this.lefts[n];
      else if (start >= keys[n] + this.values[n]!.size) n = this.rights[n];
      else return this.touch(n);
    }
    return undefined;
  }

  /** The range containing the byte at `addr`. */
  findContaining(addr: number): T | undefined {
    const keys = this.keys;
    if (!this.everOverlapped) {
      // Disjoint: only the last range starting at or below `addr` can hold it.
      const last = this.last;
      if (last !== NIL && keys[last] <= addr) return this.endsAfter(last, addr);
      const f = this.finger;
      if (f !== NIL && keys[f] <= addr && addr < keys[f] + this.values[f]!.size) return this.values[f];
      let below = NIL;
      for (let n = this.root; n !== NIL; ) {
        if (keys[n] <= addr) {
          below = n;
          n = this.rights[n];
        } else n = this.lefts[n];
      }
      return below === NIL ? undefined : this.endsAfter(below, addr);
    }
    let n = this.root;
    while (n !== NIL) {
      if (addr < keys[n]) n = this.lefts[n];
      else if (addr >= keys[n] + this.values[n]!.size) n = this.rights[n];
      else return this.touch(n);
    }
    return undefined;
  }

  /** vfio_find_dma_first_node: the lowest range that ends after `start` and begins before `end`. */
  firstOverlapping(start: number, end: number): T | undefined {
    const keys = this.keys;
    if (!this.everOverlapped) {
      // Disjoint: the range holding `start`, else the first that begins after it. Above the highest
      // range (an overlap check before a map in iova order), or at or just after the finger, that is
      // known without a descent.
      const last = this.last;
      if (last !== NIL && keys[last] <= start) return this.endsAfter(last, start);
      const f = this.finger;
      if (f !== NIL && keys[f] <= start) {
        if (start < keys[f] + this.values[f]!.size) return this.values[f];
        // Not the highest node, so it has a successor.
        const s = this.next1(f);
        if (keys[s] > start) return keys[s] < end ? this.touch(s) : undefined;
      }
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
      if (below !== NIL && start < keys[below] + this.values[below]!.size) return this.touch(below);
      return above !== NIL && keys[above] < end ? this.touch(above) : undefined;
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
    return best !== NIL && keys[best] < end ? this.touch(best) : undefined;
  }

  /** The range that follows `value`, which is in the tree, in iova order. */
  next(value: T): T | undefined {
    const n = this.nodeOf(value);
    if (n === NIL) throw new Error(`RangeTree: no range at ${value.iova}`);
    const s = this.next1(n);
    return s === NIL ? undefined : this.touch(s);
  }

  first(): T | undefined {
    return this.root === NIL ? undefined : this.values[this.leftmost(this.root)];
  }

  /**
   * Calls `fn` on every range in order, then empties the tree: an UNMAP_ALL or a release in one pass,
   * O(1) per range, instead of a search for the next range and a removal (two descents) for each.
   * `fn` must not touch the tree.
   */
  drain(fn: (value: T) => void): void {
    for (let n = this.root === NIL ? NIL : this.leftmost(this.root); n !== NIL; ) {
      // The successor goes by right and parent links and nodes after this one: the free list's reuse
      // of `lefts` for the nodes before it does not disturb it.
      const s = this.next1(n);
      fn(this.values[n]!);
      this.freeNode(n);
      n = s;
    }
    this.root = NIL;
    this.count = 0;
    this.last = NIL;
    this.finger = NIL;
  }

  /** In-order iteration (do not modify the tree while iterating). */
  *[Symbol.iterator](): IterableIterator<T> {
    for (let n = this.root === NIL ? NIL : this.leftmost(this.root); n !== NIL; n = this.next1(n))
      yield this.values[n]!;
  }

  /**
   * Finds where a range goes: after the last node whose key is at or below its start (`below`),
   * before that node's successor (`above`). Above the highest node, or next to the finger, that is
   * known without a descent. Then links it under `below` or `above` (one of them has the free child
   * slot) and rebalances upwards until a subtree keeps its height (after an insertion at most one
   * rotation is needed). Returns whether the range overlaps a neighbour; with `always` false such a
   * range is not linked.
   */
  private place(value: T, always: boolean): boolean {
    const start = value.iova;
    const end = start + value.size;
    const keys = this.keys;
    let below = NIL;
    let above = NIL;
    const last = this.last;
    const f = this.finger;
    if (last !== NIL && keys[last] <= start) below = last;
    else if (f !== NIL && keys[f] <= start && start < keys[this.next1(f)]) {
      // Not the last node, so it has a successor.
      below = f;
      above = this.next1(f);
    } else {
      for (let n = this.root; n !== NIL; ) {
        if (start < keys[n]) {
          above = n;
          n = this.lefts[n];
        } else {
          below = n;
          n = this.rights[n];
        }
      }
    }
    const overlaps =
      (below !== NIL && keys[below] + this.values[below]!.size > start) ||
      (above !== NIL && keys[above] < end);
    if (overlaps && !always) return true;
    if (overlaps) this.everOverlapped = true;
    const node = this.newNode(value);
    this.count++;
    let parent: number;
    if (below !== NIL && this.rights[below] === NIL) {
      parent = below;
      this.rights[below] = node;
    } else if (above !== NIL) {
      // `below` has a right subtree (or there is none): `above` is its leftmost node.
      parent = above;
      this.lefts[above] = node;
    } else {
      parent = NIL;
      this.root = node;
    }
    this.parents[node] = parent;
    if (above === NIL) this.last = node;
    this.finger = node;
    this.retrace(parent);
    return overlaps;
  }

  /** The node holding `value`, or NIL. Ranges starting at one iova (overlapping ones) sit side by side. */
  private nodeOf(value: T): number {
    const values = this.values;
    if (this.finger !== NIL && values[this.finger] === value) return this.finger;
    if (this.last !== NIL && values[this.last] === value) return this.last;
    const keys = this.keys;
    const iova = value.iova;
    let n = this.root;
    while (n !== NIL && keys[n] !== iova) n = iova < keys[n] ? this.lefts[n] : this.rights[n];
    if (n === NIL || values[n] === value) return n;
    for (let m = this.prev1(n); m !== NIL && keys[m] === iova; m = this.prev1(m))
      if (values[m] === value) return m;
    for (let m = this.next1(n); m !== NIL && keys[m] === iova; m = this.next1(m))
      if (values[m] === value) return m;
    return NIL;
  }

  /** The node's range if it ends after `addr`. */
  private endsAfter(n: number, addr: number): T | undefined {
    const v = this.values[n]!;
    if (addr >= this.keys[n] + v.size) return undefined;
    this.finger = n;
    return v;
  }

  /** The node's range, remembered as the finger. */
  private touch(n: number): T {
    this.finger = n;
    return this.values[n]!;
  }

  private leftmost(n: number): number {
    while (this.lefts[n] !== NIL) n = this.lefts[n];
    return n;
  }

  /** The in-order successor of node `n`, or NIL. */
  private next1(n: number): number {
    const r = this.rights[n];
    if (r !== NIL) return this.leftmost(r);
    let p = this.parents[n];
    while (p !== NIL && this.rights[p] === n) {
      n = p;
      p = this.parents[p];
    }
    return p;
  }

  /** The in-order predecessor of node `n`, or NIL. */
  private prev1(n: number): number {
    let l = this.lefts[n];
    if (l !== NIL) {
      while (this.rights[l] !== NIL) l = this.rights[l];
      return l;
    }
    let p = this.parents[n];
    while (p !== NIL && this.lefts[p] === n) {
      n = p;
      p = this.parents[p];
    }
    return p;
  }

  private replaceChild(parent: number, from: number, to: number): void {
    if (parent === NIL) this.root = to;
    else if (this.lefts[parent] === from) this.lefts[parent] = to;
    else this.rights[parent] = to;
  }

  /** Rebalances from node `n` up to the root, up to the first subtree whose height is unchanged. */
  private retrace(n: number): void {
    while (n !== NIL) {
      const before = this.heights[n];
      const parent = this.parents[n];
      const b = this.balance(n);
      if (b !== n) this.replaceChild(parent, n, b);
      // Above a subtree of unchanged height (rotated or not) no balance factor changes.
      if (this.heights[b] === before) return;
      n = parent;
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

  /** Rotates `n`'s left child up into its place; the caller relinks the returned node into the parent. */
  private rotateRight(n: number): number {
    const l = this.lefts[n];
    const moved = this.rights[l];
    this.lefts[n] = moved;
    if (moved !== NIL) this.parents[moved] = n;
    this.rights[l] = n;
    this.parents[l] = this.parents[n];
    this.parents[n] = l;
    this.update(n);
    this.update(l);
    return l;
  }

  private rotateLeft(n: number): number {
    const r = this.rights[n];
    const moved = this.lefts[r];
    this.rights[n] = moved;
    if (moved !== NIL) this.parents[moved] = n;
    this.lefts[r] = n;
    this.parents[r] = this.parents[n];
    this.parents[n] = r;
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
    this.keys = grown(this.keys, new Float64Array(cap));
    this.lefts = grown(this.lefts, new Int32Array(cap));
    this.rights = grown(this.rights, new Int32Array(cap));
    this.parents = grown(this.parents, new Int32Array(cap));
    this.heights = grown(this.heights, new Int8Array(cap));
  }
}

function grown<A extends Float64Array | Int32Array | Int8Array>(from: A, to: A): A {
  to.set(from);
  return to;
}
