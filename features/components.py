"""Connected components of a growing link graph, answered for many (account, as_of) requests.

Offline in time order: links are sorted by the time they form; for each distinct as_of the
links formed before it are merged with union-find, and the graph is rebuilt with scipy's
connected components when a link expires (a prefix that stopped counting) or when many
links arrive at once, which is also how a single as_of is answered: one vectorised build.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

NEVER = np.iinfo(np.int64).max
#: Pending links above which a full rebuild is cheaper than Python-level unions.
REBUILD_LINKS = 50_000


class OfflineComponents:
    """Accounts (nodes 0..n_acc-1) linked through entity hub nodes, each link dated."""

    def __init__(self, n_acc: int) -> None:
        self.n_acc = n_acc
        self.n_nodes = n_acc
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add_links(
        self,
        kind: str,
        acc: np.ndarray,
        ent: np.ndarray,
        time: np.ndarray,
        expires: np.ndarray | None = None,
    ) -> None:
        """Link accounts to entities of one kind from `time` on (until `expires`, inclusive)."""
        if len(acc) == 0:
            return
        node = self.n_nodes + ent
        self.n_nodes += int(ent.max()) + 1
        exp = np.full(len(acc), NEVER, dtype=np.int64) if expires is None else expires
        self._parts.append((acc.astype(np.int64), node.astype(np.int64), time, exp))
        log.debug("graph: %d %s links", len(acc), kind)

    def answer(
        self, req_acc: np.ndarray, req_asof: np.ndarray, first_positive: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per request: other accounts in its component, and how many were positive before as_of."""
        if self._parts:
            u, v, t, e = (np.concatenate(c) for c in zip(*self._parts, strict=True))
        else:
            u = v = t = e = np.zeros(0, dtype=np.int64)
        order = np.argsort(t, kind="stable")
        u, v, t, e = u[order], v[order], t[order], e[order]
        expiries = np.sort(e[e != NEVER])
        pos_order = np.argsort(first_positive, kind="stable")
        pos_times = first_positive[pos_order]

        size_out = np.zeros(len(req_acc))
        pos_out = np.zeros(len(req_acc))
        req_order = np.argsort(req_asof, kind="stable")
        times, starts = np.unique(req_asof[req_order], return_index=True)
        bounds = np.append(starts, len(req_order))
        state: _UnionFind | None = None
        applied = n_expired = n_pos = 0
        for i, now in enumerate(times):
            reqs = req_order[bounds[i] : bounds[i + 1]]
            upto = int(np.searchsorted(t, now, side="left"))
            expired = int(np.searchsorted(expiries, now, side="left"))
            pos_upto = int(np.searchsorted(pos_times, now, side="left"))
            if state is None or expired != n_expired or upto - applied > REBUILD_LINKS:
                valid = e[:upto] >= now
                state = _UnionFind.build(
                    self.n_nodes,
                    self.n_acc,
                    u[:upto][valid],
                    v[:upto][valid],
                    pos_order[:pos_upto],
                )
                comp = state.labels[req_acc[reqs]]
                size_out[reqs] = state.size0[comp] - 1
                pos_out[reqs] = state.pos0[comp]
            else:
                for k in range(applied, upto):
                    if e[k] >= now:
                        state.union(int(u[k]), int(v[k]))
                for k in range(n_pos, pos_upto):
                    state.add_positive(int(pos_order[k]))
                for r in reqs.tolist():
                    root = state.root(int(req_acc[r]))
                    size_out[r] = state.size_of(root) - 1
                    pos_out[r] = state.pos_of(root)
            applied, n_expired, n_pos = upto, expired, pos_upto
            mine = first_positive[req_acc[reqs]] < now
            pos_out[reqs] -= mine
        return size_out, pos_out


class _UnionFind:
    """Union-find over the components of the last full build. Only components touched since
    the build get Python-level entries (dicts), so a rebuild costs no per-node Python work."""

    def __init__(self, labels: np.ndarray, size0: np.ndarray, pos0: np.ndarray) -> None:
        self.labels = labels
        self.size0, self.pos0 = size0, pos0
        self.parent: dict[int, int] = {}
        self.size: dict[int, float] = {}
        self.pos: dict[int, float] = {}

    @classmethod
    def build(cls, n_nodes, n_acc, u, v, positives) -> _UnionFind:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        graph = coo_matrix((np.ones(len(u), dtype=np.int8), (u, v)), shape=(n_nodes, n_nodes))
        n_comp, labels = connected_components(graph, directed=False)
        size0 = np.bincount(labels[:n_acc], minlength=n_comp).astype(np.float64)
        pos0 = np.bincount(labels[positives], minlength=n_comp).astype(np.float64)
        return cls(labels, size0, pos0)

    def find(self, x: int) -> int:
        parent = self.parent
        path = []
        while x in parent:
            path.append(x)
            x = parent[x]
        for y in path[:-1]:
            parent[y] = x
        return x

    def root(self, node: int) -> int:
        return self.find(int(self.labels[node]))

    def size_of(self, root: int) -> float:
        return self.size.get(root, float(self.size0[root]))

    def pos_of(self, root: int) -> float:
        return self.pos.get(root, float(self.pos0[root]))

    def union(self, a: int, b: int) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra == rb:
            return
        if self.size_of(ra) < self.size_of(rb):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] = self.size_of(ra) + self.size_of(rb)
        self.pos[ra] = self.pos_of(ra) + self.pos_of(rb)

    def add_positive(self, account: int) -> None:
        root = self.root(account)
        self.pos[root] = self.pos_of(root) + 1
