"""A workflow's graph as SVG shapes (the template draws them; no JavaScript).

Each job sits in the layer of its longest path from a root (a job with no parent
in the workflow), layers left to right, and within a layer in the order the jobs
were added. Up to ``MAX_NODES`` jobs each is a node; above, each layer is one box
of counts, and past ``MAX_COLUMNS`` layers consecutive ones share a box, so the
page costs the same for a fan-in over 10,000 jobs or a chain of 1,000 links.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from queuer.web.overview import STATUS_ORDER

MAX_NODES = 200
MAX_COLUMNS = 40
PAD = 12.0
NODE_WIDTH = 176.0
NODE_HEIGHT = 44.0
COLUMN_GAP = 64.0
ROW_GAP = 14.0
LANE = 24.0  # room above the nodes for the edges that skip a layer
BOX_WIDTH = 190.0
LINE = 16.0  # a line of text in a layer's box
HEAD = 52.0  # a box's heading and bar, above its lines
TASK_CHARS = 24  # a longer task name is cut (the node's tooltip has it whole)
TOP_TASKS = 3


@dataclass
class Node:
    rid: UUID
    x: float
    y: float
    status: str
    label: str  # the task name, cut to fit
    title: str


@dataclass
class Edge:
    d: str  # an SVG path
    title: str


@dataclass
class Segment:
    """A part of a box's bar: the share of one status."""

    x: float
    width: float
    status: str


@dataclass
class Box:
    """One layer (or a run of layers) of a large workflow, as counts."""

    x: float
    y: float
    height: float
    heading: str
    lines: list[tuple[float, str, str]]  # (baseline, css class, text)
    bar: list[Segment]
    title: str
    width: float = BOX_WIDTH


@dataclass
class Graph:
    width: float
    height: float
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    layers: int = 0
    layers_per_box: int = 1
    node_width: float = NODE_WIDTH
    node_height: float = NODE_HEIGHT

    @property
    def aggregated(self) -> bool:
        return bool(self.boxes)


def _parents(job: Mapping[str, Any], known: set[UUID]) -> list[UUID]:
    """The job's parents within the drawing, each once (a parent outside it, or pruned, draws no edge)."""
    rid = job["rid"]
    return list(dict.fromkeys(p for p in job.get("depends_on") or () if p in known and p != rid))


def depths(jobs: Sequence[Mapping[str, Any]]) -> dict[UUID, int]:
    """Each job's longest path from a root, in edges.

    Kahn's order rather than recursion: a workflow can be thousands of links deep. queuer never writes
    a cycle, but rows written by hand may hold one: its jobs go in a layer after all the others."""
    known = {job["rid"] for job in jobs}
    children: dict[UUID, list[UUID]] = {rid: [] for rid in known}
    waiting: dict[UUID, int] = {}
    for job in jobs:
        parents = _parents(job, known)
        waiting[job["rid"]] = len(parents)
        for parent in parents:
            children[parent].append(job["rid"])
    depth = dict.fromkeys(known, 0)
    ready = deque(rid for rid, n in waiting.items() if n == 0)
    while ready:
        rid = ready.popleft()
        for child in children[rid]:
            depth[child] = max(depth[child], depth[rid] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    stuck = [rid for rid, n in waiting.items() if n > 0]
    if stuck:
        after = max((depth[rid] for rid, n in waiting.items() if n == 0), default=-1) + 1
        for rid in stuck:
            depth[rid] = after
    return depth


def _cut(text: str, limit: int = TASK_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _route(x1: float, y1: float, x2: float, y2: float, adjacent: bool, lane: float) -> str:
    """From a right side to a left side: a curve between neighbouring layers; otherwise up into the lane
    above everything, across, and down through the gaps between layers, so that it crosses no node."""
    if adjacent:
        bend = (x2 - x1) / 2
        return f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
    out, into = x1 + COLUMN_GAP / 2, x2 - COLUMN_GAP / 2
    return (f"M{x1:.1f},{y1:.1f} H{out:.1f} V{lane:.1f} H{into:.1f} V{y2:.1f} H{x2:.1f}")


def _job_title(job: Mapping[str, Any]) -> str:
    return f"{job['task_name']} · {job['rid']} · {job['status']}"


def layout(jobs: Sequence[Mapping[str, Any]], max_nodes: int = MAX_NODES, max_columns: int = MAX_COLUMNS) -> Graph:
    """The drawing of ``jobs`` (rows with rid, task_name, status and depends_on, in the order added)."""
    first: dict[UUID, Mapping[str, Any]] = {}
    for job in jobs:
        first.setdefault(job["rid"], job)  # each rid once (only rows written by hand could repeat one)
    unique = list(first.values())
    depth = depths(unique)
    layers = max(depth.values(), default=-1) + 1
    if len(unique) <= max_nodes:
        return _nodes(unique, depth, layers)
    return _boxes(unique, depth, layers, max_columns)


def _nodes(jobs: Sequence[Mapping[str, Any]], depth: Mapping[UUID, int], layers: int) -> Graph:
    columns: list[list[Mapping[str, Any]]] = [[] for _ in range(layers)]
    for job in jobs:
        columns[depth[job["rid"]]].append(job)
    known = {job["rid"] for job in jobs}
    skips = any(depth[p] != depth[job["rid"]] - 1 for job in jobs for p in _parents(job, known))
    top = PAD + (LANE if skips else 0.0)
    rows = max((len(c) for c in columns), default=0)
    step_x, step_y = NODE_WIDTH + COLUMN_GAP, NODE_HEIGHT + ROW_GAP
    graph = Graph(width=2 * PAD + layers * step_x - COLUMN_GAP if layers else 2 * PAD,
                  height=top + PAD + rows * step_y - ROW_GAP if rows else 2 * PAD, layers=layers)
    where: dict[UUID, Node] = {}
    for index, column in enumerate(columns):
        offset = (rows - len(column)) * step_y / 2  # a short layer is centred beside the tallest
        for row, job in enumerate(column):
            node = Node(job["rid"], PAD + index * step_x, top + offset + row * step_y, str(job["status"]),
                        _cut(str(job["task_name"])), _job_title(job))
            graph.nodes.append(node)
            where[node.rid] = node
    titles = {job["rid"]: job for job in jobs}
    tail = {rid: "…" + str(rid)[-8:] for rid in titles}  # the random end of a rid (see render._tail)
    for job in jobs:
        child = where[job["rid"]]
        for parent_rid in _parents(job, known):
            parent = where[parent_rid]
            adjacent = depth[parent_rid] == depth[job["rid"]] - 1
            d = _route(parent.x + NODE_WIDTH, parent.y + NODE_HEIGHT / 2, child.x, child.y + NODE_HEIGHT / 2,
                       adjacent, PAD + LANE / 2)
            title = f"{titles[parent_rid]['task_name']} ({tail[parent_rid]}) → {job['task_name']} ({tail[job['rid']]})"
            graph.edges.append(Edge(d, title))
    return graph


def ordered_counts(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """Counts in the UI's status order; a status it does not know (a hand-written row) last."""
    known = [(s, counts[s]) for s in STATUS_ORDER if counts.get(s)]
    return known + sorted((s, n) for s, n in counts.items() if s not in STATUS_ORDER and n)


def _boxes(jobs: Sequence[Mapping[str, Any]], depth: Mapping[UUID, int], layers: int, max_columns: int) -> Graph:
    per_box = -(-layers // max_columns) if layers > max_columns else 1
    count = -(-layers // per_box) if layers else 0
    members: list[list[Mapping[str, Any]]] = [[] for _ in range(count)]
    for job in jobs:
        members[depth[job["rid"]] // per_box].append(job)
    known = {job["rid"] for job in jobs}
    links: Counter[tuple[int, int]] = Counter()
    for job in jobs:
        for parent in _parents(job, known):
            pair = (depth[parent] // per_box, depth[job["rid"]] // per_box)
            if pair[0] != pair[1]:
                links[pair] += 1
    skips = any(b != a + 1 for a, b in links)
    top = PAD + (LANE if skips else 0.0)
    summaries = []
    for index, group in enumerate(members):
        counts = ordered_counts(Counter(str(job["status"]) for job in group))
        tasks = Counter(str(job["task_name"]) for job in group).most_common()
        first, last = index * per_box, min(layers, (index + 1) * per_box) - 1
        where = f"layer {first + 1}" if first == last else f"layers {first + 1}–{last + 1}"
        lines = [("where", where)]
        lines += [(status.lower(), f"{n:,} {status.lower()}") for status, n in counts]
        lines += [("task", f"{_cut(task, TASK_CHARS - 2)} ×{n:,}") for task, n in tasks[:TOP_TASKS]]
        if len(tasks) > TOP_TASKS:
            lines.append(("task", f"and {len(tasks) - TOP_TASKS:,} more tasks"))
        summaries.append((group, counts, lines, where))
    tallest = max((len(lines) for _, _, lines, _ in summaries), default=0)
    height = HEAD + LINE * tallest  # the heading and the bar, then the lines
    step_x = BOX_WIDTH + COLUMN_GAP
    graph = Graph(width=2 * PAD + count * step_x - COLUMN_GAP if count else 2 * PAD, height=top + height + PAD,
                  layers=layers, layers_per_box=per_box)
    inner = BOX_WIDTH - 16
    for index, (group, counts, lines, where) in enumerate(summaries):
        x = PAD + index * step_x
        bar, at = [], x + 8
        for status, n in counts:
            width = inner * n / len(group)
            bar.append(Segment(round(at, 2), round(width, 2), status.lower()))
            at += width
        heading = f"{len(group):,} job{'' if len(group) == 1 else 's'}"
        detail = ", ".join(f"{n:,} {status.lower()}" for status, n in counts)
        placed = [(top + HEAD + 6 + i * LINE, kind, text) for i, (kind, text) in enumerate(lines)]
        graph.boxes.append(Box(x, top, height, heading, placed, bar, f"{where}: {heading}: {detail}"))
    for (a, b), n in sorted(links.items()):
        source, target = graph.boxes[a], graph.boxes[b]
        d = _route(source.x + BOX_WIDTH, top + height / 2, target.x, top + height / 2, b == a + 1, PAD + LANE / 2)
        graph.edges.append(Edge(d, f"{n:,} dependenc{'y' if n == 1 else 'ies'}"))
    return graph
