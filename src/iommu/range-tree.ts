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
  left: Node<T> | null;
  right: Node<T> | null;
  height: number;
}

function height<T>(n: Node<T> | null): number {
  return n === null ? 0 : n.height;
}

function update<T>(n: Node<T>): void {
  n.height = Math.max(height(n.left), height(n.right)) + 1;
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

export class RangeTree<T extends Range> {
  private root: Node<T> | null = null;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Inserts a range that overlaps no other (the caller checked with findOverlap). */
  insert(value: T): void {
    this.root = this.insertAt(this.root, value);
    this.count++;
  }

  /** Removes the range that starts at value.iova. */
  remove(value: T): void {
    const before = this.count;
    this.root = this.removeAt(this.root, value.iova);
    if (this.count === before) throw new Error(`RangeTree: no range at ${value.iova}`);
  }

  /** vfio_find_dma: any range overlapping [start, end), or undefined. */
  findOverlap(start: number, end: number): T | undefined {
    let n = this.root;
    while (n !== null) {
      if (end <= n.value.iova) n = n.left;
      else if (start >= n.value.iova + n.value.size) n = n.right;
      else return n.value;
    }
    return undefined;
  }

  /** The range containing the byte at `addr`. */
  findContaining(addr: number): T | undefined {
    let n = this.root;
    while (n !== null) {
      if (addr < n.value.iova) n = n.left;
      else if (addr >= n.value.iova + n.value.size) n = n.right;
      else return n.value;
    }
    return undefined;
  }

  /** vfio_find_dma_first_node: the lowest range that ends after `start` and begins before `end`. */
  firstOverlapping(start: number, end: number): T | undefined {
    let n = this.root;
    let best: T | undefined;
    while (n !== null) {
      if (n.value.iova + n.value.size > start) {
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
      if (n.value.iova > value.iova) {
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

  private insertAt(n: Node<T> | null, value: T): Node<T> {
    if (n === null) return { value, left: null, right: null, height: 1 };
    if (value.iova < n.value.iova) n.left = this.insertAt(n.left, value);
    else n.right = this.insertAt(n.right, value);
    return balance(n);
  }

  private removeAt(n: Node<T> | null, iova: number): Node<T> | null {
    if (n === null) return null;
    if (iova < n.value.iova) n.left = this.removeAt(n.left, iova);
    else if (iova > n.value.iova) n.right = this.removeAt(n.right, iova);
    else {
      this.count--;
      if (n.left === null) return n.right;
      if (n.right === null) return n.left;
      let m = n.right;
      while (m.left !== null) m = m.left;
      n.value = m.value;
      this.count++; // the successor's removal below decrements again
      n.right = this.removeAt(n.right, m.value.iova);
    }
    return balance(n);
  }
}
