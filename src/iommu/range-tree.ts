/**
 * Ranges [iova, iova + size) in an AVL tree ordered by iova: type-1's rb-tree of vfio_dma and
 * virtio-iommu's mapping trees. Every operation is O(log n), so the per-map cost at 65 535 mappings
 * stays close to the cost at 1 000, and a huge mapping is one node. Ranges are disjoint, except
 * where a driver's own bookkeeping lets them overlap (then the end order follows the start order).
 * Keys are numbers: IOVAs are multiples of 4 KiB, exact as doubles up to 2^64.
 */

export interface Range {
  iova: number;
  size: number;
}

interface Node<T> {
  value: T;
  /** value.iova, kept in the node: a descent compares without loading the value (one miss less per level). */
  iova: number;
  left: Node<T> | null;
  right: Node<T> | null;
  height: number;
}

function height<T>(n: Node<T> | null): number {
  return n === null ? 0 : n.height;
}

function update<T>(n: Node<T>): void {
  const l = n.left === null ? 0 : n.left.height;
  const r = n.right === null ? 0 : n.right.height;
  n.height = Math.max(l, r) + 1;
}

function rotateRight<T>(n: Node<T>): Node<T> {
  const l = n.left!;
  n.left = l.right;
  l.right = n;
  update(n);
  update(l);
  return l;
}

function rotateLeft<T>(n: Node<T>): Node<T> {
  const r = n.right!;
  n.right = r.left;
  r.left = n;
  update(n);
  update(r);
  return r;
}

function balance<T>(n: Node<T>): Node<T> {
  update(n);
  const bf = height(n.left) - height(n.right);
  if (bf > 1) {
    if (height(n.left!.left) < height(n.left!.right)) n.left = rotateLeft(n.left!);
    return rotateRight(n);
  }
  if (bf < -1) {
    if (height(n.right!.right) < height(n.right!.left)) n.right = rotateRight(n.right!);
    return rotateLeft(n);
  }
  return n;
}

/** Depth bound of an AVL tree of up to 2^40 nodes (1.44 log2 n + 2). */
const MAX_DEPTH = 64;

export class RangeTree<T extends Range> {
  private root: Node<T> | null = null;
  private count = 0;
  /** The search path of the insert or remove in progress. */
  private readonly path: Node<T>[] = new Array<Node<T>>(MAX_DEPTH);
  /** Removed nodes, reused by insert. */
  private readonly pool: Node<T>[] = [];
  /** The most ranges the tree held at once. */
  private peak = 0;
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
    const path = this.path;
    const iova = value.iova;
    let depth = 0;
    let n = this.root;
    while (n !== null && n.iova !== iova) {
      path[depth++] = n;
      n = iova < n.iova ? n.left : n.right;
    }
    if (n === null) throw new Error(`RangeTree: no range at ${iova}`);
    this.count--;
    let doomed = n;
    if (n.left !== null && n.right !== null) {
      // Two children: the successor's value moves here and the successor's node goes instead.
      path[depth++] = n;
      let m = n.right;
      while (m.left !== null) {
        path[depth++] = m;
        m = m.left;
      }
      n.value = m.value;
      n.iova = m.iova;
      doomed = m;
    }
    const child = doomed.left !== null ? doomed.left : doomed.right;
    this.replaceChild(depth, doomed, child);
    this.freeNode(doomed);
    this.retrace(depth);
  }

  /** vfio_find_dma: any range overlapping [start, end), or undefined. */
  findOverlap(start: number, end: number): T | undefined {
    let n = this.root;
    while (n !== null) {
      if (end <= n.iova) n = n.left;
      else if (start >= n.iova + n.value.size) n = n.right;
      else return n.value;
    }
    return undefined;
  }

  /** The range containing the byte at `addr`. */
  findContaining(addr: number): T | undefined {
    if (!this.everOverlapped) {
      // Disjoint: only the last range starting at or below `addr` can hold it.
      let below: Node<T> | null = null;
      for (let n = this.root; n !== null; ) {
        if (n.iova <= addr) {
          below = n;
          n = n.right;
        } else n = n.left;
      }
      return below !== null && addr < below.iova + below.value.size ? below.value : undefined;
    }
    let n = this.root;
    while (n !== null) {
      if (addr < n.iova) n = n.left;
      else if (addr >= n.iova + n.value.size) n = n.right;
      else return n.value;
    }
    return undefined;
  }

  /** vfio_find_dma_first_node: the lowest range that ends after `start` and begins before `end`. */
  firstOverlapping(start: number, end: number): T | undefined {
    if (!this.everOverlapped) {
      // Disjoint: the range holding `start`, else the first that begins after it.
      let below: Node<T> | null = null;
      let above: Node<T> | null = null;
      for (let n = this.root; n !== null; ) {
        if (n.iova <= start) {
          below = n;
          n = n.right;
        } else {
          above = n;
          n = n.left;
        }
      }
      if (below !== null && start < below.iova + below.value.size) return below.value;
      return above !== null && above.iova < end ? above.value : undefined;
    }
    let n = this.root;
    let best: T | undefined;
    while (n !== null) {
      if (n.iova + n.value.size > start) {
        best = n.value;
        n = n.left;
      } else {
        n = n.right;
      }
    }
    return best !== undefined && best.iova < end ? best : undefined;
  }

  /** The range that follows `value` in iova order. */
  next(value: T): T | undefined {
    let n = this.root;
    let best: T | undefined;
    while (n !== null) {
      if (n.iova > value.iova) {
        best = n.value;
        n = n.left;
      } else {
        n = n.right;
      }
    }
    return best;
  }

  first(): T | undefined {
    let n = this.root;
    if (n === null) return undefined;
    while (n.left !== null) n = n.left;
    return n.value;
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
    while (n !== null || depth > 0) {
      while (n !== null) {
        stack[depth++] = n;
        n = n.left;
      }
      const top = stack[--depth];
      n = top.right;
      fn(top.value);
      this.freeNode(top);
    }
    this.root = null;
    this.count = 0;
  }

  /** In-order iteration (do not modify the tree while iterating). */
  *[Symbol.iterator](): IterableIterator<T> {
    const stack: Node<T>[] = [];
    let n = this.root;
    while (n !== null || stack.length > 0) {
      while (n !== null) {
        stack.push(n);
        n = n.left;
      }
      const top = stack.pop()!;
      yield top.value;
      n = top.right;
    }
  }

  /**
   * The descent of insert: to a leaf, remembering the path and the nearest ranges below and above
   * (the predecessor and successor in iova order); then, when linked, back up, rebalancing until a
   * subtree keeps its height (after an insertion at most one rotation is needed). No recursion, no
   * allocation but the node (from the pool of removed ones when there is one). Returns whether the
   * range overlaps a neighbour; with `always` false such a range is not linked.
   */
  private place(value: T, always: boolean): boolean {
    const start = value.iova;
    const end = start + value.size;
    const path = this.path;
    let depth = 0;
    let n = this.root;
    let below: Node<T> | null = null;
    let above: Node<T> | null = null;
    let left = false;
    while (n !== null) {
      path[depth++] = n;
      left = start < n.iova;
      if (left) {
        above = n;
        n = n.left;
      } else {
        below = n;
        n = n.right;
      }
    }
    const overlaps =
      (below !== null && below.iova + below.value.size > start) || (above !== null && above.iova < end);
    if (overlaps && !always) return true;
    if (overlaps) this.everOverlapped = true;
    const node = this.newNode(value);
    if (++this.count > this.peak) this.peak = this.count;
    if (depth === 0) this.root = node;
    else {
      if (left) path[depth - 1].left = node;
      else path[depth - 1].right = node;
      this.retrace(depth);
    }
    return overlaps;
  }

  /** Points the parent of path[depth] (the node `from`) at `to` instead. */
  private replaceChild(depth: number, from: Node<T>, to: Node<T> | null): void {
    if (depth === 0) this.root = to;
    else {
      const p = this.path[depth - 1];
      if (p.left === from) p.left = to;
      else p.right = to;
    }
  }

  /** Rebalances path[depth - 1] .. path[0] bottom-up, up to the first subtree whose height is unchanged. */
  private retrace(depth: number): void {
    const path = this.path;
    for (let i = depth - 1; i >= 0; i--) {
      const n = path[i];
      const before = n.height;
      const b = balance(n);
      if (b !== n) this.replaceChild(i, n, b);
      // Above a subtree of unchanged height (rotated or not) no balance factor changes.
      if (b.height === before) return;
    }
  }

  private newNode(value: T): Node<T> {
    const n = this.pool.pop();
    if (n === undefined) return { value, iova: value.iova, left: null, right: null, height: 1 };
    n.value = value;
    n.iova = value.iova;
    n.left = null;
    n.right = null;
    n.height = 1;
    return n;
  }

  /** Keeps a removed node for the next insert (map/unmap cycles allocate nothing). */
  private freeNode(n: Node<T>): void {
    n.left = n.right = null;
    // The pool must not keep the removed range alive.
    n.value = null as unknown as T;
    // Nodes in the tree and in the pool together never exceed the most the tree ever held.
    if (this.pool.length + this.count < this.peak) this.pool.push(n);
  }
}
